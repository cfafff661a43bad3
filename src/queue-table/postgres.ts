/**
 * The queue's statements for a PostgreSQL control database (parameters and result columns: statements.ts).
 * Claims lock with `FOR UPDATE SKIP LOCKED`; the row lock is what makes a claim exclusive, and the
 * claimable condition is repeated on the locked row because PostgreSQL re-checks it against the newest
 * row version once the lock is granted (a row another claimer just took no longer qualifies).
 */
import type { QueueStatements } from './statements.ts';

const ms = (expression: string) => `(extract(epoch FROM ${expression}) * 1000)::float8`;
const after = (param: string) => `now() + ${param}::float8 * interval '1 millisecond'`;
const FENCE = `id = $1::bigint AND lease_token = $2 AND status = 'running'`;

/** Due queued jobs, and running jobs whose lease expired with attempts left. */
const claimable = (t: string) =>
  `((${t}.status = 'queued' AND ${t}.run_after <= now()) OR (${t}.status = 'running' AND ${t}.lease_until < now() AND ${t}.attempts < ${t}.max_attempts))`;

export const postgresQueueStatements: QueueStatements = {
  enqueue: `
WITH ins AS (
  INSERT INTO cdc_jobs (tenant_id, source_id, kind, priority, run_after, slot_key, max_attempts)
  VALUES ($1, $2, $3, $4, COALESCE($5::timestamptz, now()), $6, $7)
  ON CONFLICT DO NOTHING
  RETURNING id
)
SELECT (SELECT id::text FROM ins) AS id,
       (SELECT u.id::text FROM cdc_jobs AS u
         WHERE u.tenant_id = $1 AND u.source_id = $2 AND u.status IN ('queued', 'running') LIMIT 1) AS unfinished_id,
       (SELECT s.id::text FROM cdc_jobs AS s
         WHERE $6::text IS NOT NULL AND s.tenant_id = $1 AND s.source_id = $2 AND s.slot_key = $6) AS slot_id`,

  reapExpired: `
UPDATE cdc_jobs AS t
SET status = 'dead', finished_at = now(), updated_at = now(), lease_token = NULL, lease_until = NULL,
    last_error = format('Lease of worker %s expired during attempt %s of %s: the worker stopped heartbeating (crash, SIGKILL, lost connection or a control database too slow to renew it) and no attempt is left, so the job is dead-lettered.',
                        t.lease_owner, t.attempts, t.max_attempts)
                 || COALESCE(E'\nThe attempt before failed with: ' || t.last_error, '')
WHERE t.id IN (SELECT id FROM cdc_jobs
                WHERE status = 'running' AND lease_until < now() AND attempts >= max_attempts
                FOR UPDATE SKIP LOCKED)`,

  // Fairness: a job's rank is its tenant's running jobs plus its place among the tenant's claimable jobs
  // of its priority; claims go by priority, then rank. So a tenant's next job waits behind every other
  // tenant's first, and a tenant already busy with work yields to one that is not.
  claim: `
WITH unfinished AS (
  SELECT c.id, c.tenant_id, c.priority, c.run_after,
         CASE WHEN ${claimable('c')} THEN 1 ELSE 0 END AS ready,
         CASE WHEN c.status = 'running' AND c.lease_until >= now() THEN 1 ELSE 0 END AS busy
  FROM cdc_jobs AS c
  WHERE c.status IN ('queued', 'running')
    AND ($4::text[] IS NULL OR c.tenant_id || '/' || c.source_id = ANY($4::text[]))
),
ranked AS (
  SELECT u.id, u.priority, u.run_after, u.ready,
         sum(u.busy) OVER (PARTITION BY u.tenant_id)
           + row_number() OVER (PARTITION BY u.tenant_id, u.priority, u.ready ORDER BY u.run_after, u.id) AS tenant_rank
  FROM unfinished AS u
),
-- Only the best few hundred candidates are looked up and locked: enough for every concurrent claimer's
-- batch; if all of them are held by others, this claim returns fewer jobs and the next one sees the rest.
candidates AS (
  SELECT r.id, r.priority, r.tenant_rank, r.run_after
  FROM ranked AS r
  WHERE r.ready = 1
  ORDER BY r.priority DESC, r.tenant_rank, r.run_after, r.id
  LIMIT $1 * 10 + 100
),
picked AS (
  SELECT j.id
  FROM candidates AS r
  JOIN cdc_jobs AS j ON j.id = r.id
  WHERE ${claimable('j')}
  ORDER BY r.priority DESC, r.tenant_rank, r.run_after, r.id
  LIMIT $1
  FOR UPDATE OF j SKIP LOCKED
)
UPDATE cdc_jobs AS t
SET status = 'running', attempts = t.attempts + 1, lease_owner = $2, lease_token = gen_random_uuid()::text,
    lease_until = ${after('$3')}, claimed_at = now(), updated_at = now()
FROM picked
WHERE t.id = picked.id
RETURNING t.id::text AS id, t.tenant_id, t.source_id, t.kind, t.priority, t.attempts, t.max_attempts,
          t.lease_token, t.phase, t.run_id, t.stats`,

  sourceFilter: (names) => [...names],

  heartbeat: `UPDATE cdc_jobs SET lease_until = ${after('$3')}, updated_at = now() WHERE ${FENCE}`,

  progress: `
UPDATE cdc_jobs
SET phase = COALESCE($3::text, phase), run_id = COALESCE($4::text, run_id), stats = COALESCE($5::jsonb, stats), updated_at = now()
WHERE ${FENCE}`,

  lockFenced: `SELECT attempts, max_attempts FROM cdc_jobs WHERE ${FENCE} FOR UPDATE`,

  complete: `
UPDATE cdc_jobs
SET status = 'succeeded', finished_at = now(), updated_at = now(), lease_token = NULL, lease_until = NULL,
    stats = COALESCE($3::jsonb, stats)
WHERE ${FENCE}`,

  requeue: `
UPDATE cdc_jobs
SET status = 'queued', run_after = ${after('$3')}, last_error = $4, lease_token = NULL, lease_until = NULL, updated_at = now()
WHERE ${FENCE}
RETURNING ${ms('run_after')} AS run_after_ms`,

  deadLetter: `
UPDATE cdc_jobs
SET status = 'dead', last_error = $3, finished_at = now(), updated_at = now(), lease_token = NULL, lease_until = NULL
WHERE ${FENCE}`,

  release: `
UPDATE cdc_jobs
SET status = 'queued', attempts = GREATEST(attempts - 1, 0), run_after = now(), lease_token = NULL, lease_until = NULL, updated_at = now()
WHERE ${FENCE}`,

  retryDead: `
UPDATE cdc_jobs AS j
SET status = 'queued', attempts = 0, run_after = now(), finished_at = NULL, lease_token = NULL, lease_until = NULL, updated_at = now()
WHERE j.status = 'dead'
  AND ($1::text IS NULL OR j.tenant_id = $1::text)
  AND ($2::text IS NULL OR j.source_id = $2::text)
  AND ($3::bigint IS NULL OR j.id = $3::bigint)
  AND ($3::bigint IS NOT NULL OR j.id = (SELECT max(d.id) FROM cdc_jobs AS d
                                          WHERE d.tenant_id = j.tenant_id AND d.source_id = j.source_id AND d.status = 'dead'))
  AND NOT EXISTS (SELECT 1 FROM cdc_jobs AS u
                   WHERE u.tenant_id = j.tenant_id AND u.source_id = j.source_id AND u.status IN ('queued', 'running'))`,

  prune: `DELETE FROM cdc_jobs WHERE status = 'succeeded' AND finished_at < now() - $1::float8 * interval '1 millisecond'`,

  statsDepth: `SELECT status, count(*)::int AS n FROM cdc_jobs GROUP BY status`,

  statsQueuedBySource: `
SELECT tenant_id, source_id, count(*)::int AS n,
       max(extract(epoch FROM now() - run_after)) FILTER (WHERE run_after <= now())::float8 AS waiting_s
FROM cdc_jobs WHERE status = 'queued' GROUP BY tenant_id, source_id`,

  jobsByIds: (placeholders) => `
SELECT id::text AS id, tenant_id, source_id, kind, status, priority, attempts, max_attempts, phase, run_id, stats, last_error, lease_owner,
       ${ms('run_after')} AS run_after_ms, ${ms('lease_until')} AS lease_until_ms, ${ms('created_at')} AS created_ms,
       ${ms('updated_at')} AS updated_ms, ${ms('finished_at')} AS finished_ms
FROM cdc_jobs WHERE id IN (${placeholders.map((p) => `${p}::bigint`).join(', ')}) ORDER BY id`,

  statsQueued: `
SELECT ${ms('now()')} AS now_ms, count(*)::int AS ready, ${ms('min(run_after)')} AS oldest_ready_ms
FROM cdc_jobs WHERE status = 'queued' AND run_after <= now()`,

  listJobs: `
SELECT id::text AS id, tenant_id, source_id, kind, status, priority, attempts, max_attempts, phase, run_id, stats, last_error, lease_owner,
       ${ms('run_after')} AS run_after_ms, ${ms('lease_until')} AS lease_until_ms, ${ms('created_at')} AS created_ms,
       ${ms('updated_at')} AS updated_ms, ${ms('finished_at')} AS finished_ms, ${ms('now()')} AS now_ms
FROM cdc_jobs
WHERE (status = $1::text OR ($1::text IS NULL AND status IN ('queued', 'running', 'dead'))) AND ($2::text IS NULL OR tenant_id = $2::text)
ORDER BY id DESC LIMIT $3`,

  statsRunning: `
SELECT id::text AS id, tenant_id, source_id, kind, attempts, lease_owner, phase, run_id,
       ${ms('lease_until')} AS lease_until_ms, ${ms('claimed_at')} AS started_ms
FROM cdc_jobs WHERE status = 'running' ORDER BY claimed_at, id`,

  statsDead: `
SELECT id::text AS id, tenant_id, source_id, kind, attempts, last_error, ${ms('finished_at')} AS finished_ms
FROM cdc_jobs WHERE status = 'dead' ORDER BY finished_at DESC, id DESC LIMIT $1`,

  statsLatest: `
SELECT id::text AS id, tenant_id, source_id, kind, status, phase, attempts, last_error,
       ${ms('updated_at')} AS updated_ms, ${ms('finished_at')} AS finished_ms
FROM (SELECT j.*, row_number() OVER (PARTITION BY tenant_id, source_id ORDER BY id DESC) AS rn FROM cdc_jobs AS j) AS x
WHERE rn = 1 ORDER BY tenant_id, source_id`,
};
