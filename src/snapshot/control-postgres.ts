/** PostgreSQL side of control-sql.ts. */
import type { Db, QualifiedName, Queryable } from '../dialect/types.ts';
import { quoteQualified } from '../dialect/identifiers.ts';
import type { ControlSql, StateRow } from './control-sql.ts';

export const postgresControl: ControlSql = {
  // "C" compares bytes of UTF-8, which is exact and also the fastest comparison PostgreSQL has.
  exactCollation: 'COLLATE "C"',
  createScratchTable: 'CREATE UNLOGGED TABLE',
  renderedEntryType: 'text',

  async upgradeScratch(db: Db, tx: Queryable, names: { snapshot: QualifiedName; changes: QualifiedName }): Promise<void> {
    // Tables made before these were unlogged, or before the change table carried its rendered entry.
    const rows = await tx.query<{ name: string; persistence: string; is_changes: boolean; has_entry: boolean }>(
      `SELECT c.oid::regclass::text AS name, c.relpersistence AS persistence, c.oid = to_regclass($2) AS is_changes,
              EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'cdc_entry' AND NOT a.attisdropped) AS has_entry
         FROM pg_class c WHERE c.oid IN (to_regclass($1), to_regclass($2))`,
      [quoteQualified('postgres', names.snapshot), quoteQualified('postgres', names.changes)],
    );
    for (const r of rows) {
      if (r.persistence === 'p') await tx.execute(`ALTER TABLE ${r.name} SET UNLOGGED`);
      if (r.is_changes && !r.has_entry) await tx.execute(`ALTER TABLE ${r.name} ADD COLUMN ${db.quote('cdc_entry')} text NULL`);
    }
  },

  async tableExists(db: Queryable, name: QualifiedName): Promise<boolean> {
    const rows = await db.query<{ found: boolean }>('SELECT to_regclass($1) IS NOT NULL AS found', [quoteQualified('postgres', name)]);
    return rows[0]?.found === true;
  },

  uniqueIndexSql(db: Db, table: QualifiedName, index: string, columns: readonly string[]): string {
    return `CREATE UNIQUE INDEX ${db.quote(index)} ON ${db.table(table)} (${columns.map((c) => db.quote(c)).join(', ')})`;
  },

  dropIndexSql(db: Db, table: QualifiedName, index: string): string {
    // An index lives in its table's schema.
    return `DROP INDEX IF EXISTS ${db.table({ ...table, name: index })}`;
  },

  async rename(db: Db, tx: Queryable, from: QualifiedName, to: QualifiedName): Promise<void> {
    await tx.execute(`ALTER TABLE ${db.table(from)} RENAME TO ${db.quote(to.name)}`);
  },

  async upsertState(_db: Db, tx: Queryable, row: StateRow): Promise<void> {
    const s = row.success;
    await tx.execute(
      `INSERT INTO cdc_source_state (tenant_id, source_id, schema_fingerprint, schema_json, last_run_id, last_success_at, last_counts, updated_at)
       VALUES ($1, $2, $3, $4, $5, CASE WHEN $5::text IS NULL THEN NULL ELSE now() END, $6, now())
       ON CONFLICT (tenant_id, source_id) DO UPDATE SET
         schema_fingerprint = EXCLUDED.schema_fingerprint,
         schema_json = EXCLUDED.schema_json,
         last_run_id = COALESCE(EXCLUDED.last_run_id, cdc_source_state.last_run_id),
         last_success_at = COALESCE(EXCLUDED.last_success_at, cdc_source_state.last_success_at),
         last_counts = COALESCE(EXCLUDED.last_counts, cdc_source_state.last_counts),
         updated_at = now()`,
      [row.tenant, row.source, row.fingerprint, row.schemaJson, s?.runId ?? null, s?.counts ?? null],
    );
  },
};
