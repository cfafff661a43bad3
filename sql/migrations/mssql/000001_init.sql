-- Per-source state, runs, batches and events: the pipeline's memory in the control database.
-- Per-source snapshot, staging and change tables are created by the stages, named from the source.

CREATE TABLE dbo.cdc_source_state (
  tenant_id          nvarchar(63)  NOT NULL,
  source_id          nvarchar(63)  NOT NULL,
  schema_fingerprint nvarchar(128) NULL,
  schema_json        nvarchar(max) NULL,
  last_run_id        nvarchar(64)  NULL,
  last_success_at    datetime2(3)  NULL,
  last_counts        nvarchar(max) NULL,
  updated_at         datetime2(3)  NOT NULL DEFAULT SYSUTCDATETIME(),
  CONSTRAINT pk_cdc_source_state PRIMARY KEY (tenant_id, source_id)
);

CREATE TABLE dbo.cdc_runs (
  run_id       nvarchar(64)  NOT NULL CONSTRAINT pk_cdc_runs PRIMARY KEY,
  job_id       nvarchar(64)  NULL,
  tenant_id    nvarchar(63)  NOT NULL,
  source_id    nvarchar(63)  NOT NULL,
  mode         nvarchar(16)  NOT NULL CONSTRAINT ck_cdc_runs_mode CHECK (mode IN (N'initial', N'incremental', N'resync')),
  phase        nvarchar(16)  NOT NULL,
  status       nvarchar(16)  NOT NULL CONSTRAINT df_cdc_runs_status DEFAULT N'running'
                             CONSTRAINT ck_cdc_runs_status CHECK (status IN (N'running', N'succeeded', N'failed', N'abandoned')),
  source_rows  bigint        NULL,
  upserts      bigint        NULL,
  deletes      bigint        NULL,
  batches      int           NULL,
  started_at   datetime2(3)  NOT NULL DEFAULT SYSUTCDATETIME(),
  finished_at  datetime2(3)  NULL,
  error        nvarchar(max) NULL
);
CREATE INDEX cdc_runs_source ON dbo.cdc_runs (tenant_id, source_id, started_at DESC);

CREATE TABLE dbo.cdc_batches (
  run_id          nvarchar(64)  NOT NULL,
  batch_no        int           NOT NULL,
  tenant_id       nvarchar(63)  NOT NULL,
  source_id       nvarchar(63)  NOT NULL,
  first_seq       bigint        NOT NULL,
  last_seq        bigint        NOT NULL,
  row_count       int           NOT NULL,
  byte_count      bigint        NOT NULL,
  status          nvarchar(16)  NOT NULL DEFAULT N'pending' CONSTRAINT ck_cdc_batches_status CHECK (status IN (N'pending', N'acked')),
  attempts        int           NOT NULL DEFAULT 0,
  acked_at        datetime2(3)  NULL,
  CONSTRAINT pk_cdc_batches PRIMARY KEY (run_id, batch_no)
);

CREATE TABLE dbo.cdc_events (
  id          bigint IDENTITY(1,1) NOT NULL CONSTRAINT pk_cdc_events PRIMARY KEY,
  tenant_id   nvarchar(63)  NOT NULL,
  source_id   nvarchar(63)  NOT NULL,
  run_id      nvarchar(64)  NULL,
  kind        nvarchar(32)  NOT NULL,
  detail      nvarchar(max) NULL,
  created_at  datetime2(3)  NOT NULL DEFAULT SYSUTCDATETIME()
);
CREATE INDEX cdc_events_source ON dbo.cdc_events (tenant_id, source_id, created_at DESC);
