-- A run whose completion the receiver answered with a mismatch ends `unreconciled`, with the receiver's
-- problems kept beside it (issue 17; docs/data-push-api.md, "What the agent does with the answer").

ALTER TABLE dbo.cdc_runs DROP CONSTRAINT ck_cdc_runs_status;
ALTER TABLE dbo.cdc_runs ADD CONSTRAINT ck_cdc_runs_status
  CHECK (status IN (N'running', N'succeeded', N'unreconciled', N'failed', N'abandoned'));
ALTER TABLE dbo.cdc_runs ADD problems nvarchar(max) NULL;
