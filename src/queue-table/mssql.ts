/**
 * The queue's statements for a SQL Server control database (parameters and result columns: statements.ts).
 *
 * Locking, per Microsoft's table-hint documentation:
 * - the claim reads the job rows it takes WITH (ROWLOCK, READPAST, UPDLOCK, READCOMMITTEDLOCK): UPDLOCK makes
 *   the read that picks a row take the update lock that the UPDATE then converts, so two claimers cannot pick
 *   the same row; READPAST skips rows another claimer (or a fenced transaction) holds instead of waiting;
 *   READCOMMITTEDLOCK is required for READPAST when the database has READ_COMMITTED_SNAPSHOT on, and makes
 *   the read see the newest committed row rather than a version;
 * - the ranking scan (one pass, window functions, no join) reads WITH (READPAST, READCOMMITTEDLOCK): short-lived shared locks, never blocking on a
 *   job row held by a long fenced transaction, in both RCSI and locking read committed;
 * - INNER LOOP JOIN: the ranked candidates, already sorted, drive a primary-key seek per row, so TOP (n) stops
 *   after n rows and only those rows get update locks. A hash join would scan and update-lock every
 *   candidate and make concurrent claimers skip them all. (A join hint fixes the join order of the whole
 *   statement, which is why the UPDATE's FROM starts with `picked`.)
 * - NEWID() is evaluated per row, so every claimed job gets its own lease token.
 * Strings are nvarchar, like the parameters the driver binds, so comparisons never convert the column.
 */
import type { QueueStatements } from './statements.ts';

const EPOCH = `CAST('19700101' AS datetime2(3))`;
const ms = (expression: string) => `CAST(DATEDIFF_BIG(millisecond, ${EPOCH}, ${expression}) AS float)`;
const FENCE = `id = TRY_CAST(@p1 AS bigint) AND lease_token = @p2 AND status = N'running'`;

const claimable = (t: string) =>
  `((${t}.status = N'queued' AND ${t}.run_after <= SYSUTCDATETIME()) OR (${t}.status = N'running' AND ${t}.lease_until < SYSUTCDATETIME() AND ${t}.attempts < ${t}.max_attempts))`;

export const mssqlQueueStatements: QueueStatements = {
  // The filtered unique indexes decide; a refused insert (2601 duplicate key in a unique index, 2627 unique
  // constraint) is caught so that the caller gets the job in the way instead of an error.
  enqueue: `
DECLARE @id bigint = NULL;
BEGIN TRY
  INSERT INTO dbo.cdc_jobs (tenant_id, source_id, kind, priority, run_after, slot_key, max_attempts)
  VALUES (@p1, @p2, @p3, @p4, COALESCE(CAST(@p5 AS datetime2(3)), SYSUTCDATETIME()), @p6, @p7);
  SET @id = SCOPE_IDENTITY();
END TRY
BEGIN CATCH
  IF ERROR_NUMBER() NOT IN (2601, 2627)
  BEGIN
    THROW;
  END
END CATCH;
SELECT CAST(@id AS nvarchar(20)) AS id,
       (SELECT TOP (1) CAST(u.id AS nvarchar(20)) FROM dbo.cdc_jobs AS u
         WHERE u.tenant_id = @p1 AND u.source_id = @p2 AND u.status IN (N'queued', N'running')) AS unfinished_id,
       (SELECT TOP (1) CAST(s.id AS nvarchar(20)) FROM dbo.cdc_jobs AS s
         WHERE @p6 IS NOT NULL AND s.tenant_id = @p1 AND s.source_id = @p2 AND s.slot_key = @p6) AS slot_id;`,

  reapExpired: `
UPDATE dbo.cdc_jobs WITH (ROWLOCK, READPAST, READCOMMITTEDLOCK)
SET status = N'dead', finished_at = SYSUTCDATETIME(), updated_at = SYSUTCDATETIME(), lease_token = NULL, lease_until = NULL,
    last_error = CONCAT(N'Lease of worker ', lease_owner, N' expired during attempt ', attempts, N' of ', max_attempts,
                        N': the worker stopped heartbeating (crash, SIGKILL, lost connection or a control database too slow to renew it) and no attempt is left, so the job is dead-lettered.',
                        N'' + NCHAR(10) + N'The attempt before failed with: ' + last_error)
WHERE status = N'running' AND lease_until < SYSUTCDATETIME() AND attempts >= max_attempts;`,

  // Fairness as in postgres.ts: rank = the tenant's running jobs + place among its claimable jobs.
  // OUTPUT names inserted columns only, no expression over them (Babelfish refuses those); bigint arrives as text.
  claim: `
WITH unfinished AS (
  SELECT c.id, c.tenant_id, c.priority, c.run_after,
         CASE WHEN ${claimable('c')} THEN 1 ELSE 0 END AS ready,
         CASE WHEN c.status = N'running' AND c.lease_until >= SYSUTCDATETIME() THEN 1 ELSE 0 END AS busy
  FROM dbo.cdc_jobs AS c WITH (READPAST, READCOMMITTEDLOCK)
  WHERE c.status IN (N'queued', N'running')
    AND (@p4 IS NULL OR CHARINDEX(CONCAT(N',', c.tenant_id, N'/', c.source_id, N','), @p4) > 0)
),
ranked AS (
  SELECT u.id, u.priority, u.run_after, u.ready,
         SUM(u.busy) OVER (PARTITION BY u.tenant_id)
           + ROW_NUMBER() OVER (PARTITION BY u.tenant_id, u.priority, u.ready ORDER BY u.run_after, u.id) AS tenant_rank
  FROM unfinished AS u
),
picked AS (
  SELECT TOP (@p1) j.id
  FROM ranked AS r
  INNER LOOP JOIN dbo.cdc_jobs AS j WITH (ROWLOCK, READPAST, UPDLOCK, READCOMMITTEDLOCK) ON j.id = r.id
  WHERE r.ready = 1 AND ${claimable('j')}
  ORDER BY r.priority DESC, r.tenant_rank, r.run_after, r.id
)
UPDATE t
SET status = N'running', attempts = t.attempts + 1, lease_owner = @p2, lease_token = LOWER(CONVERT(nchar(36), NEWID())),
    lease_until = DATEADD(millisecond, @p3, SYSUTCDATETIME()), claimed_at = SYSUTCDATETIME(), updated_at = SYSUTCDATETIME()
OUTPUT inserted.id, inserted.tenant_id, inserted.source_id, inserted.kind, inserted.priority,
       inserted.attempts, inserted.max_attempts, inserted.lease_token, inserted.phase, inserted.run_id, inserted.stats
FROM picked AS p
INNER JOIN dbo.cdc_jobs AS t WITH (ROWLOCK) ON t.id = p.id;`,

  // `,a/b,c/d,`: CHARINDEX works at every compatibility level (STRING_SPLIT needs 130).
  sourceFilter: (names) => `,${names.join(',')},`,

  heartbeat: `UPDATE dbo.cdc_jobs SET lease_until = DATEADD(millisecond, @p3, SYSUTCDATETIME()), updated_at = SYSUTCDATETIME() WHERE ${FENCE};`,

  progress: `
UPDATE dbo.cdc_jobs
SET phase = COALESCE(@p3, phase), run_id = COALESCE(@p4, run_id), stats = COALESCE(@p5, stats), updated_at = SYSUTCDATETIME()
WHERE ${FENCE};`,

  // UPDLOCK holds the row until the transaction ends: a claimer skips it (READPAST), so the lease cannot
  // be taken over while the caller's transaction runs.
  lockFenced: `SELECT attempts, max_attempts FROM dbo.cdc_jobs WITH (UPDLOCK, ROWLOCK, READCOMMITTEDLOCK) WHERE ${FENCE};`,

  complete: `
UPDATE dbo.cdc_jobs
SET status = N'succeeded', finished_at = SYSUTCDATETIME(), updated_at = SYSUTCDATETIME(), lease_token = NULL, lease_until = NULL,
    stats = COALESCE(@p3, stats)
WHERE ${FENCE};`,

  // The due time goes through a variable rather than OUTPUT of an expression (which Babelfish refuses);
  // no row when the fence did not match.
  requeue: `
DECLARE @run_after datetime2(3) = DATEADD(millisecond, @p3, SYSUTCDATETIME());
UPDATE dbo.cdc_jobs
SET status = N'queued', run_after = @run_after, last_error = @p4,
    lease_token = NULL, lease_until = NULL, updated_at = SYSUTCDATETIME()
WHERE ${FENCE};
IF @@ROWCOUNT > 0 SELECT ${ms('@run_after')} AS run_after_ms;`,

  deadLetter: `
UPDATE dbo.cdc_jobs
SET status = N'dead', last_error = @p3, finished_at = SYSUTCDATETIME(), updated_at = SYSUTCDATETIME(), lease_token = NULL, lease_until = NULL
WHERE ${FENCE};`,

  release: `
UPDATE dbo.cdc_jobs
SET status = N'queued', attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, run_after = SYSUTCDATETIME(),
    lease_token = NULL, lease_until = NULL, updated_at = SYSUTCDATETIME()
WHERE ${FENCE};`,

  retryDead: `
UPDATE j
SET status = N'queued', attempts = 0, run_after = SYSUTCDATETIME(), finished_at = NULL, lease_token = NULL, lease_until = NULL,
    updated_at = SYSUTCDATETIME()
FROM dbo.cdc_jobs AS j
WHERE j.status = N'dead'
  AND (@p1 IS NULL OR j.tenant_id = @p1)
  AND (@p2 IS NULL OR j.source_id = @p2)
  AND (@p3 IS NULL OR j.id = TRY_CAST(@p3 AS bigint))
  AND (@p3 IS NOT NULL OR j.id = (SELECT MAX(d.id) FROM dbo.cdc_jobs AS d
                                   WHERE d.tenant_id = j.tenant_id AND d.source_id = j.source_id AND d.status = N'dead'))
  AND NOT EXISTS (SELECT 1 FROM dbo.cdc_jobs AS u
                   WHERE u.tenant_id = j.tenant_id AND u.source_id = j.source_id AND u.status IN (N'queued', N'running'));`,

  // DATEADD takes an int: split the retention into seconds and milliseconds so that 30 days fit.
  prune: `
DELETE FROM dbo.cdc_jobs
WHERE status = N'succeeded'
  AND finished_at < DATEADD(millisecond, -CAST(@p1 % 1000 AS int), DATEADD(second, -CAST(@p1 / 1000 AS int), SYSUTCDATETIME()));`,

  statsDepth: `SELECT status, COUNT(*) AS n FROM dbo.cdc_jobs GROUP BY status;`,

  statsQueuedBySource: `
SELECT tenant_id, source_id, COUNT(*) AS n,
       MAX(CASE WHEN run_after <= SYSUTCDATETIME() THEN DATEDIFF(second, run_after, SYSUTCDATETIME()) END) AS waiting_s
FROM dbo.cdc_jobs WHERE status = N'queued' GROUP BY tenant_id, source_id;`,

  jobsByIds: (placeholders) => `
SELECT CAST(id AS nvarchar(20)) AS id, tenant_id, source_id, kind, status, priority, attempts, max_attempts, phase, run_id, stats, last_error, lease_owner,
       ${ms('run_after')} AS run_after_ms, ${ms('lease_until')} AS lease_until_ms, ${ms('created_at')} AS created_ms,
       ${ms('updated_at')} AS updated_ms, ${ms('finished_at')} AS finished_ms
FROM dbo.cdc_jobs WHERE id IN (${placeholders.map((p) => `TRY_CAST(${p} AS bigint)`).join(', ')}) ORDER BY id;`,

  listJobs: `
SELECT TOP (@p3) CAST(id AS nvarchar(20)) AS id, tenant_id, source_id, kind, status, priority, attempts, max_attempts, phase, run_id, stats, last_error, lease_owner,
       ${ms('run_after')} AS run_after_ms, ${ms('lease_until')} AS lease_until_ms, ${ms('created_at')} AS created_ms,
       ${ms('updated_at')} AS updated_ms, ${ms('finished_at')} AS finished_ms, ${ms('SYSUTCDATETIME()')} AS now_ms
FROM dbo.cdc_jobs
WHERE (status = @p1 OR (@p1 IS NULL AND status IN (N'queued', N'running', N'dead'))) AND (@p2 IS NULL OR tenant_id = @p2)
ORDER BY id DESC;`,

  statsQueued: `
SELECT ${ms('SYSUTCDATETIME()')} AS now_ms, COUNT(*) AS ready, ${ms('MIN(run_after)')} AS oldest_ready_ms
FROM dbo.cdc_jobs WHERE status = N'queued' AND run_after <= SYSUTCDATETIME();`,

  statsRunning: `
SELECT CAST(id AS nvarchar(20)) AS id, tenant_id, source_id, kind, attempts, lease_owner, phase, run_id,
       ${ms('lease_until')} AS lease_until_ms, ${ms('claimed_at')} AS started_ms
FROM dbo.cdc_jobs WHERE status = N'running' ORDER BY claimed_at, id;`,

  statsDead: `
SELECT TOP (@p1) CAST(id AS nvarchar(20)) AS id, tenant_id, source_id, kind, attempts, last_error, ${ms('finished_at')} AS finished_ms
FROM dbo.cdc_jobs WHERE status = N'dead' ORDER BY finished_at DESC, id DESC;`,

  statsLatest: `
SELECT CAST(id AS nvarchar(20)) AS id, tenant_id, source_id, kind, status, phase, attempts, last_error,
       ${ms('updated_at')} AS updated_ms, ${ms('finished_at')} AS finished_ms
FROM (SELECT j.*, ROW_NUMBER() OVER (PARTITION BY tenant_id, source_id ORDER BY id DESC) AS rn FROM dbo.cdc_jobs AS j) AS x
WHERE rn = 1 ORDER BY tenant_id, source_id;`,
};
