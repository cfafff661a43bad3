/**
 * Reading the change table (written by the diff stage): `seq` 1..N in key order, `op` 'U' or 'D', then the
 * source columns (for 'D' only the key columns are set). Every reader encodes rows the same way, so the
 * size the cutter measured is the size the push sends.
 */
import type { Cell, ColumnSpec, Db, DialectName, QualifiedName } from '../dialect/types.ts';
import { encodeChange } from '../contract/wire.ts';
import type { BatchPlan } from './cut.ts';
import type { SourceSchema } from '../snapshot/schema.ts';
import { binaryTuples, visitTuples } from './copy-binary.ts';
import { entrySql } from './render-postgres.ts';
import { snapshotEntriesSql, type ChangeSetKind } from './snapshot-set.ts';

/** A change entry as UTF-8 bytes: what the push stage frames into a batch body without making a JS string. */
export interface EncodedChangeBytes {
  seq: bigint;
  op: 'U' | 'D';
  entry: Buffer;
}

export interface EncodedChange {
  seq: bigint;
  op: 'U' | 'D';
  /** The change's JSON entry in the batch body. */
  entry: string;
}

const SEQ: ColumnSpec = { name: 'seq', type: { kind: 'int64' }, nullable: false };
const OP: ColumnSpec = { name: 'op', type: { kind: 'string', maxLength: 1 }, nullable: false };

export function keyIndexes(schema: SourceSchema): number[] {
  return schema.key.map((k) => {
    const i = schema.columns.findIndex((c) => c.name === k);
    if (i < 0) throw new Error(`key column ${JSON.stringify(k)} is not among the source's columns`);
    return i;
  });
}

/** A seq as an SQL integer literal: it came out of our own bigint column, and is checked to be digits only. */
function seqLiteral(seq: bigint): string {
  const text = BigInt.asIntN(64, seq).toString();
  if (!/^-?\d+$/.test(text)) throw new Error(`bad seq ${text}`);
  return text;
}

/**
 * Where the database itself renders change entries (docs/design.md §10): a SELECT-list expression per dialect, read
 * through raw COPY. SQL Server has none yet and keeps the Node encoding (`readCells` + `encodeChange`).
 */
const SQL_ENTRY: Record<DialectName, ((db: Db, schema: SourceSchema) => string) | null> = {
  postgres: entrySql,
  mssql: null,
};

/** Which encoder `readChanges` uses on `db`: 'sql' needs a renderer, raw COPY and shortest float output. */
const floatCheck = new WeakMap<Db, Promise<boolean>>();
export async function changeEncoder(db: Db): Promise<'sql' | 'node'> {
  if (!SQL_ENTRY[db.dialect] || !db.caps.rawCopy || !db.copyOut) return 'node';
  let ok = floatCheck.get(db);
  if (!ok) {
    // Floats must print as their shortest round-trip digits (the default since PostgreSQL 12).
    ok = db.query<{ d: string }>(`SELECT current_setting('extra_float_digits') AS d`).then((r) => Number(r[0]?.d) >= 1, () => false);
    floatCheck.set(db, ok);
  }
  return (await ok) ? 'sql' : 'node';
}

/**
 * The SQL expression the diff stores in the change table's cdc_entry (src/cdc/diff-sql.ts `numbered`), or null
 * where entries are encoded in Node. Readers take cdc_entry and render only where it is NULL (rows written
 * before the column existed), so each entry is rendered once per run instead of once per stage.
 */
export async function storedEntrySql(db: Db, schema: SourceSchema): Promise<string | null> {
  return (await changeEncoder(db)) === 'sql' ? SQL_ENTRY[db.dialect]!(db, schema) : null;
}

/** The entry as read back: stored by the diff, else rendered now. */
function entryColumn(db: Db, schema: SourceSchema): string {
  return `COALESCE(${db.quote('cdc_entry')}, ${SQL_ENTRY[db.dialect]!(db, schema)})`;
}

/**
 * The entry column the hot readers (the grouped cut, the push's joined read) ask for first: the stored entry
 * alone. The mere presence of the rendering as COALESCE's fallback, never evaluated since the diff stores every
 * entry, cost PostgreSQL per row (measured on 200k rendered changes of the benchmark's row: the grouped cut 0.93
 * against 0.20 CPU-s per 1M, the batch reads 1.15 against 0.58 and 7 × the wall time). A NULL among the rows (a
 * change table written before the column existed) sends the reader back to `entryColumn`.
 */
function storedEntryColumn(db: Db): string {
  return db.quote('cdc_entry');
}

function rangeWhere(db: Db, range?: { first: bigint; last: bigint }): string {
  return range ? ` WHERE ${db.quote('seq')} BETWEEN ${seqLiteral(range.first)} AND ${seqLiteral(range.last)}` : '';
}

function checkOp(db: Db, changes: QualifiedName, op: string, seq: bigint): 'U' | 'D' {
  if (op !== 'U' && op !== 'D') throw new Error(`change table ${db.table(changes)} has op ${JSON.stringify(op)} at seq ${seq}; expected U or D`);
  return op;
}

/**
 * seq, op and the entry's byte size of every change in seq order: what the batch cutter needs. With SQL
 * rendering only the sizes leave the server, never the entries.
 */
export async function* readChangeSizes(db: Db, changes: QualifiedName, schema: SourceSchema): AsyncIterable<{ seq: bigint; op: 'U' | 'D'; bytes: number }> {
  if ((await changeEncoder(db)) === 'node') {
    for await (const c of readChanges(db, changes, schema, undefined, 'node')) yield { seq: c.seq, op: c.op, bytes: Buffer.byteLength(c.entry, 'utf8') };
    return;
  }
  const sql = `SELECT ${db.quote('seq')}, upper(trim(${db.quote('op')})), octet_length(${entryColumn(db, schema)}) FROM ${db.table(changes)} ORDER BY ${db.quote('seq')}`;
  for await (const t of binaryTuples(await db.copyOut!(`COPY (${sql}) TO STDOUT (FORMAT binary)`))) {
    const seq = t[0]!.readBigInt64BE(0);
    yield { seq, op: checkOp(db, changes, t[1]!.toString('utf8'), seq), bytes: t[2]!.readInt32BE(0) };
  }
}

/**
 * Stream the encoded changes of the table in seq order, optionally only those with seq in [first, last].
 *
 * The range goes into the SQL as integer literals because `Db.readCells` takes no bind parameters; both
 * bounds are bigints that we read from cdc_batches, never text from outside.
 */
export async function* readChanges(
  db: Db,
  changes: QualifiedName,
  schema: SourceSchema,
  range?: { first: bigint; last: bigint },
  encoder?: 'sql' | 'node',
): AsyncIterable<EncodedChange> {
  const where = rangeWhere(db, range);
  if ((encoder ?? (await changeEncoder(db))) === 'sql') {
    const sql = `SELECT ${db.quote('seq')}, upper(trim(${db.quote('op')})), ${entryColumn(db, schema)} FROM ${db.table(changes)}${where} ORDER BY ${db.quote('seq')}`;
    for await (const t of binaryTuples(await db.copyOut!(`COPY (${sql}) TO STDOUT (FORMAT binary)`))) {
      const seq = t[0]!.readBigInt64BE(0);
      yield { seq, op: checkOp(db, changes, t[1]!.toString('utf8'), seq), entry: t[2]!.toString('utf8') };
    }
    return;
  }
  const keys = keyIndexes(schema);
  const names = [SEQ, OP, ...schema.columns].map((c) => db.quote(c.name)).join(', ');
  const sql = `SELECT ${names} FROM ${db.table(changes)}${where}`;
  for await (const cells of db.readCells({ sql }, [SEQ, OP, ...schema.columns], { orderBy: ['seq'], batchSize: 2_000 })) {
    const seq = cells[0] as bigint;
    const op = checkOp(db, changes, String(cells[1]).trim().toUpperCase(), seq);
    yield { seq, op, entry: encodeChange(op, cells.slice(2) as Cell[], schema.columns, keys) };
  }
}

/**
 * Like `readChanges`, but each entry stays the UTF-8 bytes it arrived as (a slice of the COPY stream's chunk
 * with SQL rendering), never a JavaScript string: a batch of entries then lives outside the V8 heap, so a
 * push with several batches in flight does not make V8 grow its young generation (issue 10: that growth,
 * 16 → 128 MB of new space, was most of the agent's memory during a job).
 */
export async function* readChangeBytes(
  db: Db,
  changes: QualifiedName,
  schema: SourceSchema,
  range?: { first: bigint; last: bigint },
  encoder?: 'sql' | 'node',
  kind: ChangeSetKind = 'table',
): AsyncIterable<EncodedChangeBytes> {
  if (kind === 'snapshot') {
    if (!range) throw new Error('a snapshot change set is read a batch at a time');
    for await (const t of binaryTuples(await db.copyOut!(`COPY (${snapshotEntriesSql(db, changes, schema, SQL_ENTRY.postgres!(db, schema), range, true)}) TO STDOUT (FORMAT binary)`))) {
      yield { seq: t[0]!.readBigInt64BE(0), op: 'U', entry: t[2]! };
    }
    return;
  }
  if ((encoder ?? (await changeEncoder(db))) === 'sql') {
    const sql = `SELECT ${db.quote('seq')}, upper(trim(${db.quote('op')})), ${entryColumn(db, schema)} FROM ${db.table(changes)}${rangeWhere(db, range)} ORDER BY ${db.quote('seq')}`;
    for await (const t of binaryTuples(await db.copyOut!(`COPY (${sql}) TO STDOUT (FORMAT binary)`))) {
      const seq = t[0]!.readBigInt64BE(0);
      yield { seq, op: checkOp(db, changes, t[1]!.toString('latin1'), seq), entry: t[2]! };
    }
    return;
  }
  for await (const c of readChanges(db, changes, schema, range, 'node')) yield { seq: c.seq, op: c.op, entry: Buffer.from(c.entry, 'utf8') };
}

const COMMA_BYTE = 0x2c;
const U_BYTE = 0x55;
const D_BYTE = 0x44;

/**
 * The entries with seq in [first, last], joined by commas, between `frame.head` and `frame.tail`, in one buffer:
 * a batch body (src/push/push.ts). `frame.size` is the entries' expected size with their commas (the batch's
 * recorded bytes − 1); the buffer is sized from it once. With SQL rendering the entries are copied straight out
 * of the COPY stream's chunks, never one Buffer or string per entry (per-entry slices, their arrays and the join
 * of 10,000 parts were ≈ 1.4–1.8 CPU-s per 1M rows of the agent process; this is a memcpy). With `kind`
 * 'snapshot', `changes` is the snapshot and the entries are rendered as they are read (src/batching/snapshot-set.ts).
 */
export async function readJoinedEntries(
  db: Db,
  changes: QualifiedName,
  schema: SourceSchema,
  range: { first: bigint; last: bigint },
  frame: { head: Buffer; tail: Buffer; size: number },
  kind: ChangeSetKind = 'table',
): Promise<{ rows: number; body: Buffer }> {
  const { head, tail } = frame;
  let out = Buffer.allocUnsafe(head.length + Math.max(0, frame.size) + tail.length);
  let at = head.copy(out, 0);
  const room = (n: number) => {
    if (at + n + tail.length <= out.length) return;
    const grown = Buffer.allocUnsafe(Math.max(out.length * 2, at + n + tail.length));
    out.copy(grown, 0, 0, at);
    out = grown;
  };
  let rows = 0;
  if (kind === 'snapshot' || (await changeEncoder(db)) === 'sql') {
    // op is read as stored (char(1), written by the diff as 'U' or 'D'): upper(trim()) on every row cost the
    // server ≈ 0.25 CPU-s per 1M rows.
    const reads =
      kind === 'snapshot'
        ? [snapshotEntriesSql(db, changes, schema, SQL_ENTRY.postgres!(db, schema), range)]
        : [storedEntryColumn(db), entryColumn(db, schema)].map(
            (entry) => `SELECT ${db.quote('seq')}, ${db.quote('op')}, ${entry} FROM ${db.table(changes)}${rangeWhere(db, range)} ORDER BY ${db.quote('seq')}`,
          );
    for (const sql of reads) {
      let unrendered = false;
      rows = 0;
      at = head.length;
      await visitTuples(await db.copyOut!(`COPY (${sql}) TO STDOUT (FORMAT binary)`), (buf, starts, lengths) => {
        const op = lengths[1] === 1 ? buf[starts[1]!] : -1;
        if (op !== U_BYTE && op !== D_BYTE) {
          const seq = buf.readBigInt64BE(starts[0]!);
          checkOp(db, changes, lengths[1]! < 0 ? 'NULL' : buf.toString('utf8', starts[1]!, starts[1]! + lengths[1]!), seq);
        }
        const len = lengths[2]!;
        // An entry not stored: this read is dropped (drained to its end) and the range read again, rendered.
        if (len < 0) unrendered = true;
        if (unrendered) return;
        room(len + 1);
        if (rows > 0) out[at++] = COMMA_BYTE;
        at += buf.copy(out, at, starts[2]!, starts[2]! + len);
        rows++;
      });
      if (!unrendered) break;
    }
  } else {
    for await (const c of readChangeBytes(db, changes, schema, range, 'node')) {
      room(c.entry.length + 1);
      if (rows > 0) out[at++] = COMMA_BYTE;
      at += c.entry.copy(out, at);
      rows++;
    }
  }
  room(0);
  at += tail.copy(out, at);
  return { rows, body: at === out.length ? out : out.subarray(0, at) };
}

/**
 * The batches `BatchCutter` would cut from the change table when every run of `maxRows` consecutive changes fits
 * in `maxBytes`, computed by the server in one grouped query (no change leaves it); null when some group does not
 * fit (or entries are encoded in Node), and the caller cuts change by change. The two agree exactly: a cutter that
 * starts at a group's first change takes all of its rows, since every prefix of the group fits, and closes at
 * `maxRows`, so it starts the next group at the next one. Groups are numbered by seq when seq runs 1..N without
 * gaps (every fill but a split incremental one), else by row_number over seq.
 */
export async function groupedBatches(db: Db, changes: QualifiedName, schema: SourceSchema, limits: { maxRows: number; maxBytes: number }): Promise<BatchPlan[] | null> {
  if ((await changeEncoder(db)) !== 'sql') return null;
  const seq = db.quote('seq');
  const op = db.quote('op');
  const table = db.table(changes);
  const maxRows = Math.trunc(limits.maxRows);
  const [span] = await db.query<{ lo: unknown; hi: unknown; n: unknown }>(`SELECT min(${seq}) AS lo, max(${seq}) AS hi, count(*) AS n FROM ${table}`);
  const n = Number(span?.n ?? 0);
  if (n === 0) return [];
  const contiguous = String(span!.lo) === '1' && String(span!.hi) === String(n);
  const group = contiguous ? `(${seq} - 1) / ${maxRows}` : `(row_number() OVER (ORDER BY ${seq}) - 1) / ${maxRows}`;
  // Each entry's size counts its separating comma, as the change-by-change cut does (entryBytes in src/contract/wire.ts).
  const grouped = (entry: string) =>
    db.query<{ b: unknown; first: unknown; last: unknown; n: unknown; bytes: unknown; sized: unknown; u: unknown; d: unknown }>(
      `SELECT g.b, min(g.s) AS first, max(g.s) AS last, count(*) AS n, sum(g.len) AS bytes, count(g.len) AS sized, count(*) FILTER (WHERE g.op = 'U') AS u, count(*) FILTER (WHERE g.op = 'D') AS d ` +
        `FROM (SELECT ${group} AS b, ${seq} AS s, ${op} AS op, octet_length(${entry}) + 1 AS len FROM ${table}) AS g GROUP BY g.b ORDER BY g.b`,
    );
  // The stored entries' sizes, unless some entry is not stored (storedEntryColumn).
  let rows = await grouped(storedEntryColumn(db));
  if (rows.some((r) => Number(r.sized) !== Number(r.n))) rows = await grouped(entryColumn(db, schema));
  const plans: BatchPlan[] = [];
  for (const r of rows) {
    const count = Number(r.n);
    const upserts = Number(r.u);
    const deletes = Number(r.d);
    if (upserts + deletes !== count) throw new Error(`change table ${table} has an op other than U or D among seq ${String(r.first)}..${String(r.last)}`);
    const bytes = Number(r.bytes);
    if (bytes > limits.maxBytes) return null;
    plans.push({ batchNo: plans.length + 1, firstSeq: BigInt(String(r.first)), lastSeq: BigInt(String(r.last)), rows: count, bytes, upserts, deletes });
  }
  return plans;
}
