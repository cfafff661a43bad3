/**
 * `npm run bench -- verify [--rows 1000000,4000000,10000000] [--in-flight 4] [--push-timeout-ms N] [--profile]
 * [--sources]`:
 * `cdc-agent verify` at scale (issue 17: "it runs in bounded memory at 10M rows"). For each row count N, in a
 * fresh PostgreSQL database (source, control and receiver tables, as in the mission-scale benchmark):
 *   1. one source table of N rows shaped like bench/onboard.ts's (`id bigint` primary key + 10 business columns);
 *   2. `cdc-agent onboard --tenant bench --wait` with `cdc-agent run` (the daemon) and `cdc-agent receiver`
 *      (the reference receiver) each in its own process (before it, one verify with nothing to read yet: the
 *      process's own floor of memory); the receiver must reconcile the run; then
 *      `VACUUM ANALYZE` and `CHECKPOINT`, so that verify reads settled tables (no hint-bit or dirty-page writes
 *      charged to it);
 *   3. `cdc-agent verify --tenant bench --json` as its own process: wall seconds, its peak RSS (VmHWM from
 *      /proc, sampled every 50 ms), its CPU seconds (exact: this process's reaped-children CPU before and after),
 *      the receiver's peak RSS while it computes its digest (its VmHWM reset through /proc/<pid>/clear_refs just
 *      before, else its sampled VmRSS), the receiver's and PostgreSQL's CPU seconds meanwhile, and when the receiver
 *      answered (its CPU sampled every 50 ms; compare with push.timeout, which bounds that request). It must exit 0
 *      with status "match" and N rows on all three sides, or the bench fails;
 *   4. ~1 % of the receiver's rows deleted (`k0 % 100 = 0` in its rx_rows_* table) and verify timed again: it
 *      must exit 1 with status "differs", the receiver ≠ staging, and sample keys "missing at the receiver"
 *      (this run reads the source a second time and asks the receiver for three buckets' keys).
 * The agent's processes run from a fresh `npm run build` (dist/), as in the container image; `--sources` runs
 * them from the TypeScript sources. It prints a table and writes .tmp/bench-verify.json.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { stringify } from 'yaml';
import type { VerifyReport } from '../src/agent/verify.ts';
import { connect } from '../src/dialect/connect.ts';
import { withApplicationName } from '../src/dialect/postgres.ts';
import type { Db } from '../src/dialect/types.ts';
import { migrate } from '../src/migrations/migrate.ts';
import { benchDatabase, chooseAgentBuild, option, report, startChild } from './support.ts';

const TENANT = 'bench';
const TOKEN = 'bench-token';
const SOURCE = 'src_t01';
const MAX_ROWS = 5_000;
const MAX_BYTES = 4 * 1024 * 1024;
const CONFIG_PATH = '.tmp/bench-verify.yaml';

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  child.kill('SIGTERM');
  await once(child, 'exit');
}

/** Fields of a /proc/<pid>/stat line after the command name. */
function statFields(stat: string): string[] {
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/** CPU seconds (user + system) of a process so far, plus with `reaped` what its exited children used. */
function statCpuSeconds(stat: string, reaped = false): number {
  const f = statFields(stat);
  return (Number(f[11]) + Number(f[12]) + (reaped ? Number(f[13]) + Number(f[14]) : 0)) / 100;
}

async function cpuSeconds(pid: number): Promise<number> {
  return statCpuSeconds(await readFile(`/proc/${pid}/stat`, 'utf8'));
}

/** CPU seconds of the children this process has reaped so far (cutime + cstime). */
async function reapedChildrenCpuSeconds(): Promise<number> {
  const f = statFields(await readFile('/proc/self/stat', 'utf8'));
  return (Number(f[13]) + Number(f[14])) / 100;
}

/** The postmaster of the bench's server (the parent of one of its backends); undefined when it is not local. */
async function postmasterOf(db: Db): Promise<number | undefined> {
  const [row] = await db.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  const stat = await readFile(`/proc/${row!.pid}/stat`, 'utf8').catch(() => '');
  return stat ? Number(statFields(stat)[1]) : undefined;
}

/**
 * CPU seconds used so far by the bench's PostgreSQL server: its postmaster (with what it reaped of exited
 * backends) and its live children; not other servers on the machine.
 */
async function postgresCpuSeconds(postmaster: number | undefined): Promise<number> {
  if (postmaster === undefined) return NaN;
  let total = 0;
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    if (stat && (Number(entry) === postmaster || Number(statFields(stat)[1]) === postmaster)) total += statCpuSeconds(stat, Number(entry) === postmaster);
  }
  return total;
}

/** A field of /proc/<pid>/status in bytes (VmRSS, VmHWM); 0 once the process is gone. */
async function statusBytes(pid: number, field: 'VmRSS' | 'VmHWM'): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(status);
  return m ? Number(m[1]) * 1024 : 0;
}

/** Reset a process's VmHWM to its current RSS (Linux ≥ 4.0, own processes); false when refused. */
async function resetPeak(pid: number): Promise<boolean> {
  return writeFile(`/proc/${pid}/clear_refs`, '5').then(
    () => true,
    () => false,
  );
}

const mb = (bytes: number) => Math.round(bytes / 1024 / 1024);
const r2 = (x: number) => Math.round(x * 100) / 100;

/** Run `bin/cdc-agent.js --config … <args>` to its end (its output shown); its exit code. */
async function cli(args: string[]): Promise<number | null> {
  const child = spawn(process.execPath, ['bin/cdc-agent.js', '--config', CONFIG_PATH, ...args], { stdio: ['ignore', 'inherit', 'inherit'] });
  const [code] = (await once(child, 'exit')) as [number | null];
  return code;
}

interface VerifyRun {
  code: number | null;
  /** Seconds from the start until the receiver had used 98 % of its CPU of the run: when it answered the digest. */
  receiverAnsweredSeconds: number;
  report: VerifyReport;
  seconds: number;
  peakRssMb: number;
  cpuSeconds: number;
  receiverPeakRssMb: number;
  receiverRssBeforeMb: number;
  receiverCpuSeconds: number;
  postgresCpuSeconds: number;
}

/** `cdc-agent verify --tenant bench --json` in its own process, measured (see the header). */
async function timedVerify(receiverPid: number, postmaster: number | undefined, profile: string[]): Promise<VerifyRun> {
  const receiverRssBefore = await statusBytes(receiverPid, 'VmRSS');
  const hwmReset = await resetPeak(receiverPid);
  let receiverPeak = await statusBytes(receiverPid, hwmReset ? 'VmHWM' : 'VmRSS');
  const receiverCpu0 = await cpuSeconds(receiverPid);
  const pgCpu0 = await postgresCpuSeconds(postmaster);
  const reaped0 = await reapedChildrenCpuSeconds();

  const t0 = performance.now();
  const child = spawn(process.execPath, [...profile, 'bin/cdc-agent.js', '--config', CONFIG_PATH, 'verify', '--tenant', TENANT, '--json'], { stdio: ['ignore', 'pipe', 'inherit'] });
  let stdout = '';
  child.stdout!.on('data', (c: Buffer) => (stdout += String(c)));
  const closed = once(child, 'close');
  // bin/cdc-agent.js re-executes itself (same pid) with its memory settings; VmHWM starts again at that exec.
  let peak = 0;
  const receiverCpu: Array<[number, number]> = [];
  const sample = async () => {
    const [own, rx, rxCpu] = await Promise.all([statusBytes(child.pid!, 'VmHWM'), statusBytes(receiverPid, 'VmRSS'), cpuSeconds(receiverPid)]);
    peak = Math.max(peak, own);
    receiverPeak = Math.max(receiverPeak, rx);
    receiverCpu.push([(performance.now() - t0) / 1000, rxCpu]);
  };
  const timer = setInterval(() => void sample(), 50);
  await closed;
  const seconds = (performance.now() - t0) / 1000;
  clearInterval(timer);
  const cpu = (await reapedChildrenCpuSeconds()) - reaped0;
  if (hwmReset) receiverPeak = Math.max(receiverPeak, await statusBytes(receiverPid, 'VmHWM'));
  const receiverCpuUsed = (await cpuSeconds(receiverPid)) - receiverCpu0;
  const answered = receiverCpu.find(([, c]) => c - receiverCpu0 >= 0.98 * receiverCpuUsed)?.[0] ?? seconds;
  // The verify process's backends have ended; give the postmaster a moment to reap them.
  await new Promise((r) => setTimeout(r, 300));
  const postgresCpu = (await postgresCpuSeconds(postmaster)) - pgCpu0;

  let parsed: VerifyReport;
  try {
    parsed = JSON.parse(stdout) as VerifyReport;
  } catch {
    throw new Error(`verify (exit ${child.exitCode}) did not print a JSON report: ${stdout.slice(0, 2000)}`);
  }
  return {
    code: child.exitCode,
    receiverAnsweredSeconds: answered,
    report: parsed,
    seconds,
    peakRssMb: mb(peak),
    cpuSeconds: cpu,
    receiverPeakRssMb: mb(receiverPeak),
    receiverRssBeforeMb: mb(receiverRssBefore),
    receiverCpuSeconds: receiverCpuUsed,
    postgresCpuSeconds: postgresCpu,
  };
}

async function fill(db: Db, table: string, from: number, to: number): Promise<void> {
  await db.execute(`INSERT INTO ${table} SELECT i, i % 1000, i * 7, (i % 100000) / 100.0, 'text value ' || i, 'v' || (i % 5000),
    timestamp '2020-01-01' + i * interval '1.000001 second', i % 2 = 0, i / 3.0, md5(i::text)::uuid, date '2020-01-01' + (i % 1000)
    FROM generate_series(${from}, ${to}) AS i`);
}

async function oneSize(rows: number, inFlight: number, pushTimeoutMs: number, profile: string[]): Promise<Record<string, string | number>> {
  const server = await benchDatabase('verify');
  const harness = () => connect({ dialect: 'postgres', url: withApplicationName(server.url, 'cdc-bench'), poolMax: 4 });
  const db = await harness();
  const children: ChildProcess[] = [];
  try {
    console.log(`\n== ${rows.toLocaleString('en')} rows: generating…`);
    const tg = performance.now();
    await db.execute(`CREATE TABLE ${SOURCE} (
      id bigint PRIMARY KEY, c1 integer, c2 bigint, c3 numeric(12,2), c4 text, c5 varchar(50),
      c6 timestamp(6), c7 boolean, c8 double precision, c9 uuid, c10 date)`);
    for (let from = 1; from <= rows; from += 2_000_000) await fill(db, SOURCE, from, Math.min(rows, from + 2_000_000 - 1));
    await db.execute('VACUUM ANALYZE');
    await migrate(db);
    const postmaster = await postmasterOf(db);
    console.log(`generated in ${r2((performance.now() - tg) / 1000)} s`);

    const rx = await startChild(['bin/cdc-agent.js', 'receiver', '--port', '0', '--db', server.url, '--token', `${TENANT}=${TOKEN}`]);
    children.push(rx.child);
    const rawConfig = {
      control: { dialect: 'postgres', url: server.url, poolMax: 12 },
      worker: { concurrency: 2, leaseSeconds: 60, pollInterval: '100ms', healthPort: 0 },
      telemetry: { logLevel: process.env.CDC_BENCH_LOG ?? 'warn' },
      tenants: [
        {
          id: TENANT,
          push: { url: rx.url, token: TOKEN, maxInFlight: inFlight, ...(pushTimeoutMs > 0 ? { timeout: `${pushTimeoutMs}ms` } : {}) },
          connections: { legacy: { dialect: 'postgres', url: server.url, poolMax: 4 } },
          sources: [{ id: SOURCE, connection: 'legacy', table: `public.${SOURCE}`, every: '24h', batch: { maxRows: MAX_ROWS, maxBytes: MAX_BYTES } }],
        },
      ],
    };
    await mkdir('.tmp', { recursive: true });
    await writeFile(CONFIG_PATH, stringify(rawConfig));
    const agent = spawn(process.execPath, ['bin/cdc-agent.js', '--config', CONFIG_PATH, 'run', '--no-schedule', '--health-host', '127.0.0.1'], { stdio: ['ignore', 'inherit', 'inherit'] });
    children.push(agent);

    // What verify holds with nothing to read (the source was never synced: "not-comparable", exit 0).
    const idle = await timedVerify(rx.child.pid!, postmaster, []);
    if (idle.code !== 0 || idle.report.sources[0]?.status !== 'not-comparable') throw new Error(`verify before onboarding: exit ${idle.code}, ${JSON.stringify(idle.report)}`);
    console.log(`verify with nothing to read: ${r2(idle.seconds)} s, peak RSS ${idle.peakRssMb} MB`);

    console.log('onboarding (cdc-agent onboard --wait)…');
    const to = performance.now();
    const onboard = await cli(['onboard', '--tenant', TENANT, '--wait']);
    const onboardSeconds = (performance.now() - to) / 1000;
    if (onboard !== 0) throw new Error(`onboard --wait exited ${onboard}`);
    const runs = await db.query<{ n: string; bad: string }>(
      `SELECT count(*)::text AS n, count(*) FILTER (WHERE problems IS NOT NULL OR rows_held <> source_rows)::text AS bad FROM rx_runs WHERE tenant = $1 AND dataset = $2`,
      [TENANT, SOURCE],
    );
    if (Number(runs[0]!.n) !== 1 || Number(runs[0]!.bad) !== 0) throw new Error(`the receiver did not reconcile the onboarding: ${JSON.stringify(runs)}`);
    console.log(`onboarded in ${r2(onboardSeconds)} s; VACUUM ANALYZE, CHECKPOINT…`);
    await db.execute('VACUUM ANALYZE');
    await db.execute('CHECKPOINT');

    console.log('verify (all match)…');
    const clean = await timedVerify(rx.child.pid!, postmaster, profile);
    const s = clean.report.sources[0];
    if (clean.code !== 0 || clean.report.sources.length !== 1 || s?.status !== 'match' || s.rows?.source !== rows || s.rows.staging !== rows || s.rows.receiver !== rows) {
      throw new Error(`verify should have matched ${rows} rows (exit 0): exit ${clean.code}, ${JSON.stringify(clean.report).slice(0, 2000)}`);
    }
    console.log(`verify: ${r2(clean.seconds)} s, peak RSS ${clean.peakRssMb} MB, CPU ${r2(clean.cpuSeconds)} s; ${s.message}`);

    // Damage the receiver's copy: ~1 % of its rows go.
    const [{ table_name: rxTable }] = (await db.query<{ table_name: string }>('SELECT table_name FROM rx_datasets WHERE tenant = $1 AND dataset = $2', [TENANT, SOURCE])) as [{ table_name: string }];
    const deleted = await db.execute(`DELETE FROM ${db.quote(rxTable)} WHERE k0 % 100 = 0`);
    await db.execute(`VACUUM ANALYZE ${db.quote(rxTable)}`);
    await db.execute('CHECKPOINT');
    console.log(`deleted ${deleted} of the receiver's rows; verify (differs)…`);
    const damaged = await timedVerify(rx.child.pid!, postmaster, []);
    const d = damaged.report.sources[0];
    if (
      damaged.code !== 1 ||
      d?.status !== 'differs' ||
      !d.receiverDiffersFromStaging ||
      d.stagingDiffersFromSource ||
      d.rows?.receiver !== rows - deleted ||
      d.samples.length === 0 ||
      d.samples.some((k) => k.problem !== 'missing at the receiver')
    ) {
      throw new Error(`verify should have found ${deleted} rows missing at the receiver (exit 1): exit ${damaged.code}, ${JSON.stringify(damaged.report).slice(0, 2000)}`);
    }
    console.log(`verify: ${r2(damaged.seconds)} s, peak RSS ${damaged.peakRssMb} MB, CPU ${r2(damaged.cpuSeconds)} s; ${d.differingBuckets} buckets differ, ${d.samples.length} sample keys`);

    await stop(agent);
    return {
      rows,
      'onboard s': r2(onboardSeconds),
      'verify wall s': r2(clean.seconds),
      'rows/s': Math.round(rows / clean.seconds),
      'verify peak RSS MB': clean.peakRssMb,
      'verify peak RSS MB, nothing to read': idle.peakRssMb,
      'verify CPU s': r2(clean.cpuSeconds),
      'receiver RSS before MB': clean.receiverRssBeforeMb,
      'receiver peak RSS MB': clean.receiverPeakRssMb,
      'receiver CPU s': r2(clean.receiverCpuSeconds),
      'receiver answered after s': r2(clean.receiverAnsweredSeconds),
      'PostgreSQL CPU s': r2(clean.postgresCpuSeconds),
      'damaged: rows deleted': deleted,
      'damaged: wall s': r2(damaged.seconds),
      'damaged: verify peak RSS MB': damaged.peakRssMb,
      'damaged: verify CPU s': r2(damaged.cpuSeconds),
      'damaged: receiver peak RSS MB': damaged.receiverPeakRssMb,
      'damaged: receiver CPU s': r2(damaged.receiverCpuSeconds),
      'damaged: PostgreSQL CPU s': r2(damaged.postgresCpuSeconds),
      'damaged: buckets differing': d.differingBuckets,
    };
  } finally {
    for (const c of children) await stop(c).catch(() => {});
    await db.close();
    await server.close();
  }
}

export async function run(args: string[]): Promise<void> {
  const i = args.indexOf('--rows');
  const sizes = (i >= 0 && args[i + 1] ? args[i + 1]! : '1000000,4000000,10000000').split(',').map(Number);
  if (sizes.some((n) => !Number.isInteger(n) || n < 1000)) throw new Error(`--rows takes row counts of 1000 or more, separated by commas; got ${args[i + 1]}`);
  const inFlight = option(args, '--in-flight', 4);
  // 0: the tenant's default push.timeout (30 s), which also bounds each digest request.
  const pushTimeoutMs = option(args, '--push-timeout-ms', 0);
  // --profile: the measured all-match verify runs with --cpu-prof (.tmp/prof/).
  const profile = args.includes('--profile') ? ['--cpu-prof', '--cpu-prof-dir=.tmp/prof'] : [];
  const build = await chooseAgentBuild(args);
  const figures: Array<Record<string, string | number>> = [];
  for (const rows of sizes) {
    figures.push(await oneSize(rows, inFlight, pushTimeoutMs, profile));
    await report('verify', figures);
  }
  console.log(`agent, verify and receiver run from ${build === 'dist' ? 'the build (dist/)' : 'the sources (type stripping)'}; push.timeout ${pushTimeoutMs > 0 ? `${pushTimeoutMs} ms` : 'default'}`);
}
