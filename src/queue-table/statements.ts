/**
 * The queue's SQL, one statement per operation, with the same parameters and the same result columns in
 * each dialect (postgres.ts and mssql.ts beside this file). queue.ts holds the logic and never looks at
 * the dialect.
 *
 * Conventions of every statement:
 * - the job id travels as text and comes back as text (`id`);
 * - times come back as milliseconds since the epoch (`*_ms`, float), read from the database clock, so
 *   replicas' clocks never matter;
 * - fenced statements match `id = :id AND lease_token = :token AND status = 'running'`, so a worker that
 *   lost its lease changes nothing and learns it from a row count of 0.
 */

/** Columns of a claimed job (claim's result). */
export interface JobRowSql {
  id: string;
  tenant_id: string;
  source_id: string;
  kind: string;
  priority: number;
  attempts: number;
  max_attempts: number;
  lease_token: string;
  phase: string | null;
  run_id: string | null;
  stats: unknown;
}

export interface QueueStatements {
  /**
   * Insert a job unless the database refuses it (one unfinished job per source; one job per slot).
   * Params: 1 tenant, 2 source, 3 kind, 4 priority, 5 run_after (Date or null = now), 6 slot_key or null,
   * 7 max_attempts. One row: `id` (null when refused), `unfinished_id`, `slot_id` (the jobs in the way).
   */
  enqueue: string;
  /**
   * Dead-letter running jobs whose lease expired on their last attempt (the worker died). The job keeps
   * the error of the attempt before, after the lease message. No params. Returns the number of rows changed.
   */
  reapExpired: string;
  /**
   * The claim, one atomic statement that skips rows other claimers hold. Params: 1 max jobs,
   * 2 worker id, 3 lease ms, 4 the sources this replica may take (`sourceFilter`'s value; null: any).
   * Rows: JobRowSql.
   */
  claim: string;
  /** The claim's 4th parameter for these `tenant/source` names (ids are [a-z0-9_-], so `/` and `,` cannot occur in them). */
  sourceFilter(names: readonly string[]): unknown;
  /** Params: 1 id, 2 token, 3 lease ms. Fenced. */
  heartbeat: string;
  /** Params: 1 id, 2 token, 3 phase|null, 4 run_id|null, 5 stats JSON|null; nulls keep the old value. Fenced. */
  progress: string;
  /** Lock the job row for the rest of the transaction. Params: 1 id, 2 token. Rows: `attempts`, `max_attempts`. Fenced. */
  lockFenced: string;
  /** Params: 1 id, 2 token, 3 stats JSON|null (null keeps the old stats). Fenced. */
  complete: string;
  /** Back to queued after a transient failure. Params: 1 id, 2 token, 3 delay ms, 4 last_error. Row: `run_after_ms`. Fenced. */
  requeue: string;
  /** Params: 1 id, 2 token, 3 last_error. Fenced. */
  deadLetter: string;
  /** Back to queued now, giving back the attempt. Params: 1 id, 2 token. Fenced. */
  release: string;
  /**
   * Revive dead jobs: the newest dead job of each matching source (or exactly the given job), unless
   * that source already has an unfinished job. Params: 1 tenant|null, 2 source|null, 3 job id|null.
   */
  retryDead: string;
  /** Delete succeeded jobs finished more than `1` ms ago. Params: 1 older-than ms. */
  prune: string;
  /** Queued jobs per source. Rows: `tenant_id`, `source_id`, `n`, `waiting_s` (seconds the longest-due one waits; NULL when none is due). */
  statsQueuedBySource: string;
  /**
   * Jobs by id; given the dialect's placeholders for the ids (text). Rows: id, tenant_id, source_id, kind,
   * status, priority, attempts, max_attempts, phase, run_id, stats, last_error, lease_owner, run_after_ms,
   * lease_until_ms, created_ms, updated_ms, finished_ms.
   */
  jobsByIds(placeholders: readonly string[]): string;
  /**
   * The newest jobs, the same columns as jobsByIds plus `now_ms` (the database clock). Params: 1 status or
   * NULL (queued, running and dead), 2 tenant or NULL, 3 at most this many.
   */
  listJobs: string;
  /** Rows: `status`, `n`. */
  statsDepth: string;
  /** One row: `now_ms`, `ready`, `oldest_ready_ms` (null when none). */
  statsQueued: string;
  /** Rows: id, tenant_id, source_id, kind, attempts, lease_owner, phase, run_id, lease_until_ms, started_ms. */
  statsRunning: string;
  /** Newest dead jobs first, at most `1`. Params: 1 limit. Rows: id, tenant_id, source_id, kind, attempts, last_error, finished_ms. */
  statsDead: string;
  /** Newest job of every (tenant, source). Rows: id, tenant_id, source_id, kind, status, phase, attempts, last_error, updated_ms, finished_ms. */
  statsLatest: string;
}
