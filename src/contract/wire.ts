/**
 * The Data Push API's wire format (docs/design.md §6, docs/data-push-api.md): lossless JSON for cells, the schema
 * block, and the framing of a batch body. Shared by the push client and the reference receiver, so the
 * two cannot drift apart; docs/openapi.yaml is checked against real traffic by the tests.
 */
import type { Cell, ColumnSpec, ColumnType } from '../dialect/types.ts';
import { schemaFingerprint, type SourceSchema } from '../snapshot/schema.ts';

export type { SourceSchema };

export type PushMode = 'initial' | 'incremental' | 'resync';

/** A column as the contract describes it: the portable type kind plus its parameters, flattened. */
export interface WireColumn {
  name: string;
  type: ColumnType['kind'];
  nullable: boolean;
  precision?: number;
  scale?: number;
  maxLength?: number | null;
}

export interface WireSchema {
  /** `sha256:` + the schema fingerprint the agent keeps (src/snapshot/schema.ts): changes whenever the shape does. */
  version: string;
  key: string[];
  columns: WireColumn[];
}

export type WireValue = null | boolean | number | string;

export type WireChange = { op: 'upsert'; row: Record<string, WireValue> } | { op: 'delete'; key: Record<string, WireValue> };

export interface BatchBody {
  runId: string;
  mode: PushMode;
  batch: number;
  /** Present only on a half of a batch split after a 413: "1", "2", "1.2", … */
  part?: string;
  schema: WireSchema;
  changes: WireChange[];
}

export interface CompleteBody {
  runId: string;
  mode: PushMode;
  schemaVersion: string;
  batches: number;
  upserts: number;
  deletes: number;
  sourceRows: number;
}

/** What a receiver answers to an accepted batch. */
export interface BatchAccepted {
  status: 'applied' | 'duplicate';
  upserts?: number;
  deletes?: number;
}

export interface RunCompleted {
  status: 'reconciled' | 'mismatch' | 'duplicate';
  problems?: string[];
}

export function wireColumn(column: ColumnSpec): WireColumn {
  const out: WireColumn = { name: column.name, type: column.type.kind, nullable: column.nullable };
  const t = column.type;
  if (t.kind === 'decimal') {
    out.precision = t.precision;
    out.scale = t.scale;
  } else if (t.kind === 'time' || t.kind === 'timestamp' || t.kind === 'timestamptz') {
    out.precision = t.precision;
  } else if (t.kind === 'string' || t.kind === 'binary') {
    out.maxLength = t.maxLength;
  }
  return out;
}

export function wireSchema(schema: SourceSchema): WireSchema {
  return { version: `sha256:${schemaFingerprint(schema)}`, key: [...schema.key], columns: schema.columns.map(wireColumn) };
}

/**
 * A float32 as the number with the fewest significant digits that reads back as the same float32: `real` 0.1
 * travels as 0.1, not as its double 0.10000000149011612. The closest p-digit decimal is tried for p = 1..9 (9
 * digits always round-trip a float32); PostgreSQL's float4 output is the same shortest form (render-postgres.ts).
 */
export function shortestFloat32(x: number): number {
  for (let p = 1; p < 9; p++) {
    const y = Number(x.toPrecision(p));
    if (Math.fround(y) === x) return y;
  }
  return Number(x.toPrecision(9));
}

/**
 * One cell in the contract's encoding. bigint and decimal travel as strings (JSON numbers lose digits),
 * binary as base64, time values as canonical text with every fractional digit; non-finite floats,
 * which JSON cannot spell, as the strings "NaN", "Infinity", "-Infinity".
 */
export function encodeCell(cell: Cell, type: ColumnType): WireValue {
  if (cell === null) return null;
  if (typeof cell === 'bigint') return cell.toString();
  if (Buffer.isBuffer(cell)) return cell.toString('base64');
  if (typeof cell === 'number') {
    if (Number.isFinite(cell)) return type.kind === 'decimal' || type.kind === 'int64' ? String(cell) : type.kind === 'float32' ? shortestFloat32(cell) : cell;
    return Number.isNaN(cell) ? 'NaN' : cell > 0 ? 'Infinity' : '-Infinity';
  }
  if (typeof cell === 'boolean') return cell;
  return type.kind === 'uuid' ? cell.toLowerCase() : cell;
}

/**
 * Encoded JSON of one change entry. Property order is the schema's column order, so the same row always
 * gives the same bytes (Invariant I3).
 */
export function encodeChange(op: 'U' | 'D', cells: readonly Cell[], columns: readonly ColumnSpec[], keyIndexes: readonly number[]): string {
  if (op === 'D') {
    const parts = keyIndexes.map((i) => `${JSON.stringify(columns[i]!.name)}:${JSON.stringify(encodeCell(cells[i] ?? null, columns[i]!.type))}`);
    return `{"op":"delete","key":{${parts.join(',')}}}`;
  }
  return `{"op":"upsert","row":${encodeRow(cells, columns)}}`;
}

/**
 * A row's JSON object as an upsert carries it: every column in the schema's order, in the contract's encoding.
 * It is also the canonical row text the dataset digest hashes (src/contract/digest.ts).
 */
export function encodeRow(cells: readonly Cell[], columns: readonly ColumnSpec[]): string {
  const parts = columns.map((c, i) => `${JSON.stringify(c.name)}:${JSON.stringify(encodeCell(cells[i] ?? null, c.type))}`);
  return `{${parts.join(',')}}`;
}

/** Frame pre-encoded change entries into a batch body. */
export function frameBatch(header: { runId: string; mode: PushMode; batch: number; part?: string; schemaJson: string }, entries: readonly string[]): string {
  const part = header.part === undefined ? '' : `,"part":${JSON.stringify(header.part)}`;
  return `{"runId":${JSON.stringify(header.runId)},"mode":${JSON.stringify(header.mode)},"batch":${header.batch}${part},"schema":${header.schemaJson},"changes":[${entries.join(',')}]}`;
}

/** Bytes a batch body spends on its entries (each entry plus its separating comma). */
export function entryBytes(entry: string): number {
  return Buffer.byteLength(entry, 'utf8') + 1;
}

export function idempotencyKey(runId: string, batch: number, part?: string): string {
  return part === undefined ? `${runId}.${batch}` : `${runId}.${batch}.${part}`;
}

export function batchesPath(tenant: string, dataset: string): string {
  return `/tenants/${encodeURIComponent(tenant)}/datasets/${encodeURIComponent(dataset)}/batches`;
}

export function completePath(tenant: string, dataset: string, runId: string): string {
  return `/tenants/${encodeURIComponent(tenant)}/datasets/${encodeURIComponent(dataset)}/runs/${encodeURIComponent(runId)}/complete`;
}

/** Run ids, tenant and dataset ids as the contract accepts them. */
export const ID_PATTERN = '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$';
export const PART_PATTERN = '^[12](\\.[12])*$';
