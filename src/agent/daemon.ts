/**
 * The agent daemon (`cdc-agent run`): claims up to `worker.concurrency` jobs, heartbeats their leases, runs
 * them phase by phase, and shuts down in two stages: drain (stop claiming, let running jobs finish within the
 * grace time), then force (abort what is left and release its lease so another replica resumes it).
 */
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { BrokenTenant, CompiledConfig } from '../config/load.ts';
import type { Db } from '../dialect/types.ts';
import { classifyError } from '../errors/classify.ts';
import { CdcError, LeaseLostError } from '../errors/errors.ts';
import { assertSchemaUsable } from '../migrations/migrate.ts';
import type { ClaimedJob, JobQueue } from '../queue-table/queue.ts';
import type { SecretRotation } from '../config/rotation.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { Telemetry } from '../telemetry/metrics.ts';
import { PrometheusSink } from '../telemetry/prometheus.ts';
import type { SourceConnections } from './connections.ts';
import { startHealthServer } from './health.ts';
import { runJob } from './run-job.ts';
import { RunLedger } from './run-ledger.ts';
import { Scheduler } from './scheduler.ts';
import { collectStatus } from './status.ts';

export type LifecycleState = 'starting' | 'running' | 'draining' | 'stopped';

/** Abort reason used when the grace period ends: the job is released, not failed. */
class DrainTimeout extends CdcError {
  constructor() {
    super('Shutdown grace period ended before the job finished; its lease is released for another replica.', { retryable: true });
  }
}

export interface DaemonOptions {
  config: CompiledConfig;
  controlDb: Db;
  queue: JobQueue;
  sources: SourceConnections;
  log: Logger;
  workerId?: string;
  /** Host for the health server (default 0.0.0.0; tests use 127.0.0.1). */
  healthHost?: string;
  /** Disable the scheduler (one-shot modes and tests). */
  schedule?: boolean;
  /** Metrics and events (docs/design.md §7); `/metrics` is served when it has a Prometheus sink. */
  telemetry?: Telemetry;
  /** Secret refresh after an authentication failure (rotation). */
  rotation?: SecretRotation;
  /** How often queue depth and per-source lag are sampled into gauges (default 15 s). */
  sampleEveryMs?: number;
  /** Configured tenants left out because their secrets are missing (src/config/load.ts): reported, not served. */
  brokenTenants?: readonly BrokenTenant[];
}

interface ActiveJob {
  job: ClaimedJob;
  abort: AbortController;
  done: Promise<void>;
}

export class AgentDaemon {
  state: LifecycleState = 'starting';
  readonly workerId: string;
  healthPort: number | undefined;
  private readonly options: DaemonOptions;
  private readonly active = new Map<string, ActiveJob>();
  private scheduler: Scheduler | undefined;
  private health: { close(): Promise<void> } | undefined;
  private wake: (() => void) | undefined;
  private loop: Promise<void> | undefined;
  private readyCache: { at: number; ok: boolean; detail: Record<string, unknown> } | undefined;
  private sampler: NodeJS.Timeout | undefined;

  /** The sources this replica's configuration has: the only jobs it claims. */
  private readonly known: ReadonlyArray<{ tenant: string; source: string }>;

  constructor(options: DaemonOptions) {
    this.options = options;
    this.known = options.config.tenants.flatMap((t) => t.sources.map((s) => ({ tenant: t.id, source: s.id })));
    this.workerId = options.workerId ?? `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
  }

  private get log(): Logger {
    return this.options.log;
  }

  async start(): Promise<void> {
    const { config } = this.options;
    const health = await startHealthServer(config.worker.healthPort, this.options.healthHost ?? '0.0.0.0', {
      live: () => this.state !== 'stopped',
      ready: () => this.readiness(),
      extra: this.options.telemetry?.find(PrometheusSink)?.endpoint() ?? {},
    });
    this.health = health;
    this.healthPort = health.port;
    this.log.info({ workerId: this.workerId, healthPort: health.port }, 'agent starting');
    for (const b of this.options.brokenTenants ?? []) {
      this.log.error({ tenant: b.tenant, problems: b.problems }, `tenant ${b.tenant} is not served: its secrets cannot be resolved (${b.problems.join('; ')}); the other tenants are`);
    }
    // Wait for a usable schema without crash-looping: back off while the control database is unreachable.
    let delay = 1000;
    while (this.state === 'starting') {
      try {
        const status = await assertSchemaUsable(this.options.controlDb);
        if (status.pending.length === 0) break;
        this.log.warn({ pending: status.pending }, 'control database has pending migrations; run `cdc-agent migrate` (waiting)');
      } catch (error) {
        if (!classifyError(error).retryable) throw error;
        this.log.warn({ err: error, retryInMs: delay }, 'control database not reachable yet; retrying');
      }
      await this.sleep(delay);
      delay = Math.min(delay * 2, 30_000);
    }
    if (this.state !== 'starting') return;
    if (this.options.schedule !== false) {
      this.scheduler = new Scheduler(config, this.options.queue, this.log);
      this.scheduler.start();
    }
    this.state = 'running';
    this.readyCache = undefined;
    this.log.info({ concurrency: config.worker.concurrency }, 'agent running');
    if (this.options.telemetry) {
      void this.sample();
      this.sampler = setInterval(() => void this.sample(), this.options.sampleEveryMs ?? 15_000);
    }
    this.loop = this.claimLoop();
  }

  /** Queue depth, dead jobs and per-source lag into the telemetry gauges. */
  async sample(): Promise<void> {
    const { config, controlDb, queue, telemetry } = this.options;
    if (!telemetry) return;
    try {
      const intervals = config.tenants.flatMap((t) =>
        t.sources.filter((s) => s.every !== undefined).map((s) => ({ tenant: t.id, source: s.id, seconds: (s.every ?? 0) / 1000 })),
      );
      telemetry.sampled(await collectStatus(config, controlDb, queue), intervals);
      telemetry.tenantsNotServed((this.options.brokenTenants ?? []).map((b) => b.tenant));
    } catch (error) {
      this.log.debug({ err: error }, 'sampling queue metrics failed');
    }
  }

  private async readiness(): Promise<{ ok: boolean; detail: Record<string, unknown> }> {
    if (this.readyCache && Date.now() - this.readyCache.at < 2000) return this.readyCache;
    let result: { ok: boolean; detail: Record<string, unknown> };
    try {
      const status = await assertSchemaUsable(this.options.controlDb);
      const ok = this.state === 'running' && status.pending.length === 0;
      const broken = this.options.brokenTenants ?? [];
      // Still ready: the other tenants are served; the broken ones are named for the operator.
      result = {
        ok,
        detail: { state: this.state, migration: status.current, pendingMigrations: status.pending.length, activeJobs: this.active.size, ...(broken.length ? { tenantsNotServed: broken } : {}) },
      };
    } catch (error) {
      result = { ok: false, detail: { state: this.state, error: error instanceof Error ? error.message : String(error) } };
    }
    this.readyCache = { at: Date.now(), ...result };
    return result;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  private async claimLoop(): Promise<void> {
    const { config, queue } = this.options;
    let idleDelay = config.worker.pollInterval;
    while (this.state === 'running') {
      const free = config.worker.concurrency - this.active.size;
      if (free > 0) {
        try {
          const jobs = await queue.claim(this.workerId, free, config.worker.leaseMs, this.known);
          for (const job of jobs) this.launch(job);
          idleDelay = config.worker.pollInterval;
          if (jobs.length > 0) continue;
        } catch (error) {
          idleDelay = Math.min(idleDelay * 2, 30_000);
          this.log.warn({ err: error, retryInMs: idleDelay }, 'claiming jobs failed; backing off');
        }
      }
      await this.sleep(idleDelay);
    }
  }

  private launch(job: ClaimedJob): void {
    const { config, queue, controlDb, sources } = this.options;
    const log = this.log.child({ tenant: job.tenant, source: job.source, jobId: job.id, kind: job.kind });
    const abort = new AbortController();
    // One beat at a time: a beat still waiting on the control database is not joined by more.
    let beating = false;
    const heartbeat = setInterval(() => {
      if (beating) return;
      beating = true;
      const beatAt = Date.now();
      queue
        .heartbeat(job, config.worker.leaseMs)
        .then(() => {
          const ms = Date.now() - beatAt;
          if (ms > config.worker.heartbeatMs) {
            log.warn({ ms, leaseMs: config.worker.leaseMs }, 'heartbeat was slow: the control database took longer than a beat to renew the lease; at the lease length another replica takes the job over');
          }
        })
        .catch((error: unknown) => {
          if (error instanceof LeaseLostError) {
            log.warn('lease lost; stopping this job without writing anything more');
            abort.abort(error);
          } else {
            log.warn({ err: error }, 'heartbeat failed; will retry at the next beat');
          }
        })
        .finally(() => (beating = false));
    }, config.worker.heartbeatMs);
    log.info({ attempt: job.attempts, phase: job.phase }, 'job claimed');
    const started = Date.now();
    // The run this attempt works on: the claimed one when resumed, else the fresh one runJob starts.
    let runId = job.runId;
    const done = (async () => {
      try {
        const { telemetry, rotation } = this.options;
        // A diff may use a second connection only while this agent has a free job slot (src/cdc/diff.ts); never
        // more than two, so that a large table's parts cannot take the control pool from heartbeats and fences.
        const diffConnections = () => (config.worker.concurrency > this.active.size ? 2 : 1);
        const stats = await runJob({ job, queue, config, controlDb, sources, log, signal: abort.signal, diffConnections, workerId: this.workerId, onRunId: (id) => (runId = id), ...(telemetry ? { telemetry } : {}), ...(rotation ? { rotation } : {}) });
        // The mismatch policy's resync is enqueued with the completion, in one transaction (src/agent/run-job.ts).
        const next = stats.unreconciled?.action === 'resync' ? { tenant: job.tenant, source: job.source, kind: 'resync' as const, maxAttempts: config.worker.maxAttempts } : undefined;
        const followUp = await queue.complete(job, stats, next);
        telemetry?.jobSucceeded(job, Date.now() - started, stats);
        const summary = { ms: Date.now() - started, mode: stats.mode, upserts: stats.upserts, deletes: stats.deletes, batches: stats.batches };
        if (stats.unreconciled) {
          const resync = followUp?.jobId ?? followUp?.existingJobId;
          log.warn({ ...summary, problems: stats.unreconciled.problems, action: stats.unreconciled.action, ...(resync ? { resyncJobId: resync } : {}) }, 'job finished unreconciled');
        } else {
          log.info(summary, 'job succeeded');
        }
      } catch (error) {
        await this.settleFailure(job, runId, error, abort.signal, log, Date.now() - started);
      } finally {
        clearInterval(heartbeat);
        this.active.delete(job.id);
        this.wake?.();
      }
    })();
    this.active.set(job.id, { job, abort, done });
  }

  private async settleFailure(job: ClaimedJob, runId: string | null, error: unknown, signal: AbortSignal, log: Logger, ms: number): Promise<void> {
    const reason = signal.aborted ? signal.reason : undefined;
    const telemetry = this.options.telemetry;
    if (error instanceof LeaseLostError || reason instanceof LeaseLostError) {
      telemetry?.leaseLost(job, ms);
      log.warn('job abandoned after losing its lease; the new owner carries on');
      return;
    }
    if (reason instanceof DrainTimeout) {
      await this.options.queue.release(job).catch((e: unknown) => log.warn({ err: e }, 'could not release the job; its lease will expire'));
      telemetry?.released(job, ms);
      log.info('job released at shutdown; another replica will resume it');
      return;
    }
    const message = error instanceof Error ? error.message : String(error);
    try {
      const outcome = await this.options.queue.fail(job, error);
      telemetry?.jobFailed(job, ms, error, outcome.status === 'dead' ? 'dead' : 'retrying');
      // A dead-lettered job's run ends failed with its error; a retried one stays running (it may resume).
      if (runId && outcome.status === 'dead') await new RunLedger(this.options.controlDb).fail(runId, message).catch(() => {});
      if (outcome.status === 'dead') log.error({ err: error }, 'job dead-lettered; fix the cause, then `cdc-agent jobs retry-dead`');
      else {
        // An expected retry: its cause at warn, the stack only at debug.
        log.warn({ error: message, attempt: job.attempts, runAfter: outcome.runAfter }, 'job failed; retrying later');
        log.debug({ err: error }, 'job failure detail');
      }
    } catch (failError) {
      if (failError instanceof LeaseLostError) telemetry?.leaseLost(job, ms);
      if (failError instanceof LeaseLostError) log.warn('job failed after losing its lease; the new owner carries on');
      else log.error({ err: failError, cause: message }, 'could not record the job failure; its lease will expire and it will be retried');
    }
  }

  /** Stage one: stop claiming and wait up to the grace period; stage two: abort and release what is left. */
  async stop(reason = 'shutdown'): Promise<void> {
    if (this.state === 'stopped' || this.state === 'draining') return;
    const wasStarting = this.state === 'starting';
    this.state = 'draining';
    this.log.info({ reason, activeJobs: this.active.size, graceMs: this.options.config.worker.drainGraceMs }, 'draining');
    this.scheduler?.stop();
    clearInterval(this.sampler);
    this.wake?.();
    if (!wasStarting) await this.loop;
    const all = () => Promise.all([...this.active.values()].map((a) => a.done));
    let timer: NodeJS.Timeout | undefined;
    const graceOver = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), this.options.config.worker.drainGraceMs);
    });
    const outcome = await Promise.race([all().then(() => 'drained' as const), graceOver]);
    clearTimeout(timer);
    if (outcome === 'timeout') {
      this.log.warn({ activeJobs: this.active.size }, 'grace period over; releasing unfinished jobs');
      for (const a of this.active.values()) a.abort.abort(new DrainTimeout());
      await all();
    }
    await this.health?.close();
    this.state = 'stopped';
    this.log.info('stopped');
  }
}
