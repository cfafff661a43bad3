/**
 * Reading the change table (written by the diff stage): `seq` 1..N in key order, `op` 'U' or 'D', then the
 * source columns (for 'D' only the key columns are set). Every reader encodes rows the same way, so the
 * size the cutter measured is the size the push sends.
 */
import type { Cell, ColumnSpec, Db, DialectName, QualifiedName } from '../dialect/types.ts';
import { encodeChange } from '../contract/wire.ts';
import type { SourceSchema } from '../snapshot/schema.ts';
import { binaryTuples } from './copy-binary.ts';
import { entrySql } from './render-postgres.ts';

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
): AsyncIterable<EncodedChangeBytes> {
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
