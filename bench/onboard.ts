/**
 * `npm run bench` (or `npm run bench -- onboard [--tables 12] [--rows 1000000] [--concurrency 2] [--in-flight 4]
 * [--agent-heap MB] [--profile] [--sources]`):
 * the mission-scale benchmark (issue 10). One PostgreSQL database holds a generated source estate (`--tables`
 * tables × `--rows` rows × 10 business columns), the agent's control tables and the reference receiver's
 * tables; on this one machine it measures
 *   1. the raw limits: `COPY … TO STDOUT` of every table, `COPY … FROM STDIN` of the same rows into an unlogged
 *      table without index, and loopback HTTP of the same JSON payloads (as the agent frames and gzips them) to
 *      a bare Node server that gunzips and parses them;
 *   2. onboarding end to end: an in-process AgentDaemon (as `cdc-agent run` would) syncs every table into the
 *      reference receiver, which runs as a child process so its CPU is measurable and the agent's RSS is its own;
 *   3. an incremental sync after changing 1 % of every table (0.5 % updates, 0.25 % inserts, 0.25 % deletes);
 *   4. a sync with no changes.
 * Each sync is checked: every job succeeds and the receiver reconciles every run (rows held = source rows).
 * The agent and the receiver run from a fresh `npm run build` (dist/), as in the container image; `--sources`
 * runs them from the TypeScript sources instead. It prints a table and writes .tmp/bench-onboard.json.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFile, readdir } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { writeFile, mkdir } from 'node:fs/promises';
import { stringify } from 'yaml';
import { followJobs, type Followed } from '../src/agent/progress.ts';
import { entrySql } from '../src/batching/render-postgres.ts';
import { binaryTuples } from '../src/batching/copy-binary.ts';
import type { TenantConfig } from '../src/config/schema.ts';
import { connect } from '../src/dialect/connect.ts';
import { withApplicationName } from '../src/dialect/postgres.ts';
import type { Db } from '../src/dialect/types.ts';
import { migrate } from '../src/migrations/migrate.ts';
import { createPushClient } from '../src/push/client.ts';
import { frameBatch, wireSchema } from '../src/contract/wire.ts';
import { createJobQueue, type JobQueue } from '../src/queue-table/queue.ts';
import { introspectSource } from '../src/snapshot/introspect.ts';
import { benchDatabase, chooseAgentBuild, report, BARE_SERVER, option, startChild } from './support.ts';

const TENANT = 'bench';
const TOKEN = 'bench-token';
const MAX_ROWS = 5_000;
const MAX_BYTES = 4 * 1024 * 1024;


async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  child.kill('SIGTERM');
  await once(child, 'exit');
}

/**
 * CPU seconds in a /proc/<pid>/stat line (Linux): user + system, plus, with `reaped`, what the process's
 * exited children used (a server's ended backends).
 */
function statCpuSeconds(stat: string, reaped = false): number {
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12]) + (reaped ? Number(f[13]) + Number(f[14]) : 0)) / 100;
}

/** CPU seconds (user + system) a process has used so far, from /proc (Linux). */
async function cpuSeconds(pid: number): Promise<number> {
  return statCpuSeconds(await readFile(`/proc/${pid}/stat`, 'utf8'));
}

/**
 * CPU seconds used so far by every PostgreSQL process on this machine (the server is local in every benchmark
 * run: the postmaster, its backends and background workers, plus what it has reaped of exited backends).
 */
async function postgresCpuSeconds(): Promise<number> {
  let total = 0;
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    if (stat.includes('(postgres)')) total += statCpuSeconds(stat, true);
  }
  return total;
}

/**
 * PostgreSQL CPU seconds by who caused them, sampled every second while a phase runs: each backend's CPU (from
 * /proc) is charged to its session's application_name (the agent's 'cdc-sync-agent', the receiver's
 * 'cdc-receiver'), autovacuum workers to 'autovacuum', the checkpointer, WAL writer and other background
 * processes to 'background'. CPU of a backend that exits between two samples is lost (< 1 s of it).
 */
function postgresCpuBreakdown(db: Db): { stop(): Promise<Record<string, number>> } {
  const last = new Map<number, number>();
  const byWho: Record<string, number> = {};
  let stopped = false;
  const sample = async () => {
    const sessions = await db.query<{ pid: number; who: string }>(
      `SELECT pid, CASE WHEN backend_type = 'client backend' THEN COALESCE(NULLIF(application_name, ''), 'other')
                        WHEN backend_type LIKE 'autovacuum%' THEN 'autovacuum' ELSE 'background' END AS who
         FROM pg_stat_activity`,
    );
    for (const { pid, who } of sessions) {
      const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
      if (!stat) continue;
      const cpu = statCpuSeconds(stat);
      const before = last.get(pid);
      last.set(pid, cpu);
      if (before !== undefined) byWho[who] = (byWho[who] ?? 0) + (cpu - before);
    }
  };
  const loop = (async () => {
    await sample();
    while (!stopped) {
      await new Promise((r) => setTimeout(r, 1000));
      await sample();
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
      return Object.fromEntries(Object.entries(byWho).map(([k, v]) => [k, Math.round(v * 10) / 10]));
    },
  };
}

/** Resident set size of a process in bytes, from /proc (Linux). */
async function rssOf(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  const m = /VmRSS:\s+(\d+) kB/.exec(status);
  return m ? Number(m[1]) * 1024 : 0;
}

/** Wall time of `fn` and the peak RSS of process `pid` (the agent) meanwhile, sampled every 50 ms. */
async function measured<T>(fn: () => Promise<T>, pid: number = process.pid): Promise<{ result: T; seconds: number; peakRssMb: number }> {
  let peak = await rssOf(pid);
  const timer = setInterval(() => void rssOf(pid).then((r) => (peak = Math.max(peak, r))), 50);
  const t0 = performance.now();
  try {
    const result = await fn();
    return { result, seconds: (performance.now() - t0) / 1000, peakRssMb: Math.round(Math.max(peak, await rssOf(pid)) / 1024 / 1024) };
  } finally {
    clearInterval(timer);
  }
}

const tableName = (i: number) => `src_t${String(i + 1).padStart(2, '0')}`;

async function fill(db: Db, table: string, from: number, to: number): Promise<void> {
  await db.execute(`INSERT INTO ${table} SELECT i, i % 1000, i * 7, (i % 100000) / 100.0, 'text value ' || i, 'v' || (i % 5000),
    timestamp '2020-01-01' + i * interval '1.000001 second', i % 2 = 0, i / 3.0, md5(i::text)::uuid, date '2020-01-01' + (i % 1000)
    FROM generate_series(${from}, ${to}) AS i`);
}

export async function run(args: string[]): Promise<void> {
  const tables = option(args, '--tables', 12);
  const rows = option(args, '--rows', 1_000_000);
  const concurrency = option(args, '--concurrency', 2);
  const inFlight = option(args, '--in-flight', 4);
  const build = await chooseAgentBuild(args);
  const server = await benchDatabase('onboard');
  // The harness's own sessions (generation, raw limits, job polling) are told apart from the agent's.
  const harness = () => connect({ dialect: 'postgres', url: withApplicationName(server.url, 'cdc-bench'), poolMax: 4 });
  let db = await harness();
  const children: ChildProcess[] = [];
  const cleanups: Array<() => Promise<unknown>> = [];
  try {
    console.log(`generating ${tables} tables × ${rows.toLocaleString('en')} rows…`);
    const names = Array.from({ length: tables }, (_, i) => tableName(i));
    for (const name of names) {
      await db.execute(`CREATE TABLE ${name} (
        id bigint PRIMARY KEY, c1 integer, c2 bigint, c3 numeric(12,2), c4 text, c5 varchar(50),
        c6 timestamp(6), c7 boolean, c8 double precision, c9 uuid, c10 date)`);
      await fill(db, name, 1, rows);
    }
    await db.execute('VACUUM ANALYZE');
    const total = tables * rows;
    const r2 = (x: number) => Math.round(x * 100) / 100;

    // 1. Raw limits.
    console.log('raw limits…');
    const copyOut = await measured(async () => {
      let bytes = 0;
      for (const name of names) for await (const chunk of await db.copyOut!(`COPY ${name} TO STDOUT`)) bytes += (chunk as Buffer).length;
      return bytes;
    });
    await db.execute(`CREATE UNLOGGED TABLE raw_sink (LIKE ${names[0]!} INCLUDING DEFAULTS)`);
    const copyIn = await measured(async () => {
      for (const name of names) await db.copyIn!(`COPY raw_sink FROM STDIN (FORMAT binary)`, await db.copyOut!(`COPY ${name} TO STDOUT (FORMAT binary)`));
    });
    await db.execute('DROP TABLE raw_sink');

    // The JSON payloads the agent sends for the first table's first batches, framed and posted as the agent does.
    const schema = await introspectSource(db, TENANT, { id: names[0]!, table: `public.${names[0]!}`, columns: {} } as never);
    const schemaJson = JSON.stringify(wireSchema(schema));
    const payloads: Array<{ body: string; rows: number }> = [];
    {
      const sql = `SELECT ${entrySql(db, schema)} FROM (SELECT 'U'::char(1) AS op, * FROM ${names[0]!} ORDER BY id LIMIT ${Math.min(rows, 40 * MAX_ROWS)}) AS s`;
      let entries: string[] = [];
      let bytes = 0;
      for await (const t of binaryTuples(await db.copyOut!(`COPY (${sql}) TO STDOUT (FORMAT binary)`))) {
        const entry = t[0]!.toString('utf8');
        if (entries.length === MAX_ROWS || bytes + entry.length + 1 > MAX_BYTES) {
          payloads.push({ body: frameBatch({ runId: 'raw', mode: 'initial', batch: payloads.length + 1, schemaJson }, entries), rows: entries.length });
          entries = [];
          bytes = 0;
        }
        entries.push(entry);
        bytes += entry.length + 1;
      }
      if (entries.length) payloads.push({ body: frameBatch({ runId: 'raw', mode: 'initial', batch: payloads.length + 1, schemaJson }, entries), rows: entries.length });
    }
    const bare = await startChild(['-e', BARE_SERVER]);
    children.push(bare.child);
    const pushTenant = (url: string) =>
      ({ id: TENANT, push: { url, token: TOKEN, apiKeyHeader: 'X-Api-Key', maxInFlight: inFlight, timeout: 120_000, gzipAboveBytes: 64 * 1024, gzipLevel: 1 }, connections: {}, sources: [] }) as unknown as TenantConfig;
    const client = createPushClient(pushTenant(bare.url));
    const bareCpu0 = await cpuSeconds(bare.child.pid!);
    const loopback = await measured(async () => {
      let sent = 0;
      let n = 0;
      await Promise.all(
        Array.from({ length: inFlight }, async () => {
          while (sent < total) {
            const p = payloads[n++ % payloads.length]!;
            sent += p.rows;
            await client.postBatch(names[0]!, `raw.${n}`, p.body);
          }
        }),
      );
      return sent;
    });
    const bareCpu = (await cpuSeconds(bare.child.pid!)) - bareCpu0;
    client.close();
    await stop(bare.child);

    // The harness's backends end here, not during a measured phase: the postmaster adds an exited backend's whole
    // CPU (the generation's and raw limits' included) to its reaped total, which would charge it to that phase.
    await db.close();
    db = await harness();
    for (let i = 0; i < 50; i++) {
      const [{ n }] = (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'cdc-bench' AND pid <> pg_backend_pid()`)) as [{ n: number }];
      if (n === 0) break;
      await new Promise((r) => setTimeout(r, 100));
    }

    // 2–4. The agent against the reference receiver.
    const rx = await startChild(['bin/cdc-agent.js', 'receiver', '--port', '0', '--db', server.url, '--token', `${TENANT}=${TOKEN}`]);
    children.push(rx.child);
    const rawConfig = {
      control: { dialect: 'postgres', url: server.url, poolMax: 12 },
      worker: { concurrency, leaseSeconds: 60, pollInterval: '100ms', healthPort: 0 },
      telemetry: { logLevel: process.env.CDC_BENCH_LOG ?? 'warn' },
      tenants: [
        {
          id: TENANT,
          push: { url: rx.url, token: TOKEN, maxInFlight: inFlight },
          connections: { legacy: { dialect: 'postgres', url: server.url, poolMax: 4 } },
          sources: names.map((name) => ({ id: name, connection: 'legacy', table: `public.${name}`, every: '24h', batch: { maxRows: MAX_ROWS, maxBytes: MAX_BYTES } })),
        },
      ],
    };
    await mkdir('.tmp', { recursive: true });
    const configPath = '.tmp/bench-onboard.yaml';
    await writeFile(configPath, stringify(rawConfig));
    await migrate(db);
    const queue: JobQueue = createJobQueue(db);
    // The agent is `cdc-agent run` in its own process, so that its RSS is its own; --profile adds --cpu-prof.
    const profile = args.includes('--profile') ? ['--cpu-prof', '--cpu-prof-dir=.tmp/prof'] : [];
    // --agent-heap MB: cap the agent's V8 old space (as a container's NODE_OPTIONS would).
    const heap = option(args, '--agent-heap', 0);
    if (heap > 0) profile.push(`--max-old-space-size=${heap}`);
    const agent = spawn(process.execPath, [...profile, 'bin/cdc-agent.js', '--config', configPath, 'run', '--no-schedule', '--health-host', '127.0.0.1'], { stdio: ['ignore', 'inherit', 'inherit'] });
    children.push(agent);
    cleanups.push(() => stop(agent));

    const sync = async (kind: 'initial' | 'incremental') => {
      const cpu0 = await cpuSeconds(rx.child.pid!);
      const agentCpu0 = await cpuSeconds(agent.pid!);
      const pgCpu0 = await postgresCpuSeconds();
      const breakdown = postgresCpuBreakdown(db);
      const [{ at }] = (await db.query<{ at: string }>('SELECT now()::text AS at')) as [{ at: string }];
      const m = await measured(async () => {
        const followed: Followed[] = [];
        for (const name of names) {
          const r = await queue.enqueue({ tenant: TENANT, source: name, kind, priority: kind === 'initial' ? 100 : 0 });
          followed.push({ tenant: TENANT, source: name, jobId: (r.jobId ?? r.existingJobId)! });
        }
        return followJobs(queue, followed, { tty: false, write: () => {}, pollMs: 50 });
      }, agent.pid);
      const cpu = (await cpuSeconds(rx.child.pid!)) - cpu0;
      const agentCpu = (await cpuSeconds(agent.pid!)) - agentCpu0;
      const postgresCpu = (await postgresCpuSeconds()) - pgCpu0;
      const postgresBy = await breakdown.stop();
      console.log(`PostgreSQL CPU s during ${kind} sync by session: ${JSON.stringify(postgresBy)}`);
      if (m.result.failed.length > 0) throw new Error(`sync failed: ${JSON.stringify(m.result.failed)}`);
      const bad = await db.query<{ n: string }>(`SELECT count(*)::text AS n FROM rx_runs WHERE problems IS NOT NULL OR rows_held <> source_rows`);
      if (Number(bad[0]!.n) > 0) throw new Error(`receiver did not reconcile ${bad[0]!.n} runs`);
      const counts = await db.query<{ u: string; d: string }>(
        `SELECT coalesce(sum(upserts), 0)::text AS u, coalesce(sum(deletes), 0)::text AS d FROM cdc_runs WHERE status = 'succeeded' AND started_at >= $1::timestamptz`,
        [at],
      );
      return { ...m, receiverCpu: cpu, agentCpu, postgresCpu, postgresBy, upserts: Number(counts[0]!.u), deletes: Number(counts[0]!.d) };
    };

    await new Promise((r) => setTimeout(r, 3000));
    const idleRssMb = Math.round((await rssOf(agent.pid!)) / 1024 / 1024);
    console.log(`agent idle RSS ${idleRssMb} MB; onboarding…`);
    const onboard = await sync('initial');
    console.log(`onboarding: ${r2(onboard.seconds)} s; changing 1 % of every table…`);
    for (const name of names) {
      await db.execute(`UPDATE ${name} SET c4 = c4 || ' changed', c8 = c8 + 1 WHERE id % 200 = 0`);
      await db.execute(`DELETE FROM ${name} WHERE id % 400 = 1`);
      await fill(db, name, rows + 1, rows + Math.floor(rows / 400));
    }
    await db.execute('ANALYZE');
    const incremental = await sync('incremental');
    console.log(`incremental: ${r2(incremental.seconds)} s; syncing again with no change…`);
    const noChange = await sync('incremental');

    const perTable = (s: number) => r2(s / tables);
    const figures: Array<Record<string, string | number>> = [
      { phase: 'raw COPY TO STDOUT', rows: total, seconds: r2(copyOut.seconds), 'rows/s': Math.round(total / copyOut.seconds), 's per table': perTable(copyOut.seconds), 'vs raw': '', 'agent peak RSS MB': '', 'receiver CPU s': '', note: `${Math.round(copyOut.result / 1e6)} MB text` },
      { phase: 'raw COPY FROM STDIN (unlogged, no index)', rows: total, seconds: r2(copyIn.seconds), 'rows/s': Math.round(total / copyIn.seconds), 's per table': perTable(copyIn.seconds), 'vs raw': '', 'agent peak RSS MB': '', 'receiver CPU s': '', note: 'binary COPY piped table → table' },
      { phase: 'raw loopback HTTP (bare Node server parses)', rows: loopback.result, seconds: r2(loopback.seconds), 'rows/s': Math.round(loopback.result / loopback.seconds), 's per table': perTable(loopback.seconds), 'vs raw': '', 'agent peak RSS MB': '', 'receiver CPU s': r2(bareCpu), note: `${payloads.length} payloads of ${MAX_ROWS} rows, gzip, ${inFlight} in flight` },
    ];
    const rawSum = copyOut.seconds + copyIn.seconds + loopback.seconds;
    for (const [phase, m, note] of [
      ['onboarding (snapshot → diff → batch → push)', onboard, `${onboard.upserts} U; agent RSS before: ${idleRssMb} MB`],
      ['incremental sync, 1 % changed', incremental, `${incremental.upserts} U / ${incremental.deletes} D`],
      ['no-change sync', noChange, `${noChange.upserts} U / ${noChange.deletes} D`],
    ] as const) {
      figures.push({
        phase,
        rows: total,
        seconds: r2(m.seconds),
        'rows/s': Math.round(total / m.seconds),
        's per table': perTable(m.seconds),
        'vs raw': r2(m.seconds / rawSum),
        'agent peak RSS MB': m.peakRssMb,
        'receiver CPU s': r2(m.receiverCpu),
        'agent CPU s': r2(m.agentCpu),
        'PostgreSQL CPU s': r2(m.postgresCpu),
        'PostgreSQL CPU s by session': JSON.stringify(m.postgresBy),
        note,
      });
    }
    console.log(`"vs raw" = phase seconds / (raw COPY out + raw COPY in + raw loopback) = ${r2(rawSum)} s; agent concurrency ${concurrency}, ${inFlight} in flight, agent run from ${build === 'dist' ? 'the build (dist/)' : 'the sources (type stripping)'}`);
    await report('onboard', figures);
  } finally {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
    for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
    await db.close();
    await server.close();
  }
}
