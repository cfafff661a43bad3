/**
 * Fault injection with a convergence proof (docs/design.md §5, I7). Two agent processes share one tenant's sources;
 * every iteration mutates the source at random, enqueues a sync of every source, and while it runs:
 * kill -9 of one agent at a random moment (restarted afterwards, as Kubernetes would), the agents'
 * control-database connections terminated (`pg_terminate_backend`), sometimes their source connections too,
 * and a receiver that fails, throttles and resets connections. Then, with the faults over, it waits for
 * every job to succeed and proves: the receiver equals the source row for row (`/rows`), no run failed
 * reconciliation (`/stats`), and no batch was applied twice (one applied request per idempotency key).
 *
 * Used by test/chaos/chaos.test.ts (a few iterations inside `npm test`) and `npm run test:chaos`.
 */
import { mutateEstate } from '../../src/demo/estate.ts';
import { FaultInjector, seededRandom, type FaultOptions } from '../../src/receiver/faults.ts';
import { startReceiver } from '../../src/receiver/server.ts';
import { allOk, Estate, type AgentProcess } from '../support/estate.ts';

export const CHAOS_SOURCES = ['customers', 'products', 'orders', 'order_lines'].map((t) => ({ id: t, table: `public.${t}` }));
export const CHAOS_TENANT = 'acme';
export const RECEIVER_FAULTS: FaultOptions = { failRate: 0.12, throttleRate: 0.04, retryAfterSeconds: 1, resetRate: 0.08, latencyMs: 15 };
const RECEIVER_SEED = 4242;

export interface FaultCounts {
  sourceMutations: number;
  agentKill9: number;
  /** Kills that hit an agent holding at least one running job, by the phase that job was in. */
  killsDuringPhase: Record<string, number>;
  controlConnectionsTerminated: number;
  sourceConnectionsTerminated: number;
  receiver500: number;
  receiver429: number;
  receiverResetBeforeApply: number;
  receiverResetAfterApply: number;
}

export interface IterationResult {
  iteration: number;
  converged: boolean;
  /** Source rows the receiver does not hold once healed (0 when converged). */
  rowsLost: number;
  /** Applied receiver requests minus distinct idempotency keys (0: nothing applied twice). */
  doubleApplied: number;
  reconciliationMismatches: number;
  deadJobs: string[];
  differences: Record<string, string>;
  ms: number;
}

export interface ChaosSummary {
  iterations: number;
  converged: number;
  convergenceRate: number;
  rowsLost: number;
  doubleApplied: number;
  faults: FaultCounts;
  rowsPerTenant: number;
  agents: number;
  seed: number;
  receiverFaults: FaultOptions;
  startedAt: string;
  durationMs: number;
  results: IterationResult[];
}

export interface ChaosOptions {
  iterations: number;
  seed?: number;
  rows?: number;
  label?: string;
  onIteration?: (result: IterationResult, faults: FaultCounts) => void;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The test process's own polling shares the control database with the agents: ride out terminated connections. */
async function tolerant<T>(fn: () => Promise<T>, tries = 10): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (error) {
      if (attempt >= tries) throw error;
      await sleep(200);
    }
  }
}

async function terminateAgentBackends(estate: Estate, database: 'control' | 'source'): Promise<number> {
  const db = database === 'control' ? estate.control.db : estate.sourceDb(CHAOS_TENANT);
  const [row] = await tolerant(() =>
    db.query<{ n: string }>(
      `SELECT count(pg_terminate_backend(pid))::text AS n FROM pg_stat_activity
        WHERE datname = current_database() AND application_name = 'cdc-sync-agent' AND pid <> pg_backend_pid()`,
    ),
  );
  return Number(row?.n ?? 0);
}

async function waitForJobs(estate: Estate, ids: string[], timeoutMs: number): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const views = await tolerant(() => estate.queue.getJobs(ids));
    const dead = views.filter((v) => v.status === 'dead').map((v) => `${v.tenant}/${v.source}: ${v.lastError ?? ''}`);
    if (dead.length > 0) return dead;
    if (views.length === ids.length && views.every((v) => v.status === 'succeeded')) return [];
    if (Date.now() > deadline) return views.filter((v) => v.status !== 'succeeded').map((v) => `${v.tenant}/${v.source}: not finished (${v.status}/${v.phase})`);
    await sleep(250);
  }
}

export async function runChaos(options: ChaosOptions): Promise<ChaosSummary> {
  const seed = options.seed ?? Date.now() % 1_000_000;
  const random = seededRandom(seed);
  const rows = options.rows ?? 12_000;
  const started = Date.now();
  const faults: FaultCounts = {
    sourceMutations: 0,
    agentKill9: 0,
    killsDuringPhase: {},
    controlConnectionsTerminated: 0,
    sourceConnectionsTerminated: 0,
    receiver500: 0,
    receiver429: 0,
    receiverResetBeforeApply: 0,
    receiverResetAfterApply: 0,
  };
  const estate = await Estate.create({
    label: options.label ?? 'chaos',
    tenants: [CHAOS_TENANT],
    rows,
    sources: CHAOS_SOURCES,
    worker: { concurrency: 2, leaseSeconds: 5, drainGraceSeconds: 2 },
    batch: { maxRows: 150 },
  });
  try {
    // The receiver on the same port, now with faults, and a mirror of its seeded fault generator: every
    // authorised POST draws one decision, so replaying the draws counts the faults it injected, by kind.
    const port = Number(new URL(estate.receiver.url).port);
    await estate.receiver.close();
    const mirror = new FaultInjector(RECEIVER_FAULTS, RECEIVER_SEED);
    const token = estate.tokens[CHAOS_TENANT]!;
    estate.receiver = await startReceiver({
      port,
      host: '127.0.0.1',
      db: estate.receiverDb.db,
      tokens: estate.tokens,
      faults: RECEIVER_FAULTS,
      seed: RECEIVER_SEED,
      observe: (request) => {
        if (request.method !== 'POST' || request.headers.authorization !== `Bearer ${token}`) return;
        const decision = mirror.decide();
        if (decision.kind === 'fail') faults.receiver500++;
        else if (decision.kind === 'throttle') faults.receiver429++;
        else if (decision.kind === 'reset') {
          if (decision.afterApply) faults.receiverResetAfterApply++;
          else faults.receiverResetBeforeApply++;
        }
      },
    });

    const agents: AgentProcess[] = await Promise.all([estate.startAgent('chaos-a0'), estate.startAgent('chaos-b0')]);
    const initial = await estate.enqueue(CHAOS_TENANT, 'initial');
    const initialDead = await waitForJobs(estate, initial, 300_000);
    if (initialDead.length > 0) throw new Error(`initial sync did not finish: ${initialDead.join('; ')}`);

    const results: IterationResult[] = [];
    for (let iteration = 1; iteration <= options.iterations; iteration++) {
      const t0 = Date.now();
      await tolerant(() => mutateEstate(estate.sourceDb(CHAOS_TENANT), 0.01 + random() * 0.07));
      faults.sourceMutations++;
      const ids = await tolerant(() => estate.enqueue(CHAOS_TENANT, 'incremental'));

      const victimIndex = random() < 0.5 ? 0 : 1;
      const killAt = random() * 2500;
      const terminateAt = random() * 2500;
      const alsoSource = random() < 0.5;
      const kill = (async () => {
        await sleep(killAt);
        const victim = agents[victimIndex]!;
        const running = await tolerant(() => estate.queue.stats()).then((s) => s.running.filter((r) => r.owner === victim.name)).catch(() => []);
        for (const r of running) faults.killsDuringPhase[r.phase ?? 'claimed'] = (faults.killsDuringPhase[r.phase ?? 'claimed'] ?? 0) + 1;
        victim.signal('SIGKILL');
        await victim.exited;
        faults.agentKill9++;
      })();
      const terminate = (async () => {
        await sleep(terminateAt);
        faults.controlConnectionsTerminated += await terminateAgentBackends(estate, 'control');
        if (alsoSource) faults.sourceConnectionsTerminated += await terminateAgentBackends(estate, 'source');
      })();
      await Promise.all([kill, terminate]);
      // Healing: the killed agent comes back (a new pod); its jobs are taken over once their leases expire.
      agents[victimIndex] = await estate.startAgent(`chaos-${victimIndex === 0 ? 'a' : 'b'}${iteration}`);

      const deadJobs = await waitForJobs(estate, ids, 240_000);
      const verified = await tolerant(() => estate.verify(CHAOS_TENANT));
      const differences = allOk(verified);
      const rowsLost = Object.values(verified).reduce((n, v) => n + (v.ok ? 0 : Math.max(0, v.sourceRows - v.receiverRows)), 0);
      let reconciliationMismatches = 0;
      for (const s of CHAOS_SOURCES) reconciliationMismatches += (await estate.receiverStats(CHAOS_TENANT, s.id)).mismatches ?? 0;
      const [applied] = await tolerant(() =>
        estate.receiverDb.db.query<{ n: string; keys: string }>(`SELECT count(*)::text AS n, count(DISTINCT idempotency_key)::text AS keys FROM rx_requests`),
      );
      const doubleApplied = Number(applied?.n ?? 0) - Number(applied?.keys ?? 0);
      const converged = deadJobs.length === 0 && Object.values(verified).every((v) => v.ok) && doubleApplied === 0 && reconciliationMismatches === 0;
      const result: IterationResult = { iteration, converged, rowsLost, doubleApplied, reconciliationMismatches, deadJobs, differences, ms: Date.now() - t0 };
      results.push(result);
      options.onIteration?.(result, faults);
      if (deadJobs.length > 0) await tolerant(() => estate.queue.retryDead({ tenant: CHAOS_TENANT }));
    }
    const converged = results.filter((r) => r.converged).length;
    return {
      iterations: results.length,
      converged,
      convergenceRate: results.length === 0 ? 0 : converged / results.length,
      rowsLost: results.reduce((n, r) => n + r.rowsLost, 0),
      doubleApplied: results.reduce((n, r) => n + r.doubleApplied, 0),
      faults,
      rowsPerTenant: rows,
      agents: 2,
      seed,
      receiverFaults: RECEIVER_FAULTS,
      startedAt: new Date(started).toISOString(),
      durationMs: Date.now() - started,
      results,
    };
  } finally {
    await estate.close();
  }
}

export function formatSummary(s: ChaosSummary): string {
  const f = s.faults;
  const phases = Object.entries(f.killsDuringPhase).map(([p, n]) => `${p} ${n}`).join(', ') || 'none (agent idle)';
  return [
    `chaos: ${s.iterations} iteration(s), seed ${s.seed}, ${s.agents} agents, ${s.rowsPerTenant} source rows, ${(s.durationMs / 1000).toFixed(1)} s`,
    `faults injected: source mutations ${f.sourceMutations}, kill -9 ${f.agentKill9} (jobs held at the kill: ${phases}),`,
    `  control connections terminated ${f.controlConnectionsTerminated}, source connections terminated ${f.sourceConnectionsTerminated},`,
    `  receiver 500 ${f.receiver500}, 429 ${f.receiver429}, resets before apply ${f.receiverResetBeforeApply}, after apply ${f.receiverResetAfterApply}`,
    `converged: ${s.converged}/${s.iterations} (${(s.convergenceRate * 100).toFixed(1)} %), rows lost: ${s.rowsLost}, batches applied twice: ${s.doubleApplied}`,
  ].join('\n');
}
