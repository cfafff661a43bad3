/**
 * The diff's statements differ between dialects only in how "equal" is spelled and how one row is
 * limited; one adapter per dialect (diff-postgres.ts, diff-mssql.ts), same shape. Both write into the
 * change table: seq (increasing in key order: 1..N, except that an incremental fill split into parts numbers
 * part i from i × PART_SEQ_OFFSET + 1), op ('U' | 'D'), batch_no NULL, then every source column; a 'D' row
 * carries only the key.
 */
import type { ColumnSpec, Db, QualifiedName } from '../dialect/types.ts';
import type { SourceSchema } from '../snapshot/schema.ts';

export interface DiffTables {
  snapshot: QualifiedName;
  staging: QualifiedName;
  changes: QualifiedName;
  /** Keys held from before a schema-drift rebuild, when that table exists. */
  held: QualifiedName | null;
}

/** Which half of the key range a split fill covers. */
export type KeyHalf = 'low' | 'high';

/**
 * A part of staging's key order, as row offsets: from the key at offset `from` (null: from the first key) up to
 * and excluding the key at offset `to` (null: through the last key).
 */
export interface KeyRange {
  from: number | null;
  to: number | null;
}

/**
 * How far apart the seq numbers of consecutive parts of a split incremental fill start: above any count one
 * part can have, since parts run at the same time. Batches and readers need seq increasing, not contiguous.
 */
export const PART_SEQ_OFFSET = 2 ** 40;

export interface DiffSql {
  /**
   * One key that is NULL or occurs more than once in the snapshot (columns k0..kN, n), or no row. A full
   * GROUP BY: run only to name the culprit once the snapshot's unique index failed to build.
   */
  badKey(db: Db, t: DiffTables, schema: SourceSchema): string;
  /** One snapshot key with a NULL column (columns k0..kN, n = 1), or no row; the unique index makes it a seek. */
  nullKey(db: Db, t: DiffTables, schema: SourceSchema): string;
  /** A row when staging (or the held keys) has any row; decides the initial-sync fast path. */
  anyRow(db: Db, table: QualifiedName): string;
  /** Every snapshot row as an upsert, without a join (staging and held keys are empty). */
  allUpserts(db: Db, t: DiffTables, schema: SourceSchema, entry?: string): string;
  /**
   * Half of `allUpserts`, for two connections at once: the keys below the (split + 1)-th smallest key ('low',
   * seq 1..split) or from it on ('high', seq split + 1..N). Only where the key index makes each half a range
   * read and keys are known unique and non-NULL (the key check passed); absent where a dialect fills in one.
   */
  allUpsertsHalf?(db: Db, t: DiffTables, schema: SourceSchema, half: KeyHalf, split: number, entry?: string): string;
  /**
   * Snapshot vs staging (and held keys) by key, exactly. With `everyRow` (a full run: initial or resync), every
   * snapshot row is an upsert whether or not staging holds it unchanged, and keys only in staging are deletes.
   */
  changes(db: Db, t: DiffTables, schema: SourceSchema, entry?: string, everyRow?: boolean): string;
  /**
   * `changes` for one part of the key range (offsets into staging's key order, seq from seqOffset + 1), so that
   * parts can run on two connections at once and each join's hash stays in memory. Only without held keys, and
   * only with offsets below staging's row count; absent where a dialect diffs in one fill.
   */
  changesPart?(db: Db, t: DiffTables, schema: SourceSchema, part: KeyRange, seqOffset: number, entry?: string, everyRow?: boolean): string;
  /**
   * A watermark run's diff (src/watermark/watermark.ts): the snapshot holds only the rows read past the
   * watermark, so only those keys are compared with staging (new or different rows are upserts, and no key of
   * staging is a delete for being absent). With `keys` (a keydiff run), the keys staging has and neither that
   * table of every source key nor the snapshot has are deletes too.
   */
  delta(db: Db, t: DiffTables, schema: SourceSchema, keys: QualifiedName | null, entry?: string): string;
  /**
   * Statements run in the diff's transaction after the key check, scoped to it (memory for the join's hash
   * table and the numbering sort, so that 1M-row tables do not spill to disk); none where the server sizes its
   * own memory grants.
   */
  settings: readonly string[];
  /**
   * Further settings for a watermark run's delta fill (`delta` without keys) when the snapshot holds few rows: probe
   * staging by its primary key per snapshot row instead of hashing and scanning all of staging.
   */
  smallDeltaSettings?: readonly string[];
  /**
   * How closely `table`'s physical order follows its key order: the correlation of key rank with heap block over a
   * sample of its pages (column c, -1..1, NULL for a sample within one block), with the table's quoted name as its one
   * bind parameter. Absent where the dialect leaves the
   * incremental join to its server.
   */
  keyOrder?(db: Db, table: QualifiedName, schema: SourceSchema): string;
  /** Settings for an incremental fill whose snapshot and staging both lie in about key order: a merge over both key indexes. */
  orderedJoinSettings?: readonly string[];
}

/**
 * Shared skeleton: `row_number` over the key order of a derived table with columns op, c0..cN. With `entry`
 * (an SQL expression over "op" and the source's column names: src/batching/render-postgres.ts), each row's
 * push entry is rendered here, once, into cdc_entry: the batch stage then only reads its length and the push
 * stage its bytes, instead of each rendering every entry again.
 */
export function numbered(db: Db, t: DiffTables, schema: SourceSchema, derived: string, opts: { tablock?: string; entry?: string; seqOffset?: number } = {}): string {
  const rowNumber = opts.seqOffset ? `${Math.trunc(opts.seqOffset)} + row_number()` : 'row_number()';
  const order = schema.key.map((k) => `d.c${schema.columns.findIndex((c) => c.name === k)}`).join(', ');
  const targets = schema.columns.map((c) => db.quote(c.name));
  const named = schema.columns.map((c, i) => `d.c${i} AS ${db.quote(c.name)}`).join(', ');
  const values = schema.columns.map((c) => `n.${db.quote(c.name)}`);
  if (opts.entry) {
    targets.push(db.quote('cdc_entry'));
    values.push(opts.entry);
  }
  return (
    `INSERT INTO ${db.table(t.changes)}${opts.tablock ?? ''} (${db.quote('seq')}, ${db.quote('op')}, ${db.quote('batch_no')}, ${targets.join(', ')}) ` +
    `SELECT n.${db.quote('seq')}, n.${db.quote('op')}, NULL, ${values.join(', ')} FROM (` +
    `SELECT ${rowNumber} OVER (ORDER BY ${order}) AS ${db.quote('seq')}, d.op AS ${db.quote('op')}, ${named} FROM (${derived}) AS d) AS n`
  );
}

export function keyJoin(db: Db, schema: SourceSchema, a: string, b: string): string {
  return schema.key.map((k) => `${a}.${db.quote(k)} = ${b}.${db.quote(k)}`).join(' AND ');
}

/** The derived table's select list: op, then c0..cN (key from whichever side exists, the rest from the snapshot). */
export function fullJoinSelect(db: Db, schema: SourceSchema): string {
  const first = db.quote(schema.key[0]!);
  const cols = schema.columns.map((c: ColumnSpec, i) =>
    schema.key.includes(c.name) ? `COALESCE(s.${db.quote(c.name)}, t.${db.quote(c.name)}) AS c${i}` : `s.${db.quote(c.name)} AS c${i}`,
  );
  return `CASE WHEN s.${first} IS NULL THEN 'D' ELSE 'U' END AS op, ${cols.join(', ')}`;
}

/** Deletes for held keys that are neither in the snapshot nor (any more) in staging. */
export function heldDeletes(db: Db, t: DiffTables, schema: SourceSchema): string {
  if (!t.held) return '';
  const cols = schema.columns.map((c, i) => (schema.key.includes(c.name) ? `h.${db.quote(c.name)} AS c${i}` : `NULL AS c${i}`));
  return (
    ` UNION ALL SELECT 'D' AS op, ${cols.join(', ')} FROM ${db.table(t.held)} AS h` +
    ` WHERE NOT EXISTS (SELECT 1 FROM ${db.table(t.snapshot)} AS s WHERE ${keyJoin(db, schema, 's', 'h')})` +
    ` AND NOT EXISTS (SELECT 1 FROM ${db.table(t.staging)} AS t WHERE ${keyJoin(db, schema, 't', 'h')})`
  );
}

/**
 * The derived table of a watermark run's diff (DiffSql.delta), given the dialect's predicate for "row s differs
 * from row t" (both sides present).
 */
export function deltaDerived(db: Db, t: DiffTables, schema: SourceSchema, differs: string, keys: QualifiedName | null): string {
  const first = db.quote(schema.key[0]!);
  const upserts =
    `SELECT 'U' AS op, ${schema.columns.map((c, i) => `s.${db.quote(c.name)} AS c${i}`).join(', ')} FROM ${db.table(t.snapshot)} AS s ` +
    `LEFT JOIN ${db.table(t.staging)} AS t ON ${keyJoin(db, schema, 's', 't')} WHERE t.${first} IS NULL OR ${differs}`;
  if (!keys) return upserts;
  const cols = schema.columns.map((c, i) => (schema.key.includes(c.name) ? `t.${db.quote(c.name)} AS c${i}` : `NULL AS c${i}`));
  return (
    `${upserts} UNION ALL SELECT 'D' AS op, ${cols.join(', ')} FROM ${db.table(t.staging)} AS t` +
    ` WHERE NOT EXISTS (SELECT 1 FROM ${db.table(keys)} AS k WHERE ${keyJoin(db, schema, 'k', 't')})` +
    ` AND NOT EXISTS (SELECT 1 FROM ${db.table(t.snapshot)} AS s WHERE ${keyJoin(db, schema, 's', 't')})`
  );
}
