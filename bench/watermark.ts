/**
 * `npm run bench -- watermark [--rows 1000000] [--overlap 5m] [--receiver reference|sink] [--profile] [--sources]`:
 * issue 21's bench. What each run type of watermark mode costs the tenant's source database, beside a full diff,
 * in one invocation:
 *   - a PostgreSQL source database of its own (so that its backends are told apart from the control database's)
 *     holds one table of `--rows` rows: `id bigint` primary key, the 10 business columns of the other benches and
 *     `modified_at timestamptz NOT NULL`, indexed, seeded 30 s apart ending ≈ 53 days ago, so that the default
 *     5 min overlap reaches about 10 of them;
 *   - the raw reads measured first, on the same table: `COPY … TO STDOUT` of every row, of the key alone, and
 *     (after the first change) of the rows past the watermark;
 *   - `cdc-agent run` (own process) onboards it into the receiver (the reference receiver, own process, or with
 *     `--receiver sink` bench/sink.ts), then after 1 % changed each time (0.5 % updates that stamp
 *     `modified_at = clock_timestamp()`, 0.25 % inserts, 0.25 % deletes), one run of each type: a watermark run,
 *     a keydiff run, a full diff with no change since (the proof: it must find nothing, `lastFullDiffFound` 0),
 *     and a full diff. The run type is the agent's own choice from the source's history (`keyDiffEvery` 1h,
 *     `fullDiffEvery` 24h): before the keydiff and full runs the bench moves the recorded last key / full diff
 *     back by 2 h / 25 h in cdc_watermarks, as that much time passing would; `status --json` must then show the
 *     expected `lastRun.runType`, or the bench fails.
 * For each run: the source rows read (the run's `sourceRows`, plus the keys a keydiff reads), the job's wall
 * seconds (enqueued → seen succeeded, 50 ms polls) and the run's own (cdc_runs), the source database's CPU-s (its
 * backends, sampled every 50 ms from pg_stat_activity and /proc), the agent's (process, and its control-database
 * backends), the receiver's, and the changes pushed; the CPU of the samplers' backends is also charged to the
 * statements they ran. Every run must succeed and reconcile. `--profile` runs the agent with `--cpu-prof` and
 * prints its busiest functions in each run. Prints a table and writes .tmp/bench-watermark.json.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, writeFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { stringify } from 'yaml';
import { followJobs } from '../src/agent/progress.ts';
import type { SourceStatus, StatusReport } from '../src/agent/status.ts';
import { connect } from '../src/dialect/connect.ts';
import { PostgresDb, withApplicationName } from '../src/dialect/postgres.ts';
import type { Db } from '../src/dialect/types.ts';
import { migrate } from '../src/migrations/migrate.ts';
import { createJobQueue } from '../src/queue-table/queue.ts';
import { cpuSeconds, loadAverage, sampleCpu } from './cpu.ts';
import { monotonicUs, newestProfile, profileByWindow } from './cpuprofile.ts';
import { benchDatabase, chooseAgentBuild, option, report, startAgent, startChild, stopChild, type AgentProcess } from './support.ts';

const TENANT = 'bench';
const TOKEN = 'bench-token';
const SOURCE = 'orders';
const TABLE = 'wm_src';
const CONFIG_PATH = '.tmp/bench-watermark.yaml';

const r3 = (x: number) => Math.round(x * 1000) / 1000;

function textOption(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

async function fill(db: Db, from: number, to: number, stamp: string): Promise<void> {
  await db.execute(`INSERT INTO ${TABLE} SELECT i, i % 1000, i * 7, (i % 100000) / 100.0, 'text value ' || i, 'v' || (i % 5000),
    timestamp '2020-01-01' + i * interval '1.000001 second', i % 2 = 0, i / 3.0, md5(i::text)::uuid, date '2020-01-01' + (i % 1000), ${stamp}
    FROM generate_series(${from}, ${to}) AS i`);
}

/** CPU-s of one source backend (a one-connection pool) while `fn` runs: the harness's raw reads. */
async function backendCpu<T>(db: PostgresDb, fn: () => Promise<T>): Promise<{ result: T; cpu: number; seconds: number }> {
  const [{ pid }] = (await db.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')) as [{ pid: number }];
  const cpu0 = await cpuSeconds(pid);
  const t0 = performance.now();
  const result = await fn();
  const seconds = (performance.now() - t0) / 1000;
  return { result, cpu: (await cpuSeconds(pid)) - cpu0, seconds };
}

async function copyBytes(db: PostgresDb, sql: string): Promise<{ bytes: number; rows: number }> {
  let bytes = 0;
  let rows = 0;
  for await (const chunk of await db.copyOut(sql)) {
    const b = chunk as Buffer;
    bytes += b.length;
    for (let i = b.indexOf(10); i >= 0; i = b.indexOf(10, i + 1)) rows++;
  }
  return { bytes, rows };
}

/** `cdc-agent status --json`: this source's entry. */
async function sourceStatus(): Promise<SourceStatus> {
  const child = spawn(process.execPath, ['bin/cdc-agent.js', '--config', CONFIG_PATH, 'status', '--json'], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString('utf8')));
  await once(child, 'exit');
  const report = JSON.parse(out) as StatusReport;
  const s = report.sources.find((x) => x.tenant === TENANT && x.source === SOURCE);
  if (!s) throw new Error(`status --json has no ${TENANT}/${SOURCE}: ${out.slice(0, 400)}`);
  return s;
}

export async function run(args: string[]): Promise<void> {
  const rows = option(args, '--rows', 1_000_000);
  const overlap = textOption(args, '--overlap');
  const receiverKind = textOption(args, '--receiver') ?? 'reference';
  if (receiverKind !== 'reference' && receiverKind !== 'sink') throw new Error('--receiver is reference or sink');
  const build = await chooseAgentBuild(args);
  const server = await benchDatabase('watermark');
  const sourceUrl = await server.createDatabase('src');
  const sourceDbName = new URL(sourceUrl).pathname.slice(1);
  // The harness's sessions are named, so that the samplers leave them out.
  const control = await connect({ dialect: 'postgres', url: withApplicationName(server.url, 'cdc-bench'), poolMax: 4 });
  const source = new PostgresDb({ dialect: 'postgres', url: withApplicationName(sourceUrl, 'cdc-bench'), poolMax: 1 });
  const children: ChildProcess[] = [];
  let agent: AgentProcess | undefined;
  try {
    console.log(`generating ${rows.toLocaleString('en')} rows with an indexed modified_at…`);
    await source.execute(`CREATE TABLE ${TABLE} (
      id bigint PRIMARY KEY, c1 integer, c2 bigint, c3 numeric(12,2), c4 text, c5 varchar(50),
      c6 timestamp(6), c7 boolean, c8 double precision, c9 uuid, c10 date, modified_at timestamptz NOT NULL)`);
    // Seed stamps 30 s apart, the newest ≈ 53 days ago: the 5 min overlap behind the seed's watermark reaches 10.
    await fill(source, 1, rows, `now() - interval '400 days' + i * interval '30 seconds'`);
    await source.execute(`CREATE INDEX ${TABLE}_modified_at ON ${TABLE} (modified_at)`);
    await source.execute(`VACUUM ANALYZE ${TABLE}`);

    // Raw limits on the source: every row, the key alone.
    console.log('raw reads…');
    const rawFull = await backendCpu(source, () => copyBytes(source, `COPY ${TABLE} TO STDOUT`));
    const rawKeys = await backendCpu(source, () => copyBytes(source, `COPY (SELECT id FROM ${TABLE}) TO STDOUT`));

    // The receiver, then the agent.
    const rx =
      receiverKind === 'sink'
        ? await startChild(['bench/sink.ts', '--port', '0', '--token', `${TENANT}=${TOKEN}`])
        : await startChild(['bin/cdc-agent.js', 'receiver', '--port', '0', '--db', server.url, '--token', `${TENANT}=${TOKEN}`]);
    children.push(rx.child);
    const rawConfig = {
      control: { dialect: 'postgres', url: server.url, poolMax: 8 },
      worker: { concurrency: 1, leaseSeconds: 60, pollInterval: '100ms', healthPort: 0 },
      telemetry: { logLevel: 'info' },
      tenants: [
        {
          id: TENANT,
          push: { url: rx.url, token: TOKEN, maxInFlight: 4 },
          connections: { legacy: { dialect: 'postgres', url: sourceUrl, poolMax: 4 } },
          sources: [{ id: SOURCE, connection: 'legacy', table: `public.${TABLE}`, every: '24h', watermark: { column: 'modified_at', ...(overlap ? { overlap } : {}) } }],
        },
      ],
    };
    await mkdir('.tmp', { recursive: true });
    await writeFile(CONFIG_PATH, stringify(rawConfig));
    await migrate(control);
    const queue = createJobQueue(control);
    const profile = args.includes('--profile');
    const agentStarted = Date.now();
    agent = startAgent(CONFIG_PATH, profile ? ['--cpu-prof', '--cpu-prof-dir=.tmp/prof'] : []);
    children.push(agent.child);
    await new Promise((r) => setTimeout(r, 3000));

    // Only this bench's databases: other sessions on the machine run agents and receivers of their own.
    const controlDbName = new URL(server.url).pathname.slice(1);
    const groupOf = (s: { database: string | null; application: string }) => {
      if (s.application === 'cdc-bench') return null;
      if (s.database === sourceDbName) return 'source db';
      if (s.database !== controlDbName) return null;
      if (s.application === 'cdc-sync-agent') return 'agent db';
      if (s.application === 'cdc-receiver') return 'receiver db';
      return null;
    };

    const sync = async (kind: 'initial' | 'incremental') => {
      const logFrom = agent!.lines.length;
      const load = await loadAverage();
      const sampler = sampleCpu(control, {
        processes: { agent: agent!.pid, receiver: rx.child.pid! },
        group: groupOf,
        phases: async () => (await control.query<{ phase: string }>(`SELECT phase FROM cdc_runs WHERE status = 'running'`)).map((r) => r.phase),
        statements: ['source db', 'agent db'],
        intervalMs: 50,
      });
      await sampler.ready;
      const t0 = performance.now();
      const from = monotonicUs();
      const enq = await queue.enqueue({ tenant: TENANT, source: SOURCE, kind, priority: kind === 'initial' ? 100 : 0 });
      const jobId = (enq.jobId ?? enq.existingJobId)!;
      const followed = await followJobs(queue, [{ tenant: TENANT, source: SOURCE, jobId }], { tty: false, write: () => {}, pollMs: 50 });
      const seconds = (performance.now() - t0) / 1000;
      const window: [number, number] = [from, monotonicUs()];
      // The source's pooled connections stay open 10 s: this last sample still sees them.
      const cpu = await sampler.stop();
      if (followed.failed.length > 0 || followed.unreconciled.length > 0) throw new Error(`the run did not succeed: ${JSON.stringify(followed)}`);
      const status = await sourceStatus();
      const [timing] = await control.query<{ s: number }>(
        `SELECT EXTRACT(EPOCH FROM finished_at - started_at)::float8 AS s FROM cdc_runs WHERE run_id = $1`,
        [status.lastRun!.runId],
      );
      const lines = agent!.lines.slice(logFrom);
      const phaseMs = (msg: string) => lines.filter((l) => l.msg === msg).reduce((a, l) => a + Number(l.ms ?? 0), 0);
      const keys = lines.find((l) => l.msg === 'source keys read');
      if (process.env.CDC_BENCH_TIMELINE) {
        const t0 = Date.parse(lines[0]?.time ?? '');
        for (const l of lines) console.log(`  +${Date.parse(l.time) - t0} ms ${l.msg}${l.ms !== undefined ? ` (${String(l.ms)} ms)` : ''}`);
      }
      return {
        seconds,
        window,
        runSeconds: timing?.s ?? NaN,
        load,
        cpu,
        status,
        keysRead: keys ? Number(keys.keys) : 0,
        phases: { snapshot: phaseMs('snapshot taken'), keys: phaseMs('source keys read'), diff: phaseMs('diff computed'), push: phaseMs('changes pushed and acknowledged') },
      };
    };

    // 1 % changed: round k updates id % 200 = k (stamping modified_at), deletes id % 400 = 100 + k, inserts 0.25 %.
    let nextId = rows + 1;
    const change = async (k: number) => {
      await source.execute(`UPDATE ${TABLE} SET c4 = c4 || ' changed', c8 = c8 + 1, modified_at = clock_timestamp() WHERE id % 200 = ${k}`);
      await source.execute(`DELETE FROM ${TABLE} WHERE id % 400 = ${100 + k}`);
      const n = Math.floor(rows / 400);
      await fill(source, nextId, nextId + n - 1, 'clock_timestamp()');
      nextId += n;
    };
    const steer = async (type: 'keydiff' | 'full') => {
      const column = type === 'keydiff' ? 'last_key_diff_at' : 'last_full_diff_at';
      const back = type === 'keydiff' ? '2 hours' : '25 hours';
      await control.execute(`UPDATE cdc_watermarks SET ${column} = ${column} - interval '${back}' WHERE tenant_id = $1 AND source_id = $2`, [TENANT, SOURCE]);
    };

    console.log('onboarding…');
    const onboard = await sync('initial');
    const watermark0 = onboard.status.watermark?.value ?? null;

    await change(1);
    // The raw floor of the watermark run's read: the same rows, by the same index, as COPY text.
    const rawDelta = await backendCpu(source, () =>
      copyBytes(source, `COPY (SELECT * FROM ${TABLE} WHERE modified_at > timestamptz '${watermark0}' - interval '5 minutes') TO STDOUT`),
    );
    console.log('watermark run…');
    const watermarkRun = await sync('incremental');
    await change(2);
    await steer('keydiff');
    console.log('keydiff run…');
    const keydiffRun = await sync('incremental');
    await steer('full');
    console.log('full diff, no change since the keydiff (the proof)…');
    const proofRun = await sync('incremental');
    await change(3);
    await steer('full');
    console.log('full diff…');
    const fullRun = await sync('incremental');

    const expect: Array<[string, Awaited<ReturnType<typeof sync>>, string]> = [
      ['onboarding', onboard, 'full'],
      ['watermark run', watermarkRun, 'watermark'],
      ['keydiff run', keydiffRun, 'keydiff'],
      ['full diff, no change (proof)', proofRun, 'full'],
      ['full diff', fullRun, 'full'],
    ];
    for (const [name, m, type] of expect) {
      if (m.status.lastRun?.runType !== type) throw new Error(`${name}: expected a ${type} run, status says ${m.status.lastRun?.runType} (${m.status.lastRun?.runReason})`);
    }
    const found = proofRun.status.watermark?.lastFullDiffFound;
    if (found !== 0) throw new Error(`the full diff after the watermark and keydiff runs found ${found} changes (lastFullDiffFound must be 0)`);

    const fullSourceCpu = fullRun.cpu.total['source db'] ?? 0;
    const figures: Array<Record<string, string | number>> = [
      { run: 'raw COPY TO STDOUT, every row', 'source rows read': rawFull.result.rows, 'wall s': r3(rawFull.seconds), 'source db CPU s': r3(rawFull.cpu), note: `${Math.round(rawFull.result.bytes / 1e6)} MB` },
      { run: 'raw COPY of the key column', 'source rows read': rawKeys.result.rows, 'wall s': r3(rawKeys.seconds), 'source db CPU s': r3(rawKeys.cpu), note: '' },
      { run: 'raw COPY of the rows past the watermark (index)', 'source rows read': rawDelta.result.rows, 'wall s': r3(rawDelta.seconds), 'source db CPU s': r3(rawDelta.cpu), note: 'after change 1' },
    ];
    for (const [name, m] of expect) {
      const last = m.status.lastRun!;
      const sourceCpu = m.cpu.total['source db'] ?? 0;
      figures.push({
        run: name,
        'run type': last.runType ?? '',
        'source rows read': (last.sourceRows ?? 0) + m.keysRead,
        'delta / key rows': m.keysRead ? `${last.sourceRows} + ${m.keysRead} keys` : String(last.sourceRows),
        'wall s': r3(m.seconds),
        'run s': r3(m.runSeconds),
        'source db CPU s': r3(sourceCpu),
        'vs full diff source CPU': name === 'onboarding' ? '' : `${Math.round((sourceCpu / fullSourceCpu) * 1000) / 10} %`,
        'agent CPU s': r3(m.cpu.total.agent ?? 0),
        'agent db CPU s': r3(m.cpu.total['agent db'] ?? 0),
        'receiver CPU s': r3((m.cpu.total.receiver ?? 0) + (m.cpu.total['receiver db'] ?? 0)),
        'changes pushed': `${last.upserts ?? 0} U / ${last.deletes ?? 0} D`,
        'phases ms': `snapshot ${m.phases.snapshot}${m.keysRead ? ` (keys ${m.phases.keys})` : ''}, diff ${m.phases.diff}, push ${m.phases.push}`,
        'load avg': m.load,
      });
    }
    for (const [name, m] of expect) {
      const top = Object.entries(m.cpu.byStatement).slice(0, 12);
      console.log(`${name}: CPU-s by statement (sampled):\n${top.map(([k, v]) => `  ${v.toFixed(3)}  ${k}`).join('\n')}`);
      console.log(`${name}: CPU by phase ${JSON.stringify(m.cpu.byPhase)}`);
    }
    const wm = figures.find((f) => f.run === 'watermark run')!;
    const wmSourceCpu = watermarkRun.cpu.total['source db'] ?? 0;
    console.log(
      `target: a watermark run ≤ 0.5 s: ${Number(wm['wall s']) <= 0.5 ? 'met' : 'not met'} (job ${wm['wall s']} s, run ${wm['run s']} s); ` +
        `≤ 2 % of a full diff's source CPU: ${wmSourceCpu <= 0.02 * fullSourceCpu ? 'met' : 'not met'} (${r3(wmSourceCpu)} of ${r3(fullSourceCpu)} CPU-s)`,
    );
    console.log(`receiver: ${receiverKind}; agent from ${build === 'dist' ? 'the build (dist/)' : 'the sources'}; load average at the start of each run: ${expect.map(([, m]) => m.load).join(', ')}`);
    await report('watermark', figures);
    if (profile) {
      await stopChild(agent.child);
      const path = await newestProfile('.tmp/prof', agentStarted);
      if (!path) console.log('no agent profile found in .tmp/prof');
      else {
        const byRun = await profileByWindow(path, Object.fromEntries(expect.map(([name, m]) => [name, m.window])));
        for (const [name, p] of Object.entries(byRun)) {
          console.log(`agent profile, ${name}: busy ${p.busyMs} ms (GC ${p.gcMs}), idle ${p.idleMs} ms`);
          for (const [f, ms] of p.functions) console.log(`  ${String(ms).padStart(6)} ms  ${f}`);
        }
        console.log(`profile: ${path}`);
      }
    }
    await writeFile('.tmp/bench-watermark-detail.json', JSON.stringify(Object.fromEntries(expect.map(([name, m]) => [name, { cpu: m.cpu, phases: m.phases, status: m.status }])), null, 2));
  } finally {
    if (agent) await stopChild(agent.child).catch(() => {});
    for (const c of children) await stopChild(c).catch(() => {});
    await source.close();
    await control.close();
    await server.close();
  }
}
