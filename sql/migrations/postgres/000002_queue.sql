-- The job queue that every replica shares (DESIGN §4, docs/failure-semantics.md).
-- A job is claimed under a lease: lease_token changes on every claim and fences every later write.

CREATE TABLE cdc_jobs (
  id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  tenant_id     text        NOT NULL,
  source_id     text        NOT NULL,
  kind          text        NOT NULL CHECK (kind IN ('initial', 'incremental', 'resync')),
  status        text        NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'succeeded', 'dead')),
  priority      integer     NOT NULL DEFAULT 0,
  run_after     timestamptz NOT NULL DEFAULT now(),
  attempts      integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  max_attempts  integer     NOT NULL DEFAULT 8 CHECK (max_attempts > 0),
  lease_owner   text,
  lease_token   text,
  lease_until   timestamptz,
  claimed_at    timestamptz,
  phase         text,
  run_id        text,
  last_error    text,
  stats         jsonb,
  slot_key      text,
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  finished_at   timestamptz,
  CONSTRAINT cdc_jobs_running_has_lease CHECK (status <> 'running' OR (lease_token IS NOT NULL AND lease_until IS NOT NULL))
);

-- At most one unfinished job per data source: a second enqueue is coalesced by the database.
CREATE UNIQUE INDEX cdc_jobs_one_unfinished ON cdc_jobs (tenant_id, source_id) WHERE status IN ('queued', 'running');
-- A schedule slot fires once across all replicas.
CREATE UNIQUE INDEX cdc_jobs_slot ON cdc_jobs (tenant_id, source_id, slot_key) WHERE slot_key IS NOT NULL;
-- Claim candidates: due queued jobs, and running jobs whose lease may have expired.
CREATE INDEX cdc_jobs_queued ON cdc_jobs (run_after) WHERE status = 'queued';
CREATE INDEX cdc_jobs_leases ON cdc_jobs (lease_until) WHERE status = 'running';
-- Retention of finished jobs, and per-source history for status.
CREATE INDEX cdc_jobs_succeeded ON cdc_jobs (finished_at) WHERE status = 'succeeded';
CREATE INDEX cdc_jobs_source ON cdc_jobs (tenant_id, source_id, id DESC);
