/**
 * SQL Server diff. Exactness, spelled out because SQL Server's defaults are not exact:
 * - string columns of the control tables use the Latin1_General_100_BIN2 collation, so `=` compares code
 *   points (case and accents count); `=` still ignores trailing spaces under every collation (ANSI padding),
 *   so strings, and binary values likewise, must also have equal DATALENGTH (exact bytes, no hashing, so no
 *   HASHBYTES input limit applies);
 * - datetimeoffset `=` compares instants, so the offset is compared too (DATEPART(TZOFFSET, …));
 * - NULLs: `IS DISTINCT FROM` exists only from SQL Server 2022, so each column's equality is written so that
 *   it is TRUE or FALSE, never UNKNOWN: (both NULL) OR (neither NULL AND equal).
 * Key columns are compared too, since the key join itself ignores trailing spaces.
 */
import type { ColumnSpec, Db, QualifiedName } from '../dialect/types.ts';
import type { SourceSchema } from '../snapshot/schema.ts';
import { deltaDerived, fullJoinSelect, heldDeletes, keyJoin, numbered, type DiffSql, type DiffTables } from './diff-sql.ts';

function columnEqual(db: Db, c: ColumnSpec): string {
  const s = `s.${db.quote(c.name)}`;
  const t = `t.${db.quote(c.name)}`;
  let equal = `${s} = ${t}`;
  if (c.type.kind === 'string' || c.type.kind === 'binary') equal += ` AND DATALENGTH(${s}) = DATALENGTH(${t})`;
  if (c.type.kind === 'timestamptz') equal += ` AND DATEPART(TZOFFSET, ${s}) = DATEPART(TZOFFSET, ${t})`;
  return `((${s} IS NULL AND ${t} IS NULL) OR (${s} IS NOT NULL AND ${t} IS NOT NULL AND ${equal}))`;
}

export const mssqlDiff: DiffSql = {
  // SQL Server sizes each query's memory grant itself (no per-session work_mem).
  settings: [],

  badKey(db: Db, t: DiffTables, schema: SourceSchema): string {
    const keys = schema.key.map((k) => db.quote(k));
    const cols = keys.map((k, i) => `${k} AS k${i}`).join(', ');
    const nullKey = keys.map((k) => `${k} IS NULL`).join(' OR ');
    return `SELECT TOP (1) ${cols}, COUNT_BIG(*) AS n FROM ${db.table(t.snapshot)} GROUP BY ${keys.join(', ')} HAVING COUNT_BIG(*) > 1 OR ${nullKey}`;
  },

  nullKey(db: Db, t: DiffTables, schema: SourceSchema): string {
    const keys = schema.key.map((k) => db.quote(k));
    return `SELECT TOP (1) ${keys.map((k, i) => `${k} AS k${i}`).join(', ')}, 1 AS n FROM ${db.table(t.snapshot)} WHERE ${keys.map((k) => `${k} IS NULL`).join(' OR ')}`;
  },

  anyRow(db: Db, table: QualifiedName): string {
    return `SELECT TOP (1) 1 AS one FROM ${db.table(table)}`;
  },

  allUpserts(db: Db, t: DiffTables, schema: SourceSchema, entry?: string): string {
    const cols = schema.columns.map((c, i) => `${db.quote(c.name)} AS c${i}`).join(', ');
    return numbered(db, t, schema, `SELECT 'U' AS op, ${cols} FROM ${db.table(t.snapshot)}`, { tablock: ' WITH (TABLOCK)', ...(entry ? { entry } : {}) });
  },

  changes(db: Db, t: DiffTables, schema: SourceSchema, entry?: string, everyRow = false): string {
    const first = db.quote(schema.key[0]!);
    const equal = schema.columns.map((c) => columnEqual(db, c)).join(' AND ');
    const derived =
      `SELECT ${fullJoinSelect(db, schema)} FROM ${db.table(t.snapshot)} AS s FULL OUTER JOIN ${db.table(t.staging)} AS t ON ${keyJoin(db, schema, 's', 't')}` +
      (everyRow ? '' : ` WHERE s.${first} IS NULL OR t.${first} IS NULL OR NOT (${equal})`) +
      heldDeletes(db, t, schema);
    return numbered(db, t, schema, derived, { tablock: ' WITH (TABLOCK)', ...(entry ? { entry } : {}) });
  },

  delta(db: Db, t: DiffTables, schema: SourceSchema, keys: QualifiedName | null, entry?: string): string {
    const differs = `NOT (${schema.columns.map((c) => columnEqual(db, c)).join(' AND ')})`;
    return numbered(db, t, schema, deltaDerived(db, t, schema, differs, keys), { tablock: ' WITH (TABLOCK)', ...(entry ? { entry } : {}) });
  },
};
