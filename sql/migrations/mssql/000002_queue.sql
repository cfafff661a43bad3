-- The job queue that every replica shares (DESIGN §4, docs/failure-semantics.md).
-- A job is claimed under a lease: lease_token changes on every claim and fences every later write.
-- Strings are nvarchar like the driver's parameters, so that comparisons never convert the column.
-- The filtered indexes need the session options tedious sets by default (ANSI_NULLS, QUOTED_IDENTIFIER, ARITHABORT on).

CREATE TABLE dbo.cdc_jobs (
  id            bigint IDENTITY(1,1) NOT NULL CONSTRAINT pk_cdc_jobs PRIMARY KEY CLUSTERED,
  tenant_id     nvarchar(63)  NOT NULL,
  source_id     nvarchar(63)  NOT NULL,
  kind          nvarchar(16)  NOT NULL CONSTRAINT ck_cdc_jobs_kind CHECK (kind IN (N'initial', N'incremental', N'resync')),
  status        nvarchar(16)  NOT NULL CONSTRAINT df_cdc_jobs_status DEFAULT N'queued'
                              CONSTRAINT ck_cdc_jobs_status CHECK (status IN (N'queued', N'running', N'succeeded', N'dead')),
  priority      int           NOT NULL CONSTRAINT df_cdc_jobs_priority DEFAULT 0,
  run_after     datetime2(3)  NOT NULL CONSTRAINT df_cdc_jobs_run_after DEFAULT SYSUTCDATETIME(),
  attempts      int           NOT NULL CONSTRAINT df_cdc_jobs_attempts DEFAULT 0 CONSTRAINT ck_cdc_jobs_attempts CHECK (attempts >= 0),
  max_attempts  int           NOT NULL CONSTRAINT df_cdc_jobs_max_attempts DEFAULT 8 CONSTRAINT ck_cdc_jobs_max_attempts CHECK (max_attempts > 0),
  lease_owner   nvarchar(200) NULL,
  lease_token   nvarchar(36)  NULL,
  lease_until   datetime2(3)  NULL,
  claimed_at    datetime2(3)  NULL,
  phase         nvarchar(64)  NULL,
  run_id        nvarchar(64)  NULL,
  last_error    nvarchar(max) NULL,
  stats         nvarchar(max) NULL CONSTRAINT ck_cdc_jobs_stats CHECK (stats IS NULL OR ISJSON(stats) = 1),
  slot_key      nvarchar(200) NULL,
  created_at    datetime2(3)  NOT NULL CONSTRAINT df_cdc_jobs_created_at DEFAULT SYSUTCDATETIME(),
  updated_at    datetime2(3)  NOT NULL CONSTRAINT df_cdc_jobs_updated_at DEFAULT SYSUTCDATETIME(),
  finished_at   datetime2(3)  NULL,
  CONSTRAINT ck_cdc_jobs_running_has_lease CHECK (status <> N'running' OR (lease_token IS NOT NULL AND lease_until IS NOT NULL))
);

-- At most one unfinished job per data source: a second enqueue is coalesced by the database.
-- It also covers the claim's ranking scan, which reads exactly the unfinished jobs.
CREATE UNIQUE NONCLUSTERED INDEX cdc_jobs_one_unfinished ON dbo.cdc_jobs (tenant_id, source_id)
  INCLUDE (status, priority, run_after, lease_until, attempts, max_attempts)
  WHERE status IN (N'queued', N'running');
-- A schedule slot fires once across all replicas.
CREATE UNIQUE NONCLUSTERED INDEX cdc_jobs_slot ON dbo.cdc_jobs (tenant_id, source_id, slot_key) WHERE slot_key IS NOT NULL;
-- Claim candidates: due queued jobs, and running jobs whose lease may have expired.
CREATE NONCLUSTERED INDEX cdc_jobs_queued ON dbo.cdc_jobs (run_after) INCLUDE (tenant_id, priority) WHERE status = N'queued';
CREATE NONCLUSTERED INDEX cdc_jobs_leases ON dbo.cdc_jobs (lease_until) INCLUDE (tenant_id, priority, run_after, attempts, max_attempts) WHERE status = N'running';
-- Retention of finished jobs, and per-source history for status.
CREATE NONCLUSTERED INDEX cdc_jobs_succeeded ON dbo.cdc_jobs (finished_at) WHERE status = N'succeeded';
CREATE NONCLUSTERED INDEX cdc_jobs_source ON dbo.cdc_jobs (tenant_id, source_id, id DESC);
