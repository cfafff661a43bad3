-- Per-source state, runs, batches and events: the pipeline's memory in the control database.
-- Per-source snapshot, staging and change tables are created by the stages, named from the source.

CREATE TABLE cdc_source_state (
  tenant_id          text        NOT NULL,
  source_id          text        NOT NULL,
  schema_fingerprint text,
  schema_json        text,
  last_run_id        text,
  last_success_at    timestamptz,
  last_counts        text,
  updated_at         timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, source_id)
);

CREATE TABLE cdc_runs (
  run_id       text        PRIMARY KEY,
  job_id       text,
  tenant_id    text        NOT NULL,
  source_id    text        NOT NULL,
  mode         text        NOT NULL CHECK (mode IN ('initial', 'incremental', 'resync')),
  phase        text        NOT NULL,
  status       text        NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'succeeded', 'failed', 'abandoned')),
  source_rows  bigint,
  upserts      bigint,
  deletes      bigint,
  batches      integer,
  started_at   timestamptz NOT NULL DEFAULT now(),
  finished_at  timestamptz,
  error        text
);
CREATE INDEX cdc_runs_source ON cdc_runs (tenant_id, source_id, started_at DESC);

CREATE TABLE cdc_batches (
  run_id          text        NOT NULL,
  batch_no        integer     NOT NULL,
  tenant_id       text        NOT NULL,
  source_id       text        NOT NULL,
  first_seq       bigint      NOT NULL,
  last_seq        bigint      NOT NULL,
  row_count       integer     NOT NULL,
  byte_count      bigint      NOT NULL,
  status          text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'acked')),
  attempts        integer     NOT NULL DEFAULT 0,
  acked_at        timestamptz,
  PRIMARY KEY (run_id, batch_no)
);

CREATE TABLE cdc_events (
  id          bigserial   PRIMARY KEY,
  tenant_id   text        NOT NULL,
  source_id   text        NOT NULL,
  run_id      text,
  kind        text        NOT NULL,
  detail      text,
  created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cdc_events_source ON cdc_events (tenant_id, source_id, created_at DESC);
