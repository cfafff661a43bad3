-- Watermark mode (issue 21; docs/watermark.md): per source, how far its watermark column has been read and
-- when deletes and a full diff were last looked for. A row is written only in the transaction that finishes
-- a run (fenced by the job's lease), after every batch of it was acknowledged.

CREATE TABLE dbo.cdc_watermarks (
  tenant_id            nvarchar(63)  NOT NULL,
  source_id            nvarchar(63)  NOT NULL,
  column_name          nvarchar(128) NOT NULL,
  -- The watermark's kind and value as text: rowversion as 0x-prefixed hex (an exclusive upper bound already
  -- read), number as decimal digits and time as the source's own text (the greatest value read). NULL: the
  -- source had no row when it was last read, so the next read starts from the beginning.
  kind                 nvarchar(16)  NOT NULL CONSTRAINT ck_cdc_watermarks_kind CHECK (kind IN (N'rowversion', N'number', N'time')),
  value                nvarchar(64)  NULL,
  last_full_diff_at    datetime2(3)  NULL,
  -- Changes the last full diff found after watermark runs: 0 when they missed nothing (a health signal).
  last_full_diff_found bigint        NULL,
  last_key_diff_at     datetime2(3)  NULL,
  updated_at           datetime2(3)  NOT NULL CONSTRAINT df_cdc_watermarks_updated_at DEFAULT SYSUTCDATETIME(),
  CONSTRAINT pk_cdc_watermarks PRIMARY KEY (tenant_id, source_id)
);
GO

-- Which kind of read each run was (full, watermark, keydiff) and why. One column per ALTER: Babelfish refuses
-- the list form of ADD.
ALTER TABLE dbo.cdc_runs ADD run_type nvarchar(16) NULL;
GO
ALTER TABLE dbo.cdc_runs ADD run_reason nvarchar(400) NULL;
