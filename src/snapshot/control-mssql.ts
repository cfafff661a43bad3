/** SQL Server side of control-sql.ts. */
import type { Db, QualifiedName, Queryable } from '../dialect/types.ts';
import { quoteQualified } from '../dialect/identifiers.ts';
import type { ControlSql, StateRow } from './control-sql.ts';

export const mssqlControl: ControlSql = {
  // A BIN2 collation compares code points, so case and accent differences are differences. It does not
  // make `=` see trailing spaces (SQL Server pads the shorter operand for every collation); the diff adds
  // a DATALENGTH comparison for that.
  exactCollation: 'COLLATE Latin1_General_100_BIN2',
  // SQL Server has no unlogged tables; the bulk loads into the scratch heaps take TABLOCK (minimal logging
  // under the simple and bulk-logged recovery models).
  createScratchTable: 'CREATE TABLE',
  // Entries are encoded in Node (no SQL renderer for SQL Server yet: src/batching/change-set.ts).
  renderedEntryType: null,

  async tableExists(db: Queryable, name: QualifiedName): Promise<boolean> {
    const rows = await db.query<{ id: number | null }>(`SELECT OBJECT_ID(@p1, N'U') AS id`, [quoteQualified('mssql', name)]);
    return rows[0]?.id !== null && rows[0]?.id !== undefined;
  },

  uniqueIndexSql(db: Db, table: QualifiedName, index: string, columns: readonly string[]): string {
    // Offline nonclustered index build: a shared table lock, so the diff's fill can read the snapshot meanwhile.
    // A unique index treats NULLs as equal (two NULL keys fail the build; one is found by the NULL check).
    return `CREATE UNIQUE NONCLUSTERED INDEX ${db.quote(index)} ON ${db.table(table)} (${columns.map((c) => db.quote(c)).join(', ')})`;
  },

  dropIndexSql(db: Db, table: QualifiedName, index: string): string {
    // DROP INDEX IF EXISTS … ON … needs SQL Server 2016 (13.x) or later, as the rest of the control SQL does.
    return `DROP INDEX IF EXISTS ${db.quote(index)} ON ${db.table(table)}`;
  },

  async rename(db: Db, tx: Queryable, from: QualifiedName, to: QualifiedName): Promise<void> {
    // sp_rename takes the current name, optionally qualified, and the bare new name. SQL Server splits @objname
    // into its parts as PARSENAME does, so brackets are needed only where a part holds a dot, a bracket or a
    // quote; Babelfish 4.2 finds no object by a bracketed name ("There is no object with the given @objname").
    // Our scratch names are [a-z0-9_-] (src/snapshot/source-tables.ts), so they go unbracketed.
    const plain = (part: string) => /^[^.[\]"]+$/.test(part);
    const parts = from.schema === undefined ? [from.name] : [from.schema, from.name];
    const objname = parts.every(plain) ? parts.join('.') : db.table(from);
    await tx.execute(`EXEC sp_rename @p1, @p2, N'OBJECT'`, [objname, to.name]);
  },

  async upsertState(_db: Db, tx: Queryable, row: StateRow): Promise<void> {
    const s = row.success;
    // UPDLOCK + HOLDLOCK keeps two replicas from both inserting (the classic safe upsert without MERGE).
    await tx.execute(
      `UPDATE dbo.cdc_source_state WITH (UPDLOCK, HOLDLOCK)
         SET schema_fingerprint = @p3, schema_json = @p4,
             last_run_id = COALESCE(@p5, last_run_id),
             last_success_at = CASE WHEN @p5 IS NULL THEN last_success_at ELSE SYSUTCDATETIME() END,
             last_counts = COALESCE(@p6, last_counts),
             updated_at = SYSUTCDATETIME()
       WHERE tenant_id = @p1 AND source_id = @p2;
       IF @@ROWCOUNT = 0
         INSERT INTO dbo.cdc_source_state (tenant_id, source_id, schema_fingerprint, schema_json, last_run_id, last_success_at, last_counts)
         VALUES (@p1, @p2, @p3, @p4, @p5, CASE WHEN @p5 IS NULL THEN NULL ELSE SYSUTCDATETIME() END, @p6);`,
      [row.tenant, row.source, row.fingerprint, row.schemaJson, s?.runId ?? null, s?.counts ?? null],
    );
  },
};
