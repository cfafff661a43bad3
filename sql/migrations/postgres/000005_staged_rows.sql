-- How many rows each source's staging table holds (src/snapshot/staged-rows.ts): kept exact by the
-- acknowledgements of watermark and keydiff runs, recorded by every run's finish, NULL when unknown (a full
-- run's batches are being acknowledged, the tables were rebuilt, or the control database predates this
-- column), in which case staging is counted. A watermark run's completion then tells the receiver its row
-- count without reading all of staging.
ALTER TABLE cdc_source_state ADD COLUMN staging_rows bigint NULL;
