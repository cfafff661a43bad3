/**
 * An onboarding's change set is its snapshot (issue 20): when staging is empty every snapshot row is an upsert,
 * so on PostgreSQL 14+ the diff writes no change table. Batches are ranges of the snapshot's heap, a row's seq is
 * its tuple id (page × 2^16 + line pointer), and each batch's entries are rendered from the snapshot when it is
 * pushed, where the change table's fill rendered and wrote every entry, and the cut, the push and the staging
 * apply each read it back (≈ 450 bytes a row: most of the control database's share of an onboarding,
 * docs/benchmarks.md).
 *
 * The run's batches are cut from one load of the snapshot, which nothing updates: a tuple keeps its id, and a
 * batch read again after a crash is the same rows in the same order, the same bytes (I3). A later load (a later
 * run, an interrupted `plan`) gets a new relfilenode, which a resumed run checks (`snapshotIdentity`) before it
 * reads a batch, and a restart of the control database empties the UNLOGGED snapshot, which the push sees as a
 * batch that lost its rows, as it does for the change table.
 */
import type { Db, QualifiedName } from '../dialect/types.ts';
import type { SourceSchema } from '../snapshot/schema.ts';
import type { BatchPlan } from './cut.ts';

/** Where a run's changes are: the change table the diff filled, or the snapshot itself (this module). */
export type ChangeSetKind = 'table' | 'snapshot';

const OFFSETS = 65_536n;

/** A seq of the snapshot set as a tid literal: its page and line pointer, both checked to be in range. */
export function tidLiteral(seq: bigint): string {
  const page = seq / OFFSETS;
  const line = seq % OFFSETS;
  if (seq < 0n || page >= 2n ** 32n) throw new RangeError(`seq ${seq} is not a tuple id`);
  return `'(${page},${line})'::tid`;
}

/** A tuple id as the seq the batches record (ctid has no cast to a number; its text form is a point). */
function tidSeq(column: string): string {
  return `((${column}::text::point)[0]::bigint * ${OFFSETS} + (${column}::text::point)[1]::bigint)`;
}

const supported = new WeakMap<Db, Promise<boolean>>();

/**
 * Whether `db` can serve a change set from the snapshot: PostgreSQL 14 or later, whose TID range scan reads a
 * batch's pages alone (earlier servers would scan the whole snapshot for every batch).
 */
export function snapshotSetSupported(db: Db): Promise<boolean> {
  if (db.dialect !== 'postgres' || !db.caps.rawCopy || !db.copyOut) return Promise.resolve(false);
  let ok = supported.get(db);
  if (!ok) {
    ok = db.query<{ v: unknown }>(`SELECT current_setting('server_version_num')::int AS v`).then((r) => Number(r[0]?.v) >= 140_000, () => false);
    supported.set(db, ok);
  }
  return ok;
}

/** The snapshot's rows with seq in [first, last], as `SELECT` list `columns` over them (aliased `c`). */
export function snapshotRangeSql(db: Db, snapshot: QualifiedName, columns: string, range: { first: bigint; last: bigint }): string {
  return `SELECT ${columns} FROM ${db.table(snapshot)} AS c WHERE c.ctid >= ${tidLiteral(range.first)} AND c.ctid <= ${tidLiteral(range.last)}`;
}

/**
 * seq, op and the rendered entry (`entry`, an expression over "op" and the source's columns) of the snapshot's
 * rows with seq in [first, last], in seq (tuple id) order: what a change table's reader selects. Without
 * `withSeq` the seq column is 0: the batch body's reader needs only the order, and spelling each tuple id as a
 * number (two text casts of ctid a row) cost ≈ 0.4 CPU-s per 1M rows.
 */
export function snapshotEntriesSql(db: Db, snapshot: QualifiedName, schema: SourceSchema, entry: string, range: { first: bigint; last: bigint }, withSeq = false): string {
  const seq = db.quote('seq');
  const cols = schema.columns.map((c) => `c.${db.quote(c.name)}`).join(', ');
  const rows = snapshotRangeSql(db, snapshot, `c.ctid AS ${seq}, 'U'::char(1) AS ${db.quote('op')}, ${cols}`, range);
  return `SELECT ${withSeq ? tidSeq(`s.${seq}`) : '0::bigint'}, s.${db.quote('op')}, ${entry} FROM (${rows}) AS s ORDER BY s.${seq}`;
}

/**
 * An upper estimate of a row's rendered entry in bytes, as SQL over the snapshot's columns: the JSON names and
 * punctuation, each fixed-width value at its longest spelling, and each string or binary value at its length
 * (base64 for binary), escapes aside. It only sizes the cut: the push still splits a body over maxBytes exactly.
 */
function entryEstimate(db: Db, schema: SourceSchema): { fixed: number; lengths: string[] } {
  let fixed = '{"op":"upsert","row":{}}'.length;
  const variable: string[] = [];
  for (const c of schema.columns) {
    fixed += JSON.stringify(c.name).length + 2;
    const t = c.type;
    const q = `c.${db.quote(c.name)}`;
    switch (t.kind) {
      case 'string':
        fixed += 2;
        variable.push(`octet_length(${q})`);
        break;
      case 'binary':
        fixed += 6;
        variable.push(`octet_length(${q}) * 4 / 3`);
        break;
      case 'decimal':
        fixed += t.precision + 4;
        break;
      case 'boolean':
        fixed += 5;
        break;
      case 'int16':
      case 'int32':
        fixed += 11;
        break;
      case 'uuid':
        fixed += 38;
        break;
      case 'date':
        fixed += 14;
        break;
      default:
        // int64, floats, times and timestamps (at most 7 fractional digits and an offset), quoted.
        fixed += 40;
    }
  }
  return { fixed, lengths: variable };
}

/**
 * The batches of the snapshot set: whole heap pages in page order, as many as fit in `maxRows` rows and, by an
 * upper estimate of their entries, `maxBytes` (a page over either alone is cut by line pointer). One grouped
 * query counts and sizes each page's rows; no row leaves the server. The bytes are not known until a batch is
 * rendered (recorded as 0): the push splits a body over `maxBytes` into halves, as after a 413; the estimate keeps
 * such bodies, and the memory they take, near that size for wide rows too.
 */
export async function cutSnapshotBatches(db: Db, snapshot: QualifiedName, schema: SourceSchema, limits: { maxRows: number; maxBytes: number }): Promise<BatchPlan[]> {
  const maxRows = Math.max(1, Math.trunc(limits.maxRows));
  const maxBytes = Math.max(1, limits.maxBytes);
  const table = db.table(snapshot);
  // Per page: the fixed part once per row, the lengths summed (a NULL is none).
  const { fixed, lengths } = entryEstimate(db, schema);
  const summed = [`count(*) * ${fixed}`, ...lengths.map((l) => `COALESCE(sum(${l}), 0)`)].join(' + ');
  const pages = await db.query<{ page: unknown; n: unknown; bytes: unknown }>(
    `SELECT (c.ctid::text::point)[0]::bigint AS page, count(*) AS n, ${summed} AS bytes FROM ${table} AS c GROUP BY 1 ORDER BY 1`,
  );
  const estimate = [String(fixed), ...lengths.map((l) => `COALESCE(${l}, 0)`)].join(' + ');
  const plans: BatchPlan[] = [];
  let open: { first: bigint; last: bigint; rows: number; bytes: number } | undefined;
  const close = () => {
    if (!open) return;
    plans.push({ batchNo: plans.length + 1, firstSeq: open.first, lastSeq: open.last, rows: open.rows, bytes: 0, upserts: open.rows, deletes: 0 });
    open = undefined;
  };
  /** Add rows [first, last] (n rows, bytes by estimate) to the open batch, closing it first when they do not fit. */
  const add = (first: bigint, last: bigint, n: number, bytes: number) => {
    if (open && (open.rows + n > maxRows || open.bytes + bytes > maxBytes)) close();
    if (open) {
      open.last = last;
      open.rows += n;
      open.bytes += bytes;
    } else open = { first, last, rows: n, bytes };
  };
  for (const p of pages) {
    const page = BigInt(String(p.page));
    const n = Number(p.n);
    const bytes = Number(p.bytes);
    const first = page * OFFSETS;
    const last = first + OFFSETS - 1n;
    if (n <= maxRows && bytes <= maxBytes) {
      add(first, last, n, bytes);
      continue;
    }
    // More rows (or bytes) on this page than a batch takes: its rows one by one, by line pointer.
    const rows = await db.query<{ line: unknown; est: unknown }>(
      `SELECT (c.ctid::text::point)[1]::bigint AS line, ${estimate} AS est FROM ${table} AS c WHERE c.ctid >= ${tidLiteral(first)} AND c.ctid <= ${tidLiteral(last)} ORDER BY c.ctid`,
    );
    for (const r of rows) {
      const at = first + BigInt(String(r.line));
      add(at, at, 1, Number(r.est));
    }
  }
  close();
  return plans;
}

/**
 * Which load of the snapshot this is: its relfilenode, which every TRUNCATE (each load starts with one) replaces.
 * A run resumed from its recorded batches checks it, so that it never renders a later load (an interrupted
 * `plan`, a newer run) under its ranges: the rows, not just their count, must be the ones it cut.
 */
export async function snapshotIdentity(db: Db, snapshot: QualifiedName): Promise<string> {
  const [row] = await db.query<{ id: unknown }>(`SELECT pg_relation_filenode(to_regclass($1))::text AS id`, [db.table(snapshot)]);
  return String(row?.id ?? '');
}

/** The snapshot set's upserts (every row) and deletes (none). */
export async function countSnapshotSet(db: Db, snapshot: QualifiedName): Promise<{ upserts: number; deletes: number }> {
  const [row] = await db.query<{ n: unknown }>(`SELECT count(*) AS n FROM ${db.table(snapshot)}`);
  return { upserts: Number(row?.n ?? 0), deletes: 0 };
}
