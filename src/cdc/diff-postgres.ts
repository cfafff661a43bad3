/**
 * PostgreSQL diff. Exactness: string columns of the control tables use COLLATE "C" (byte comparison), and
 * the row comparison is `ROW(...) IS DISTINCT FROM ROW(...)`, which is NULL-safe (NULL vs NULL is equal,
 * NULL vs value is a change). Numeric columns have a fixed scale, bytea compares bytes, timestamps compare
 * exactly at their precision. The FULL JOIN on the key is one hash join over both tables (docs/design.md §10).
 */
import type { Db, QualifiedName } from '../dialect/types.ts';
import type { SourceSchema } from '../snapshot/schema.ts';
import { deltaDerived, fullJoinSelect, heldDeletes, keyJoin, numbered, type DiffSql, type DiffTables, type KeyHalf, type KeyRange } from './diff-sql.ts';

/**
 * The join's hash of staging takes ≈ 135 MB per 1M rows of the benchmark's 11-column table; at the default
 * 4 MB work_mem it spills into 32 batches on disk (measured: the incremental join 3.2–3.3 s → 2.4–2.5 s). 128 MB (× the
 * server's hash_mem_multiplier, 2 by default from PostgreSQL 15) keeps 1M rows in memory and lets larger tables
 * spill in fewer batches. SET LOCAL: only for the diff's own transaction, never the pooled session.
 */
export const DIFF_WORK_MEM = '128MB';

/** Pages sampled to tell whether a table lies in key order (≈ 25 ms for two 1M-row tables). */
const KEY_ORDER_SAMPLE_PAGES = 100;

export const postgresDiff: DiffSql = {
  // JIT off: the fill's rendered entry (src/batching/render-postgres.ts) is a large expression whose estimated
  // cost crosses jit_optimize_above_cost, and compiling it with LLVM took 0.6–1.5 s while the expression runs only
  // for changed rows (measured on the 1M-row incremental fill: 2.0–2.8 s with JIT, 1.1–1.2 s without; the
  // initial fill of 1M rendered rows was also faster without it).
  settings: [`SET LOCAL work_mem = '${DIFF_WORK_MEM}'`, 'SET LOCAL jit = off'],
  // With work_mem at 128 MB the planner hashes the few snapshot rows and scans all of staging (measured: 1M staging
  // rows, 7.5k snapshot rows, 403 ms as planned, 97 ms as a nested loop over staging's primary key; docs/benchmarks.md).
  smallDeltaSettings: ['SET LOCAL enable_hashjoin = off', 'SET LOCAL enable_mergejoin = off'],
  // The planner prices the merge's index scans as random reads and picks the hash join even where both tables lie in
  // key order (measured on 1M rows of the bench's table, 1 % changed, one backend: merge 0.55 CPU-s, hash 0.84–1.20).
  // Without sorts, too: with staging's statistics stale (as after its first fill) it sorted staging on disk instead of
  // reading its primary key (0.88 s against 0.65 s). The numbering's sort of the changes has no other plan and stays.
  orderedJoinSettings: ['SET LOCAL enable_hashjoin = off', 'SET LOCAL enable_sort = off'],

  keyOrder(db: Db, table: QualifiedName, schema: SourceSchema): string {
    // About KEY_ORDER_SAMPLE_PAGES whole pages (TABLESAMPLE SYSTEM reads only the pages it picks), ranked by key
    // in the columns' own collation, as the key index orders them.
    const keys = schema.key.map((k) => db.quote(k)).join(', ');
    const pages = `greatest(1, pg_relation_size(to_regclass($1)) / current_setting('block_size')::int)`;
    return (
      `SELECT corr(r, b)::float8 AS c FROM (SELECT row_number() OVER (ORDER BY ${keys}) AS r, (ctid::text::point)[0] AS b ` +
      `FROM ${db.table(table)} TABLESAMPLE SYSTEM ((SELECT least(100, ${KEY_ORDER_SAMPLE_PAGES} * 100.0 / ${pages}))) REPEATABLE (0)) AS s`
    );
  },

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

  allUpsertsHalf(db: Db, t: DiffTables, schema: SourceSchema, half: KeyHalf, split: number, entry?: string): string {
    const cols = schema.columns.map((c, i) => `${db.quote(c.name)} AS c${i}`).join(', ');
    // The boundary is read from the snapshot's own key index, which the key check has just built.
    return numbered(db, t, schema, `SELECT 'U' AS op, ${cols} FROM ${db.table(t.snapshot)} WHERE ${inHalf(db, schema, half, boundary(db, t.snapshot, schema, split))}`, {
      ...(entry ? { entry } : {}),
      ...(half === 'high' ? { seqOffset: Math.trunc(split) } : {}),
    });
  },

  changes(db: Db, t: DiffTables, schema: SourceSchema, entry?: string, everyRow = false): string {
    return numbered(db, t, schema, fullJoin(db, t, schema, db.table(t.snapshot), db.table(t.staging), everyRow), entry ? { entry } : {});
  },

  changesPart(db: Db, t: DiffTables, schema: SourceSchema, part: KeyRange, seqOffset: number, entry?: string, everyRow = false): string {
    // Held keys (after a drift rebuild) are diffed in one fill only.
    if (t.held) throw new Error('changesPart: a diff with held keys is not split');
    // The part's boundaries are read once each, through staging's primary key (the snapshot's index is still
    // being built); each side of the join reads only the part's key range.
    const ctes: string[] = [];
    const conditions: string[] = [];
    // From the lower boundary on is the upper half of a split there; below the upper one is the lower half.
    for (const [name, at, half] of [['lo', part.from, 'high'], ['hi', part.to, 'low']] as const) {
      if (at === null) continue;
      ctes.push(`${name} AS MATERIALIZED ${boundary(db, t.staging, schema, at)}`);
      conditions.push(inHalf(db, schema, half, `(SELECT * FROM ${name})`));
    }
    const from = (table: QualifiedName) => (conditions.length ? `(SELECT * FROM ${db.table(table)} WHERE ${conditions.join(' AND ')})` : db.table(table));
    const derived = `${ctes.length ? `WITH ${ctes.join(', ')} ` : ''}${fullJoin(db, t, schema, from(t.snapshot), from(t.staging), everyRow)}`;
    return numbered(db, t, schema, derived, { ...(entry ? { entry } : {}), ...(seqOffset > 0 ? { seqOffset } : {}) });
  },

  delta(db: Db, t: DiffTables, schema: SourceSchema, keys: QualifiedName | null, entry?: string): string {
    const rest = schema.columns.filter((c) => !schema.key.includes(c.name)).map((c) => db.quote(c.name));
    const differs = rest.length === 0 ? 'FALSE' : `ROW(${rest.map((c) => `s.${c}`).join(', ')}) IS DISTINCT FROM ROW(${rest.map((c) => `t.${c}`).join(', ')})`;
    return numbered(db, t, schema, deltaDerived(db, t, schema, differs, keys), entry ? { entry } : {});
  },
};

/** The (split + 1)-th key of `table` in key order, as a row subquery (read through the table's key index). */
function boundary(db: Db, table: QualifiedName, schema: SourceSchema, split: number): string {
  const keys = schema.key.map((k) => db.quote(k)).join(', ');
  return `(SELECT ${keys} FROM ${db.table(table)} ORDER BY ${keys} OFFSET ${Math.trunc(split)} LIMIT 1)`;
}

/**
 * The keys below the boundary ('low') or from it on ('high'); a row comparison covers composite keys, in the
 * same order (and collation) as the key's ORDER BY. A key with a NULL part may fall in no part, which does not
 * matter: the key check fails such a run before any fill commits.
 */
function inHalf(db: Db, schema: SourceSchema, half: KeyHalf, bound: string): string {
  return `ROW(${schema.key.map((k) => db.quote(k)).join(', ')}) ${half === 'low' ? '<' : '>='} ${bound}`;
}

/**
 * Snapshot `s` vs staging `t` by key: changed or new rows as 'U', vanished keys as 'D', plus held-key deletes.
 * With `everyRow`, unchanged rows are upserts too (a full run re-sends every row).
 */
function fullJoin(db: Db, t: DiffTables, schema: SourceSchema, snapshot: string, staging: string, everyRow: boolean): string {
  const first = db.quote(schema.key[0]!);
  const rest = schema.columns.filter((c) => !schema.key.includes(c.name)).map((c) => db.quote(c.name));
  const differs = rest.length === 0 ? '' : ` OR ROW(${rest.map((c) => `s.${c}`).join(', ')}) IS DISTINCT FROM ROW(${rest.map((c) => `t.${c}`).join(', ')})`;
  return (
    `SELECT ${fullJoinSelect(db, schema)} FROM ${snapshot} AS s FULL JOIN ${staging} AS t ON ${keyJoin(db, schema, 's', 't')}` +
    (everyRow ? '' : ` WHERE s.${first} IS NULL OR t.${first} IS NULL${differs}`) +
    heldDeletes(db, t, schema)
  );
}
