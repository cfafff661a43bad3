/**
 * Reading the change table (written by the diff stage): `seq` 1..N in key order, `op` 'U' or 'D', then the
 * source columns (for 'D' only the key columns are set). Every reader encodes rows the same way, so the
 * size the cutter measured is the size the push sends.
 */
import type { Cell, ColumnSpec, Db, QualifiedName } from '../dialect/types.ts';
import { encodeChange } from '../push/contract.ts';
import type { SourceSchema } from '../snapshot/schema.ts';

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
): AsyncIterable<EncodedChange> {
  const keys = keyIndexes(schema);
  const names = [SEQ, OP, ...schema.columns].map((c) => db.quote(c.name)).join(', ');
  const where = range ? ` WHERE ${db.quote('seq')} BETWEEN ${seqLiteral(range.first)} AND ${seqLiteral(range.last)}` : '';
  const sql = `SELECT ${names} FROM ${db.table(changes)}${where}`;
  for await (const cells of db.readCells({ sql }, [SEQ, OP, ...schema.columns], { orderBy: ['seq'], batchSize: 2_000 })) {
    const seq = cells[0] as bigint;
    const op = String(cells[1]).trim().toUpperCase();
    if (op !== 'U' && op !== 'D') throw new Error(`change table ${db.table(changes)} has op ${JSON.stringify(op)} at seq ${seq}; expected U or D`);
    yield { seq, op, entry: encodeChange(op, cells.slice(2) as Cell[], schema.columns, keys) };
  }
}
