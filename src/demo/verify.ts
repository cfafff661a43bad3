/**
 * Proof that a dataset at the receiver equals its source: both sides streamed in key order and compared
 * row by row in the contract's encoding, in bounded memory.
 */
import { createInterface } from 'node:readline';
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { parseQualifiedName } from '../dialect/identifiers.ts';
import type { Db } from '../dialect/types.ts';
import { encodeCell } from '../contract/wire.ts';
import type { SourceSchema } from '../snapshot/schema.ts';

export interface Verification {
  ok: boolean;
  sourceRows: number;
  receiverRows: number;
  /** The first row that differs, as the two encodings side by side. */
  firstDifference?: { source: string | null; receiver: string | null };
}

export async function* receiverRows(baseUrl: string, tenant: string, dataset: string, token?: string): AsyncIterable<Record<string, unknown>> {
  const response = await fetch(`${baseUrl}/tenants/${encodeURIComponent(tenant)}/datasets/${encodeURIComponent(dataset)}/rows`, {
    headers: token ? { authorization: `Bearer ${token}` } : {},
  });
  if (response.status === 404) return;
  if (!response.ok || !response.body) throw new Error(`receiver answered ${response.status} for ${tenant}/${dataset} rows`);
  const lines = createInterface({ input: Readable.fromWeb(response.body as WebReadableStream), crlfDelay: Infinity });
  for await (const line of lines) if (line.trim()) yield JSON.parse(line) as Record<string, unknown>;
}

function canonical(row: Record<string, unknown>, schema: SourceSchema): string {
  return JSON.stringify(schema.columns.map((c) => [c.name, row[c.name] ?? null]));
}

/** Compare every row of a source relation with what the receiver holds for the dataset. */
export async function verifyDataset(args: {
  sourceDb: Db;
  from: { table: string } | { sql: string };
  schema: SourceSchema;
  receiverUrl: string;
  tenant: string;
  dataset: string;
  token?: string;
}): Promise<Verification> {
  const { schema } = args;
  const from = 'table' in args.from ? parseQualifiedName(args.from.table) : { sql: args.from.sql };
  const source = args.sourceDb.readCells(from, schema.columns, { orderBy: schema.key })[Symbol.asyncIterator]();
  const receiver = receiverRows(args.receiverUrl, args.tenant, args.dataset, args.token)[Symbol.asyncIterator]();
  let sourceRows = 0;
  let receivedRows = 0;
  let firstDifference: Verification['firstDifference'];
  for (;;) {
    const [s, r] = await Promise.all([source.next(), receiver.next()]);
    if (s.done && r.done) break;
    const left = s.done ? null : canonical(Object.fromEntries(schema.columns.map((c, i) => [c.name, encodeCell(s.value[i] ?? null, c.type)])), schema);
    const right = r.done ? null : canonical(r.value, schema);
    if (!s.done) sourceRows++;
    if (!r.done) receivedRows++;
    if (left !== right && !firstDifference) firstDifference = { source: left, receiver: right };
  }
  return { ok: firstDifference === undefined, sourceRows, receiverRows: receivedRows, ...(firstDifference ? { firstDifference } : {}) };
}
