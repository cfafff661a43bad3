-- A run whose completion the receiver answered with a mismatch ends `unreconciled`, with the receiver's
-- problems kept beside it (issue 17; docs/data-push-api.md, "What the agent does with the answer").

ALTER TABLE cdc_runs DROP CONSTRAINT cdc_runs_status_check;
ALTER TABLE cdc_runs ADD CONSTRAINT cdc_runs_status_check
  CHECK (status IN ('running', 'succeeded', 'unreconciled', 'failed', 'abandoned'));
ALTER TABLE cdc_runs ADD COLUMN problems text;
