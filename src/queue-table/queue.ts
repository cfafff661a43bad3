/**
 * The job queue in the control database that every replica shares (docs/design.md §4; semantics for operators in
 * docs/failure-semantics.md). Jobs are rows; a replica claims some under a lease, renews it with
 * heartbeats, and every write it makes for a job is fenced by the lease token it got from the claim.
 *
 * This module is the logic; the SQL is one statement per operation in postgres.ts and mssql.ts.
 */
import { classifyError } from '../errors/classify.ts';
import { LeaseLostError, TransientError } from '../errors/errors.ts';
import type { Db, DialectName, Queryable, Row } from '../dialect/types.ts';
import { backoffDelayMs, DEFAULT_BACKOFF, type BackoffPolicy } from './backoff.ts';
import { mssqlQueueStatements } from './mssql.ts';
import { postgresQueueStatements } from './postgres.ts';
import type { JobRowSql, QueueStatements } from './statements.ts';

export { backoffCeilingMs, backoffDelayMs, backoffRange, DEFAULT_BACKOFF, type BackoffPolicy } from './backoff.ts';

export type JobKind = 'initial' | 'incremental' | 'resync';
export type JobStatus = 'queued' | 'running' | 'succeeded' | 'dead';

export const JOB_STATUSES: readonly JobStatus[] = ['queued', 'running', 'succeeded', 'dead'];

/** Higher is claimed first: onboarding before a resync before the routine schedule. */
export const DEFAULT_PRIORITY: Readonly<Record<JobKind, number>> = { initial: 100, resync: 50, incremental: 0 };

export interface EnqueueRequest {
  tenant: string;
  source: string;
  kind: JobKind;
  /** Higher is claimed first; default by kind (DEFAULT_PRIORITY). */
  priority?: number;
  /** Not claimable before this time; default: now (database clock). */
  runAfter?: Date;
  /** schedule slot key, e.g. `cron:2026-11-22T10:15Z`; at most one job per (tenant, source, slotKey) ever */
  slotKey?: string;
  maxAttempts?: number;
}

export interface EnqueueResult {
  enqueued: boolean;
  jobId: string | null;
  /** Why nothing was enqueued: the source already has an unfinished job, or this slot already fired. */
  reason?: 'coalesced' | 'slot-taken';
  existingJobId?: string;
}

export interface JobLease {
  id: string;
  leaseToken: string;
}

export interface ClaimedJob extends JobLease {
  tenant: string;
  source: string;
  kind: JobKind;
  priority: number;
  /** Including this one. */
  attempts: number;
  maxAttempts: number;
  /** Where an earlier attempt got to; a resumed run continues from here. */
  phase: string | null;
  runId: string | null;
  stats: Record<string, unknown> | null;
}

export interface RunningJobInfo {
  id: string;
  tenant: string;
  source: string;
  kind: JobKind;
  attempts: number;
  owner: string | null;
  phase: string | null;
  runId: string | null;
  leaseUntil: Date | null;
  startedAt: Date | null;
}

export interface DeadJobInfo {
  id: string;
  tenant: string;
  source: string;
  kind: JobKind;
  attempts: number;
  lastError: string | null;
  finishedAt: Date | null;
}

export interface LatestJobInfo {
  id: string;
  tenant: string;
  source: string;
  kind: JobKind;
  status: JobStatus;
  phase: string | null;
  attempts: number;
  lastError: string | null;
  updatedAt: Date | null;
  finishedAt: Date | null;
}

/** One job as `getJobs` reads it (progress following, `sync --wait`). */
export interface JobView {
  id: string;
  tenant: string;
  source: string;
  kind: JobKind;
  status: JobStatus;
  priority: number;
  attempts: number;
  maxAttempts: number;
  phase: string | null;
  runId: string | null;
  stats: Record<string, unknown> | null;
  lastError: string | null;
  owner: string | null;
  runAfter: Date | null;
  leaseUntil: Date | null;
  createdAt: Date | null;
  updatedAt: Date | null;
  finishedAt: Date | null;
}

export interface QueueStats {
  /** The database clock when the figures were read. */
  at: Date;
  depth: Record<JobStatus, number>;
  /** Queued jobs that are due (claimable now). */
  ready: number;
  /** How long the longest-waiting due job has been due (now - run_after), null when none is. */
  oldestQueuedAgeMs: number | null;
  /** The same in whole seconds. */
  oldestQueuedSeconds: number | null;
  /** Queued jobs per (tenant, source), due or not; `waitingSeconds`: how long the longest-due one waits (null: none due). */
  queuedBySource: Array<{ tenant: string; source: string; count: number; waitingSeconds: number | null }>;
  running: RunningJobInfo[];
  /** Newest first, at most `deadLimit` (default 100); `depth.dead` has the full count. */
  dead: DeadJobInfo[];
  /** The newest job of every (tenant, source). */
  latest: LatestJobInfo[];
}

export interface JobQueue {
  enqueue(req: EnqueueRequest): Promise<EnqueueResult>;
  /**
   * Claim up to `max` due jobs for `workerId` with a lease of `leaseMs`; with `only`, jobs of those sources
   * alone (a replica takes only sources its configuration has, so a rolling deploy cannot dead-letter new ones).
   */
  claim(workerId: string, max: number, leaseMs: number, only?: ReadonlyArray<{ tenant: string; source: string }>): Promise<ClaimedJob[]>;
  /** Extend the lease; LeaseLostError when the lease is no longer ours. */
  heartbeat(job: JobLease, leaseMs: number): Promise<void>;
  /** Record where the run is (fenced); values left out are kept. */
  setProgress(job: JobLease, p: { phase?: string; runId?: string; stats?: Record<string, unknown> }): Promise<void>;
  /** Run fn in one control-db transaction that first locks the job row and checks lease_token; LeaseLostError if not ours. */
  fenced<T>(job: JobLease, fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /**
   * Mark succeeded (fenced). With `next`, that job is enqueued in the same transaction (the mismatch policy's
   * resync: it cannot be lost between the two); returns its enqueue result.
   */
  complete(job: JobLease, stats?: Record<string, unknown>, next?: EnqueueRequest): Promise<EnqueueResult | undefined>;
  /** Reschedule with backoff when the error is retryable and attempts are left, else dead-letter (fenced). */
  fail(job: JobLease, error: unknown): Promise<{ status: 'queued' | 'dead'; runAfter?: Date }>;
  /** Give the job back (graceful drain) without consuming an attempt (fenced). */
  release(job: JobLease): Promise<void>;
  /** Put dead jobs back in the queue; returns how many. */
  retryDead(filter?: { tenant?: string; source?: string; jobId?: string }): Promise<number>;
  /** Delete succeeded jobs finished more than `olderThanMs` ago; dead jobs are kept. Returns how many. */
  prune(olderThanMs: number): Promise<number>;
  stats(options?: { deadLimit?: number }): Promise<QueueStats>;
  /** The jobs with these ids that still exist (pruned ones are left out). */
  getJobs(ids: readonly string[]): Promise<JobView[]>;
  /** The newest jobs (default: queued, running and dead), newest first, with the database clock. */
  listJobs(filter?: { status?: JobStatus; tenant?: string; limit?: number }): Promise<{ at: Date; jobs: JobView[] }>;
}

export interface JobQueueOptions {
  backoff?: BackoffPolicy;
  /**
   * Accepted for callers that pass a clock, but the queue deliberately reads time only from the database
   * (leases, due times, ages), so that replicas' clocks never matter.
   */
  now?: () => Date;
  /** Jitter source for backoff, [0, 1); tests pass a fixed one. */
  random?: () => number;
  /** max_attempts of jobs enqueued without one (config worker.maxAttempts). */
  defaultMaxAttempts?: number;
  /**
   * The connection heartbeats go through, kept apart from the pool the jobs work on: a job's long COPY holds a
   * pooled connection for as long as its source streams, and a heartbeat queued behind such work would let the
   * lease lapse while the job is healthy (test/agent/leases.test.ts). Default: the queue's own database.
   */
  leaseDb?: Db;
}

const STATEMENTS: Record<DialectName, QueueStatements> = { postgres: postgresQueueStatements, mssql: mssqlQueueStatements };

/** Largest lease or delay DATEADD(millisecond, …) takes (int). */
const MAX_MS = 2_147_483_647;
const MAX_ERROR_CHARS = 8_000;
const JOB_ID = /^[1-9][0-9]{0,18}$/;

function parseJson(value: unknown): Record<string, unknown> | null {
  if (value === null || value === undefined) return null;
  const parsed: unknown = typeof value === 'string' ? JSON.parse(value) : value;
  return parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : null;
}

/** The columns every job projection starts with: which job, of which source, of which kind. */
function jobIdentity(r: Row): { id: string; tenant: string; source: string; kind: JobKind } {
  return { id: String(r.id), tenant: String(r.tenant_id), source: String(r.source_id), kind: r.kind as JobKind };
}

function toDate(msValue: unknown): Date | null {
  return msValue === null || msValue === undefined ? null : new Date(Math.round(Number(msValue)));
}

function positiveInt(value: number, what: string, max = MAX_MS): number {
  if (!Number.isInteger(value) || value < 1 || value > max) throw new RangeError(`${what} must be an integer from 1 to ${max}; got ${value}.`);
  return value;
}

/** The error as an operator reads it in `status`: classification, message, and the causes under it. */
export function describeError(error: unknown): string {
  const { retryable, reason } = classifyError(error);
  const parts: string[] = [];
  let current: unknown = error;
  for (let depth = 0; current !== undefined && current !== null && depth < 4; depth++) {
    const text = current instanceof Error ? `${current.name}: ${current.message}` : String(current);
    if (!parts.some((p) => p.includes(text))) parts.push(text);
    current = current instanceof Error ? current.cause : undefined;
  }
  const text = `[${retryable ? 'transient' : 'permanent'}: ${reason}] ${parts.join('\n  caused by ')}`;
  return text.length > MAX_ERROR_CHARS ? `${text.slice(0, MAX_ERROR_CHARS - 1)}…` : text;
}

class TableJobQueue implements JobQueue {
  private readonly db: Db;
  private readonly leaseDb: Db;
  private readonly sql: QueueStatements;
  private readonly backoff: BackoffPolicy;
  private readonly random: () => number;
  private readonly defaultMaxAttempts: number;

  constructor(db: Db, options: JobQueueOptions) {
    this.db = db;
    this.leaseDb = options.leaseDb ?? db;
    this.sql = STATEMENTS[db.dialect];
    this.backoff = options.backoff ?? DEFAULT_BACKOFF;
    this.random = options.random ?? Math.random;
    this.defaultMaxAttempts = positiveInt(options.defaultMaxAttempts ?? 8, 'defaultMaxAttempts', 1_000);
  }

  private enqueueParams(req: EnqueueRequest): unknown[] {
    if (!req.tenant || !req.source) throw new RangeError('enqueue needs a tenant and a source.');
    const priority = req.priority ?? DEFAULT_PRIORITY[req.kind];
    if (!Number.isInteger(priority) || Math.abs(priority) > 1_000_000) throw new RangeError(`priority must be an integer; got ${priority}.`);
    const maxAttempts = positiveInt(req.maxAttempts ?? this.defaultMaxAttempts, 'maxAttempts', 1_000);
    return [req.tenant, req.source, req.kind, priority, req.runAfter ?? null, req.slotKey ?? null, maxAttempts];
  }

  /** One enqueue statement on `on`; undefined when it neither inserted nor found what blocked it. */
  private async enqueueOnce(on: Queryable, params: readonly unknown[]): Promise<EnqueueResult | undefined> {
    const [row] = await on.query<{ id: string | null; unfinished_id: string | null; slot_id: string | null }>(this.sql.enqueue, params);
    if (row?.id) return { enqueued: true, jobId: String(row.id) };
    if (row?.slot_id) return { enqueued: false, jobId: null, reason: 'slot-taken', existingJobId: String(row.slot_id) };
    if (row?.unfinished_id) return { enqueued: false, jobId: null, reason: 'coalesced', existingJobId: String(row.unfinished_id) };
    return undefined;
  }

  async enqueue(req: EnqueueRequest): Promise<EnqueueResult> {
    const params = this.enqueueParams(req);
    // A refused insert whose blocker finished before we could see it (PostgreSQL reads the rest of the
    // statement from a snapshot taken before the conflicting row committed): simply try again.
    for (let round = 0; round < 5; round++) {
      const result = await this.enqueueOnce(this.db, params);
      if (result) return result;
    }
    throw new TransientError(`Enqueue for ${req.tenant}/${req.source} kept conflicting with jobs that changed under it; try again.`, {
      context: { tenant: req.tenant, source: req.source },
    });
  }

  async claim(workerId: string, max: number, leaseMs: number, only?: ReadonlyArray<{ tenant: string; source: string }>): Promise<ClaimedJob[]> {
    if (!workerId) throw new RangeError('claim needs a worker id.');
    positiveInt(max, 'max', 1_000);
    positiveInt(leaseMs, 'leaseMs');
    const names = only?.map((s) => `${s.tenant}/${s.source}`);
    if (names?.some((n) => !/^[a-z0-9_-]+\/[a-z0-9_-]+$/.test(n))) throw new RangeError('claim: tenant and source ids are [a-z0-9_-].');
    if (names?.length === 0) return [];
    await this.db.execute(this.sql.reapExpired);
    const rows = await this.db.query<JobRowSql & Row>(this.sql.claim, [max, workerId, leaseMs, names ? this.sql.sourceFilter(names) : null]);
    return rows.map((r) => ({
      ...jobIdentity(r),
      leaseToken: r.lease_token,
      priority: Number(r.priority),
      attempts: Number(r.attempts),
      maxAttempts: Number(r.max_attempts),
      phase: r.phase ?? null,
      runId: r.run_id ?? null,
      stats: parseJson(r.stats),
    }));
  }

  /** Run a fenced single statement: 0 rows means the lease is gone. */
  private async fencedWrite(job: JobLease, statement: string, extra: readonly unknown[], on: Queryable = this.db): Promise<void> {
    if (!JOB_ID.test(job.id)) throw new LeaseLostError(job.id);
    const changed = await on.execute(statement, [job.id, job.leaseToken, ...extra]);
    if (changed === 0) throw new LeaseLostError(job.id);
  }

  async heartbeat(job: JobLease, leaseMs: number): Promise<void> {
    await this.fencedWrite(job, this.sql.heartbeat, [positiveInt(leaseMs, 'leaseMs')], this.leaseDb);
  }

  async setProgress(job: JobLease, p: { phase?: string; runId?: string; stats?: Record<string, unknown> }): Promise<void> {
    await this.fencedWrite(job, this.sql.progress, [p.phase ?? null, p.runId ?? null, p.stats === undefined ? null : JSON.stringify(p.stats)]);
  }

  /**
   * `fn`'s writes, committed only if the lease is still ours. The job row is locked and the token checked after
   * `fn` ran, just before the commit: a takeover that committed first makes the check fail and everything rolls
   * back; one that comes later waits for this commit. Checking last keeps the row lock for an instant instead of
   * for the whole of `fn`, so a push's concurrent acknowledgements (each applying a batch to staging) and the
   * heartbeat no longer queue behind one another on the job row.
   */
  async fenced<T>(job: JobLease, fn: (tx: Queryable) => Promise<T>): Promise<T> {
    if (!JOB_ID.test(job.id)) throw new LeaseLostError(job.id);
    return this.db.transaction(async (tx) => {
      const result = await fn(tx);
      await this.lockLease(tx, job);
      return result;
    });
  }

  /** A transaction that first locks the job row, if the lease is still ours; the row stays locked until commit. */
  private async locked<T>(job: JobLease, fn: (tx: Queryable, row: { attempts: number; maxAttempts: number }) => Promise<T>): Promise<T> {
    if (!JOB_ID.test(job.id)) throw new LeaseLostError(job.id);
    return this.db.transaction(async (tx) => fn(tx, await this.lockLease(tx, job)));
  }

  /** Lock the job row inside `tx` if the lease is still ours (else LeaseLostError); its attempt counters. */
  private async lockLease(tx: Queryable, job: JobLease): Promise<{ attempts: number; maxAttempts: number }> {
    const [row] = await tx.query<{ attempts: number; max_attempts: number }>(this.sql.lockFenced, [job.id, job.leaseToken]);
    if (!row) throw new LeaseLostError(job.id);
    return { attempts: Number(row.attempts), maxAttempts: Number(row.max_attempts) };
  }

  async complete(job: JobLease, stats?: Record<string, unknown>, next?: EnqueueRequest): Promise<EnqueueResult | undefined> {
    const statsJson = stats === undefined ? null : JSON.stringify(stats);
    if (!next) {
      await this.fencedWrite(job, this.sql.complete, [statsJson]);
      return undefined;
    }
    const params = this.enqueueParams(next);
    return this.db.transaction(async (tx) => {
      await this.fencedWrite(job, this.sql.complete, [statsJson], tx);
      // This job no longer counts as the source's unfinished one, so only a job enqueued meanwhile blocks it.
      return (await this.enqueueOnce(tx, params)) ?? { enqueued: false, jobId: null, reason: 'coalesced' as const };
    });
  }

  async fail(job: JobLease, error: unknown): Promise<{ status: 'queued' | 'dead'; runAfter?: Date }> {
    const lastError = describeError(error);
    const { retryable } = classifyError(error);
    return this.locked(job, async (tx, row) => {
      if (!retryable || row.attempts >= row.maxAttempts) {
        await this.fencedWrite(job, this.sql.deadLetter, [lastError], tx);
        return { status: 'dead' as const };
      }
      const delay = Math.min(backoffDelayMs(row.attempts, this.backoff, this.random), MAX_MS);
      const [requeued] = await tx.query<{ run_after_ms: number }>(this.sql.requeue, [job.id, job.leaseToken, delay, lastError]);
      if (!requeued) throw new LeaseLostError(job.id);
      return { status: 'queued' as const, runAfter: toDate(requeued.run_after_ms)! };
    });
  }

  async release(job: JobLease): Promise<void> {
    await this.fencedWrite(job, this.sql.release, []);
  }

  async retryDead(filter: { tenant?: string; source?: string; jobId?: string } = {}): Promise<number> {
    if (filter.jobId !== undefined && !JOB_ID.test(filter.jobId)) return 0;
    return this.db.execute(this.sql.retryDead, [filter.tenant ?? null, filter.source ?? null, filter.jobId ?? null]);
  }

  async prune(olderThanMs: number): Promise<number> {
    if (!Number.isFinite(olderThanMs) || olderThanMs < 0) throw new RangeError(`prune needs a retention of 0 ms or more; got ${olderThanMs}.`);
    return this.db.execute(this.sql.prune, [Math.round(olderThanMs)]);
  }

  async getJobs(ids: readonly string[]): Promise<JobView[]> {
    const valid = [...new Set(ids.filter((id) => JOB_ID.test(id)))];
    const views: JobView[] = [];
    // bounded by SQL Server's 2,100 parameters
    for (let i = 0; i < valid.length; i += 500) {
      const chunk = valid.slice(i, i + 500);
      const rows = await this.db.query(this.sql.jobsByIds(chunk.map((_, n) => this.db.param(n + 1))), chunk);
      views.push(...rows.map(jobView));
    }
    return views;
  }

  async listJobs(filter: { status?: JobStatus; tenant?: string; limit?: number } = {}): Promise<{ at: Date; jobs: JobView[] }> {
    if (filter.status !== undefined && !JOB_STATUSES.includes(filter.status)) throw new RangeError(`status must be one of ${JOB_STATUSES.join(', ')}`);
    const limit = positiveInt(filter.limit ?? 100, 'limit', 10_000);
    const rows = await this.db.query(this.sql.listJobs, [filter.status ?? null, filter.tenant ?? null, limit]);
    return { at: toDate(rows[0]?.now_ms) ?? new Date(), jobs: rows.map(jobView) };
  }

  async stats(options: { deadLimit?: number } = {}): Promise<QueueStats> {
    const deadLimit = positiveInt(options.deadLimit ?? 100, 'deadLimit', 10_000);
    const [depthRows, queuedRows, bySourceRows, runningRows, deadRows, latestRows] = await Promise.all([
      this.db.query<{ status: JobStatus; n: number }>(this.sql.statsDepth),
      this.db.query<{ now_ms: number; ready: number; oldest_ready_ms: number | null }>(this.sql.statsQueued),
      this.db.query<{ tenant_id: string; source_id: string; n: number; waiting_s: number | null }>(this.sql.statsQueuedBySource),
      this.db.query(this.sql.statsRunning),
      this.db.query(this.sql.statsDead, [deadLimit]),
      this.db.query(this.sql.statsLatest),
    ]);
    const depth: Record<JobStatus, number> = { queued: 0, running: 0, succeeded: 0, dead: 0 };
    for (const r of depthRows) depth[r.status] = Number(r.n);
    const queued = queuedRows[0];
    const nowMs = Number(queued?.now_ms ?? Date.now());
    const oldest = queued?.oldest_ready_ms;
    const oldestMs = oldest === null || oldest === undefined ? null : Math.max(0, Math.round(nowMs - Number(oldest)));
    return {
      at: new Date(Math.round(nowMs)),
      depth,
      ready: Number(queued?.ready ?? 0),
      oldestQueuedAgeMs: oldestMs,
      oldestQueuedSeconds: oldestMs === null ? null : Math.round(oldestMs / 1000),
      queuedBySource: bySourceRows.map((r) => ({
        tenant: String(r.tenant_id),
        source: String(r.source_id),
        count: Number(r.n),
        waitingSeconds: r.waiting_s === null || r.waiting_s === undefined ? null : Math.round(Number(r.waiting_s)),
      })),
      running: runningRows.map((r) => ({
        ...jobIdentity(r),
        attempts: Number(r.attempts),
        owner: text(r.lease_owner),
        phase: text(r.phase),
        runId: text(r.run_id),
        leaseUntil: toDate(r.lease_until_ms),
        startedAt: toDate(r.started_ms),
      })),
      dead: deadRows.map((r) => ({
        ...jobIdentity(r),
        attempts: Number(r.attempts),
        lastError: text(r.last_error),
        finishedAt: toDate(r.finished_ms),
      })),
      latest: latestRows.map((r) => ({
        ...jobIdentity(r),
        status: r.status as JobStatus,
        phase: text(r.phase),
        attempts: Number(r.attempts),
        lastError: text(r.last_error),
        updatedAt: toDate(r.updated_ms),
        finishedAt: toDate(r.finished_ms),
      })),
    };
  }
}

const text = (v: unknown): string | null => (v === null || v === undefined ? null : String(v));

/** A row of jobsByIds / listJobs as a JobView. */
function jobView(r: Row): JobView {
  return {
    ...jobIdentity(r),
    status: r.status as JobStatus,
    priority: Number(r.priority),
    attempts: Number(r.attempts),
    maxAttempts: Number(r.max_attempts),
    phase: text(r.phase),
    runId: text(r.run_id),
    stats: parseJson(r.stats),
    lastError: text(r.last_error),
    owner: text(r.lease_owner),
    runAfter: toDate(r.run_after_ms),
    leaseUntil: toDate(r.lease_until_ms),
    createdAt: toDate(r.created_ms),
    updatedAt: toDate(r.updated_ms),
    finishedAt: toDate(r.finished_ms),
  };
}

export function createJobQueue(db: Db, options: JobQueueOptions = {}): JobQueue {
  return new TableJobQueue(db, options);
}
