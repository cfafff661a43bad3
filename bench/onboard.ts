/**
 * `npm run bench` (or `npm run bench -- onboard [--receiver sink|reference|both] [--tables 12] [--rows 1000000]
 * [--concurrency 2] [--in-flight 4] [--agent-heap MB] [--profile] [--sources]`):
 * the mission-scale benchmark (issues 10 and 20). One PostgreSQL database holds a generated source estate
 * (`--tables` tables × `--rows` rows × 10 business columns); on this one machine it measures
 *   1. the raw limits: `COPY … TO STDOUT` of every table, `COPY … FROM STDIN` of the same rows into an unlogged
 *      table without index, and loopback HTTP of the same JSON payloads (as the agent frames and gzips them) to
 *      a bare Node server that gunzips and parses them;
 *   then for each receiver (`--receiver`, default both: the sink, then the reference), with a control database
 *   of its own (the reference receiver's tables in it too) and the agent (`cdc-agent run`, own process):
 *   2. onboarding end to end into the receiver (bench/sink.ts, storing nothing, or `cdc-agent receiver`, each
 *      its own process so that its CPU is measurable and the agent's RSS is its own);
 *   3. an incremental sync after changing 1 % of every table (0.5 % updates, 0.25 % inserts, 0.25 % deletes);
 *   4. a sync with no changes.
 * Each sync is checked: every job succeeds and reconciles (the reference: rows held = source rows; the sink:
 * counts, and none of its completions a mismatch). CPU is sampled every 100 ms (bench/cpu.ts): the agent
 * process, its control-database backends and its source-database backends (the agent side), the receiver
 * process and its database backends (the receiver side), charged to the phase each running job was in (split
 * evenly between two jobs in different phases), and the backends' CPU also to the statements they ran.
 * The agent and the receiver run from a fresh `npm run build` (dist/), as in the container image; `--sources`
 * runs them from the TypeScript sources instead. It prints a table and writes .tmp/bench-onboard.json.
 */
import { performance } from 'node:perf_hooks';
import { writeFile, mkdir } from 'node:fs/promises';
import type { ChildProcess } from 'node:child_process';
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
import { cpuSeconds, loadAverage, postmasterOf, rssOf, sampleCpu, serverCpuSeconds } from './cpu.ts';
import { monotonicUs, newestProfile, profileByWindow } from './cpuprofile.ts';
import { benchDatabase, chooseAgentBuild, report, BARE_SERVER, option, startAgent, startChild, stopChild } from './support.ts';

const TENANT = 'bench';
const TOKEN = 'bench-token';
const MAX_ROWS = 5_000;
const MAX_BYTES = 4 * 1024 * 1024;
const PHASES = ['snapshot', 'diff', 'batch', 'push', 'between jobs'] as const;

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

type Receiver = 'sink' | 'reference';

function receiversOf(args: string[]): Receiver[] {
  const i = args.indexOf('--receiver');
  const v = i >= 0 ? args[i + 1] : 'both';
  if (v === 'both') return ['sink', 'reference'];
  if (v === 'sink' || v === 'reference') return [v];
  throw new Error(`--receiver is sink, reference or both, not ${v}`);
}

export async function run(args: string[]): Promise<void> {
  const tables = option(args, '--tables', 12);
  const rows = option(args, '--rows', 1_000_000);
  const concurrency = option(args, '--concurrency', 2);
  const inFlight = option(args, '--in-flight', 4);
  const receivers = receiversOf(args);
  const build = await chooseAgentBuild(args);
  const server = await benchDatabase('onboard');
  const sourceDbName = new URL(server.url).pathname.slice(1);
  // The harness's own sessions (generation, raw limits, job polling) are told apart from the agent's.
  const harness = (url: string) => connect({ dialect: 'postgres', url: withApplicationName(url, 'cdc-bench'), poolMax: 4 });
  let db = await harness(server.url);
  const children: ChildProcess[] = [];
  const r2 = (x: number) => Math.round(x * 100) / 100;
  const figures: Array<Record<string, string | number>> = [];
  const details: Record<string, unknown> = {};
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
    const perM = (cpu: number) => r2(cpu / (total / 1e6));

    // 1. Raw limits.
    console.log(`raw limits… (load average ${await loadAverage()})`);
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
    await stopChild(bare.child);
    const rawSum = copyOut.seconds + copyIn.seconds + loopback.seconds;
    figures.push(
      { receiver: '', phase: 'raw COPY TO STDOUT', rows: total, seconds: r2(copyOut.seconds), 's per table': r2(copyOut.seconds / tables), note: `${Math.round(copyOut.result / 1e6)} MB text` },
      { receiver: '', phase: 'raw COPY FROM STDIN (unlogged, no index)', rows: total, seconds: r2(copyIn.seconds), 's per table': r2(copyIn.seconds / tables), note: 'binary COPY piped table → table' },
      {
        receiver: 'bare server',
        phase: 'raw loopback HTTP (bare Node server parses)',
        rows: loopback.result,
        seconds: r2(loopback.seconds),
        's per table': r2(loopback.seconds / tables),
        'receiver CPU s per 1M': r2(bareCpu / (loopback.result / 1e6)),
        note: `${payloads.length} payloads of ${MAX_ROWS} rows, gzip, ${inFlight} in flight; bare server ${r2(bareCpu)} CPU-s`,
      },
    );

    // The harness's backends end here, not during a measured phase (a backend's CPU is sampled while it lives).
    await db.close();
    db = await harness(server.url);
    const postmaster = await postmasterOf(db);
    let nextId = rows + 1;

    for (const [pass, receiver] of receivers.entries()) {
      console.log(`— receiver: ${receiver} —`);
      // A control database of its own per receiver: the second onboarding starts from nothing, as the first.
      const controlUrl = await server.createDatabase(`ctl_${receiver}`);
      const controlDbName = new URL(controlUrl).pathname.slice(1);
      const ctl = await harness(controlUrl);
      await migrate(ctl);
      const queue: JobQueue = createJobQueue(ctl);
      const rx =
        receiver === 'sink'
          ? await startChild(['bench/sink.ts', '--port', '0', '--token', `${TENANT}=${TOKEN}`])
          : await startChild(['bin/cdc-agent.js', 'receiver', '--port', '0', '--db', controlUrl, '--token', `${TENANT}=${TOKEN}`]);
      children.push(rx.child);
      const rawConfig = {
        control: { dialect: 'postgres', url: controlUrl, poolMax: 12 },
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
      const configPath = `.tmp/bench-onboard-${receiver}.yaml`;
      await writeFile(configPath, stringify(rawConfig));
      // --profile adds --cpu-prof; --agent-heap MB caps the agent's V8 old space (as a container's NODE_OPTIONS would).
      const execArgv = args.includes('--profile') ? ['--cpu-prof', '--cpu-prof-dir=.tmp/prof'] : [];
      const heap = option(args, '--agent-heap', 0);
      if (heap > 0) execArgv.push(`--max-old-space-size=${heap}`);
      const agentStarted = Date.now();
      const agent = startAgent(configPath, execArgv);
      children.push(agent.child);

      const group = (s: { database: string | null; application: string; backendType: string }) => {
        if (s.application === 'cdc-bench') return null;
        if (s.database === sourceDbName) return 'source db';
        if (s.database === controlDbName) return s.application === 'cdc-receiver' ? 'receiver db' : s.application === 'cdc-sync-agent' ? 'agent db' : null;
        return null;
      };
      const sync = async (kind: 'initial' | 'incremental') => {
        const load = await loadAverage();
        const server0 = await serverCpuSeconds(postmaster);
        const sampler = sampleCpu(ctl, {
          processes: { agent: agent.pid, receiver: rx.child.pid! },
          group,
          phases: async () => (await ctl.query<{ phase: string }>(`SELECT phase FROM cdc_runs WHERE status = 'running'`)).map((r) => r.phase),
          statements: ['agent db', 'source db', 'receiver db'],
        });
        await sampler.ready;
        const [{ at }] = (await ctl.query<{ at: string }>('SELECT now()::text AS at')) as [{ at: string }];
        const from = monotonicUs();
        const m = await measured(async () => {
          const followed: Followed[] = [];
          for (const name of names) {
            const r = await queue.enqueue({ tenant: TENANT, source: name, kind, priority: kind === 'initial' ? 100 : 0 });
            followed.push({ tenant: TENANT, source: name, jobId: (r.jobId ?? r.existingJobId)! });
          }
          return followJobs(queue, followed, { tty: false, write: () => {}, pollMs: 50 });
        }, agent.pid);
        const window: [number, number] = [from, monotonicUs()];
        const cpu = await sampler.stop();
        const serverCpu = (await serverCpuSeconds(postmaster)) - server0;
        if (m.result.failed.length > 0) throw new Error(`sync failed: ${JSON.stringify(m.result.failed)}`);
        if (m.result.unreconciled.length > 0) throw new Error(`runs not reconciled: ${JSON.stringify(m.result.unreconciled)}`);
        if (receiver === 'reference') {
          const bad = await ctl.query<{ n: string }>(`SELECT count(*)::text AS n FROM rx_runs WHERE problems IS NOT NULL OR rows_held <> source_rows`);
          if (Number(bad[0]!.n) > 0) throw new Error(`receiver did not reconcile ${bad[0]!.n} runs`);
        } else {
          for (const name of names) {
            const res = await fetch(`${rx.url}/tenants/${TENANT}/datasets/${name}/stats`, { headers: { authorization: `Bearer ${TOKEN}` } });
            const st = (await res.json()) as { mismatches: number };
            if (st.mismatches !== 0) throw new Error(`the sink answered ${st.mismatches} completions of ${name} with a mismatch`);
          }
        }
        const counts = await ctl.query<{ u: string; d: string }>(
          `SELECT coalesce(sum(upserts), 0)::text AS u, coalesce(sum(deletes), 0)::text AS d FROM cdc_runs WHERE status = 'succeeded' AND started_at >= $1::timestamptz`,
          [at],
        );
        return { ...m, load, cpu, serverCpu, window, upserts: Number(counts[0]!.u), deletes: Number(counts[0]!.d) };
      };

      await new Promise((r) => setTimeout(r, 3000));
      const idleRssMb = Math.round((await rssOf(agent.pid)) / 1024 / 1024);
      console.log(`agent idle RSS ${idleRssMb} MB; onboarding…`);
      const onboard = await sync('initial');
      console.log(`onboarding: ${r2(onboard.seconds)} s; changing 1 % of every table…`);
      // Each pass changes other rows: updates id % 200 = 2 × pass, deletes id % 400 = 2 × pass + 1 (odd: never an updated row).
      for (const name of names) {
        await db.execute(`UPDATE ${name} SET c4 = c4 || ' changed', c8 = c8 + 1 WHERE id % 200 = ${2 * pass}`);
        await db.execute(`DELETE FROM ${name} WHERE id % 400 = ${2 * pass + 1}`);
        await fill(db, name, nextId, nextId + Math.floor(rows / 400) - 1);
      }
      nextId += Math.floor(rows / 400);
      await db.execute('ANALYZE');
      const incremental = await sync('incremental');
      console.log(`incremental: ${r2(incremental.seconds)} s; syncing again with no change…`);
      const noChange = await sync('incremental');
      await stopChild(agent.child);
      await stopChild(rx.child);

      const syncs = [
        ['onboarding', onboard, `${onboard.upserts} U; agent RSS before: ${idleRssMb} MB`],
        ['incremental sync, 1 % changed', incremental, `${incremental.upserts} U / ${incremental.deletes} D`],
        ['no-change sync', noChange, `${noChange.upserts} U / ${noChange.deletes} D`],
      ] as const;
      for (const [phase, m, note] of syncs) {
        const t = m.cpu.total;
        const agentSide = (t.agent ?? 0) + (t['agent db'] ?? 0) + (t['source db'] ?? 0);
        const receiverSide = (t.receiver ?? 0) + (t['receiver db'] ?? 0);
        figures.push({
          receiver,
          phase,
          rows: total,
          seconds: r2(m.seconds),
          's per table': r2(m.seconds / tables),
          'vs raw': r2(m.seconds / rawSum),
          'agent side CPU s per 1M': perM(agentSide),
          'agent process': perM(t.agent ?? 0),
          'agent db': perM(t['agent db'] ?? 0),
          'source db': perM(t['source db'] ?? 0),
          'receiver side CPU s per 1M': perM(receiverSide),
          'receiver CPU s per 1M': perM(t.receiver ?? 0),
          'receiver db': perM(t['receiver db'] ?? 0),
          'agent peak RSS MB': m.peakRssMb,
          'server CPU s': r2(m.serverCpu),
          'load avg': m.load,
          note,
        });
        for (const p of PHASES) {
          const c = m.cpu.byPhase[p];
          if (!c) continue;
          figures.push({
            receiver,
            phase: `  ${phase}: ${p}`,
            'job-s in phase': r2(m.cpu.phaseSeconds[p] ?? 0),
            'agent side CPU s per 1M': perM((c.agent ?? 0) + (c['agent db'] ?? 0) + (c['source db'] ?? 0)),
            'agent process': perM(c.agent ?? 0),
            'agent db': perM(c['agent db'] ?? 0),
            'source db': perM(c['source db'] ?? 0),
            'receiver side CPU s per 1M': perM((c.receiver ?? 0) + (c['receiver db'] ?? 0)),
            'receiver CPU s per 1M': perM(c.receiver ?? 0),
            'receiver db': perM(c['receiver db'] ?? 0),
          });
        }
        const top = Object.entries(m.cpu.byStatement).slice(0, 14);
        console.log(`${receiver}, ${phase}: backend CPU-s by statement (sampled):\n${top.map(([k, v]) => `  ${v.toFixed(2).padStart(7)}  ${k}`).join('\n')}`);
        details[`${receiver}: ${phase}`] = { cpu: m.cpu, seconds: m.seconds, serverCpu: m.serverCpu, load: m.load };
      }
      if (execArgv.includes('--cpu-prof')) {
        const path = await newestProfile('.tmp/prof', agentStarted);
        if (path) {
          const byWindow = await profileByWindow(path, Object.fromEntries(syncs.map(([phase, m]) => [phase, m.window])), 20);
          for (const [phase, p] of Object.entries(byWindow)) {
            console.log(`${receiver}, agent profile, ${phase}: busy ${p.busyMs} ms (GC ${p.gcMs}), idle ${p.idleMs} ms`);
            for (const [f, ms] of p.functions) console.log(`  ${String(ms).padStart(7)} ms  ${f}`);
          }
          details[`${receiver}: profile`] = { path, byWindow };
        }
      }
      await ctl.close();
    }

    console.log(`"vs raw" = phase seconds / (raw COPY out + raw COPY in + raw loopback) = ${r2(rawSum)} s; agent concurrency ${concurrency}, ${inFlight} in flight, agent run from ${build === 'dist' ? 'the build (dist/)' : 'the sources (type stripping)'}`);
    console.log('CPU per 1M rows = CPU-s of the sync / (tables × rows / 1M); "agent side" = agent process + its control-database backends + its source-database backends.');
    await report('onboard', figures);
    await writeFile('.tmp/bench-onboard-detail.json', JSON.stringify(details, null, 2));
  } finally {
    for (const c of children) await stopChild(c).catch(() => {});
    await db.close();
    await server.close();
  }
}
