/**
 * PostgreSQL diff. Exactness: string columns of the control tables use COLLATE "C" (byte comparison), and
 * the row comparison is `ROW(...) IS DISTINCT FROM ROW(...)`, which is NULL-safe (NULL vs NULL is equal,
 * NULL vs value is a change). Numeric columns have a fixed scale, bytea compares bytes, timestamps compare
 * exactly at their precision. The FULL JOIN on the key is one hash join over both tables (DESIGN §10).
 */
import type { Db, QualifiedName } from '../dialect/types.ts';
import type { SourceSchema } from '../snapshot/schema.ts';
import { fullJoinSelect, heldDeletes, keyJoin, numbered, type DiffSql, type DiffTables } from './diff-sql.ts';

/**
 * The join's hash of staging takes ≈ 135 MB per 1M rows of the benchmark's 11-column table; at the default
 * 4 MB work_mem it spills into 32 batches on disk (measured: the incremental join 3.2–3.3 s → 2.4–2.5 s). 128 MB (× the
 * server's hash_mem_multiplier, 2 by default from PostgreSQL 15) keeps 1M rows in memory and lets larger tables
 * spill in fewer batches. SET LOCAL: only for the diff's own transaction, never the pooled session.
 */
export const DIFF_WORK_MEM = '128MB';

export const postgresDiff: DiffSql = {
  // JIT off: the fill's rendered entry (src/batching/render-postgres.ts) is a large expression whose estimated
  // cost crosses jit_optimize_above_cost, and compiling it with LLVM took 0.6–1.5 s while the expression runs only
  // for changed rows (measured on the 1M-row incremental fill: 2.0–2.8 s with JIT, 1.1–1.2 s without; the
  // initial fill of 1M rendered rows was also faster without it).
  settings: [`SET LOCAL work_mem = '${DIFF_WORK_MEM}'`, 'SET LOCAL jit = off'],

  badKey(db: Db, t: DiffTables, schema: SourceSchema): string {
    const keys = schema.key.map((k) => db.quote(k));
    const cols = keys.map((k, i) => `${k} AS k${i}`).join(', ');
    const nullKey = keys.map((k) => `${k} IS NULL`).join(' OR ');
    return `SELECT ${cols}, count(*)::int AS n FROM ${db.table(t.snapshot)} GROUP BY ${keys.join(', ')} HAVING count(*) > 1 OR ${nullKey} LIMIT 1`;
  },

  nullKey(db: Db, t: DiffTables, schema: SourceSchema): string {
    const keys = schema.key.map((k) => db.quote(k));
    return `SELECT ${keys.map((k, i) => `${k} AS k${i}`).join(', ')}, 1 AS n FROM ${db.table(t.snapshot)} WHERE ${keys.map((k) => `${k} IS NULL`).join(' OR ')} LIMIT 1`;
  },

  anyRow(db: Db, table: QualifiedName): string {
    return `SELECT 1 AS one FROM ${db.table(table)} LIMIT 1`;
  },

  allUpserts(db: Db, t: DiffTables, schema: SourceSchema, entry?: string): string {
    const cols = schema.columns.map((c, i) => `${db.quote(c.name)} AS c${i}`).join(', ');
    return numbered(db, t, schema, `SELECT 'U' AS op, ${cols} FROM ${db.table(t.snapshot)}`, entry ? { entry } : {});
  },

  allUpsertsHalf(db: Db, t: DiffTables, schema: SourceSchema, half: 'low' | 'high', split: number, entry?: string): string {
    const cols = schema.columns.map((c, i) => `${db.quote(c.name)} AS c${i}`).join(', ');
    const keys = schema.key.map((k) => db.quote(k));
    const at = Math.trunc(split);
    // The (split + 1)-th key in key order, read from the key index; a row comparison covers composite keys.
    const boundary = `(SELECT ${keys.join(', ')} FROM ${db.table(t.snapshot)} ORDER BY ${keys.join(', ')} OFFSET ${at} LIMIT 1)`;
    const where = `ROW(${keys.join(', ')}) ${half === 'low' ? '<' : '>='} ${boundary}`;
    return numbered(db, t, schema, `SELECT 'U' AS op, ${cols} FROM ${db.table(t.snapshot)} WHERE ${where}`, {
      ...(entry ? { entry } : {}),
      ...(half === 'high' ? { seqOffset: at } : {}),
    });
  },

  changes(db: Db, t: DiffTables, schema: SourceSchema, entry?: string): string {
    const first = db.quote(schema.key[0]!);
    const rest = schema.columns.filter((c) => !schema.key.includes(c.name)).map((c) => db.quote(c.name));
    const differs = rest.length === 0 ? '' : ` OR ROW(${rest.map((c) => `s.${c}`).join(', ')}) IS DISTINCT FROM ROW(${rest.map((c) => `t.${c}`).join(', ')})`;
    const derived =
      `SELECT ${fullJoinSelect(db, schema)} FROM ${db.table(t.snapshot)} AS s FULL JOIN ${db.table(t.staging)} AS t ON ${keyJoin(db, schema, 's', 't')}` +
      ` WHERE s.${first} IS NULL OR t.${first} IS NULL${differs}` +
      heldDeletes(db, t, schema);
    return numbered(db, t, schema, derived, entry ? { entry } : {});
  },
};
