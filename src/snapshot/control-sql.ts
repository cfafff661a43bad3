/**
 * The few statements about a source's control tables that differ between dialects. One adapter per
 * dialect (control-postgres.ts, control-mssql.ts), same shape.
 */
import type { Db, QualifiedName, Queryable } from '../dialect/types.ts';

export interface ControlSql {
  /**
   * Collation clause for string columns of the snapshot, staging and change tables, so that `=` compares
   * code points exactly (case and accents matter). See src/cdc/diff-*.ts for trailing spaces.
   */
  readonly exactCollation: string;
  /**
   * `CREATE TABLE` of the scratch tables (snapshot and changes), which hold nothing that cannot be derived
   * again: PostgreSQL makes them UNLOGGED (no WAL for the two largest writes of every run; a server crash
   * empties them, which src/agent/run-job.ts detects before resuming a run).
   */
  readonly createScratchTable: string;
  /** Column type of the change table's pre-rendered push entry, where the control database renders entries in SQL. */
  readonly renderedEntryType: string | null;
  /** Bring scratch tables made by an earlier version to the current layout (cheap when they already are). */
  upgradeScratch?(db: Db, tx: Queryable, names: { snapshot: QualifiedName; changes: QualifiedName }): Promise<void>;
  tableExists(db: Queryable, name: QualifiedName): Promise<boolean>;
  /** Unique index `index` on `table` (columns in order). */
  uniqueIndexSql(db: Db, table: QualifiedName, index: string, columns: readonly string[]): string;
  /** Drop index `index` of `table` if it exists. */
  dropIndexSql(db: Db, table: QualifiedName, index: string): string;
  rename(db: Db, tx: Queryable, from: QualifiedName, to: QualifiedName): Promise<void>;
  /** Insert or update the source's row in cdc_source_state. Parameters: see each adapter. */
  upsertState(db: Db, tx: Queryable, row: StateRow): Promise<void>;
}

export interface StateRow {
  tenant: string;
  source: string;
  fingerprint: string;
  schemaJson: string;
  /** When set, the run that succeeded: also sets last_run_id, last_success_at = now and last_counts. */
  success?: { runId: string; counts: string };
}
