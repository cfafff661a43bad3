-- Watermark mode (issue 21; docs/watermark.md): per source, how far its watermark column has been read and
-- when deletes and a full diff were last looked for. A row is written only in the transaction that finishes
-- a run (fenced by the job's lease), after every batch of it was acknowledged.

CREATE TABLE cdc_watermarks (
  tenant_id            text        NOT NULL,
  source_id            text        NOT NULL,
  column_name          text        NOT NULL,
  -- The watermark's kind and value as text: rowversion as 0x-prefixed hex (an exclusive upper bound already
  -- read), number as decimal digits and time as the source's own text (the greatest value read). NULL: the
  -- source had no row when it was last read, so the next read starts from the beginning.
  kind                 text        NOT NULL CHECK (kind IN ('rowversion', 'number', 'time')),
  value                text        NULL,
  last_full_diff_at    timestamptz NULL,
  -- Changes the last full diff found after watermark runs: 0 when they missed nothing (a health signal).
  last_full_diff_found bigint      NULL,
  last_key_diff_at     timestamptz NULL,
  updated_at           timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, source_id)
);

-- Which kind of read each run was (full, watermark, keydiff) and why.
ALTER TABLE cdc_runs ADD COLUMN run_type text NULL;
ALTER TABLE cdc_runs ADD COLUMN run_reason text NULL;
