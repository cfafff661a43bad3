/**
 * A batch as the reference receiver stages it: one line of COPY text per change (the key columns as text in the
 * schema's key order, then the row's JSON text, or NULL for a delete), which the store COPYs into its temporary
 * staging table, or, for a batch of upserts into a table that held none of its keys, straight into its table. Two
 * producers write it, and must write the same bytes for the same batch: `stageParsed` from a parsed and
 * validated body, and `scanBatch` (scan.ts) straight from the agent's compact bytes.
 */
import type { BatchBody, WireColumn, WireValue } from '../contract/wire.ts';

/** A batch body without its changes: what the store needs besides the staged lines. */
export type BatchHeader = Omit<BatchBody, 'changes'>;

export interface StagedBatch {
  header: BatchHeader;
  upserts: number;
  deletes: number;
  /** The staging COPY text, in chunks of a few hundred kilobytes; read more than once if need be. */
  copy: readonly Buffer[];
  /** Hands the memory of `copy` back for the next batch: only once nothing will read it again (the COPY is done). */
  release?: () => void;
}

/**
 * Large buffers kept for reuse. A receiver allocating a megabyte or two per batch and dropping it makes V8 run a
 * full garbage collection every few batches, for external memory alone (55 of them per 1M rows, measured); reused,
 * the same memory costs none.
 */
export class BufferPool {
  private readonly free: Buffer[] = [];
  private readonly keep: number;
  constructor(keep = 8) {
    this.keep = keep;
  }
  /** A buffer of at least `bytes`: a kept one, or a new one rounded up to a power of two. */
  take(bytes: number): Buffer {
    for (let i = 0; i < this.free.length; i++) {
      if (this.free[i]!.length >= bytes) return this.free.splice(i, 1)[0]!;
    }
    return Buffer.allocUnsafe(2 ** Math.ceil(Math.log2(Math.max(bytes, 64 * 1024))));
  }
  give(buf: Buffer): void {
    if (this.free.length < this.keep) this.free.push(buf);
  }
}

/** The key columns of a batch, in the schema's key order. */
export function keyColumns(header: BatchHeader): WireColumn[] {
  const columns = new Map(header.schema.columns.map((c) => [c.name, c]));
  return header.schema.key.map((k) => columns.get(k)!);
}

/** A value in COPY text format: NULL as \\N, backslash, tab, newline and carriage return escaped. */
export function copyText(value: WireValue | string | undefined): string {
  if (value === null || value === undefined) return '\\N';
  const text = typeof value === 'string' ? value : String(value);
  return /[\\\t\n\r]/.test(text) ? text.replace(/[\\\t\n\r]/g, (c) => (c === '\\' ? '\\\\' : c === '\t' ? '\\t' : c === '\n' ? '\\n' : '\\r')) : text;
}

/** Fills buffers of about `size` bytes with COPY text; `take()` hands over what was written. */
export class CopyChunks {
  private buf: Buffer;
  private len = 0;
  private readonly size: number;
  /** A buffer to start with (from a BufferPool), instead of a new one of `size`. */
  constructor(size = 512 * 1024, first?: Buffer) {
    this.size = size;
    this.buf = first ?? Buffer.allocUnsafe(size);
  }
  get length(): number {
    return this.len;
  }
  private room(bytes: number): void {
    if (this.len + bytes <= this.buf.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.len + bytes));
    this.buf.copy(bigger, 0, 0, this.len);
    this.buf = bigger;
  }
  text(s: string): void {
    this.room(s.length * 3);
    this.len += this.buf.write(s, this.len, 'utf8');
  }
  byte(b: number): void {
    this.room(1);
    this.buf[this.len++] = b;
  }
  bytes(src: Buffer, start: number, end: number): void {
    this.room(end - start);
    this.len += src.copy(this.buf, this.len, start, end);
  }
  take(): Buffer {
    const out = this.buf.subarray(0, this.len);
    this.buf = Buffer.allocUnsafe(this.size);
    this.len = 0;
    return out;
  }

  /** What was written, in the buffer it was written to (whole, so that it can go back to its pool), without a new one. */
  finish(): { written: Buffer; buffer: Buffer } {
    const written = this.buf.subarray(0, this.len);
    return { written, buffer: this.buf };
  }
}

/** The staging COPY text of a parsed, validated body: each row serialised again with `JSON.stringify`. */
export function stageParsed(body: BatchBody): StagedBatch {
  let upserts = 0;
  for (const c of body.changes) if (c.op === 'upsert') upserts++;
  const { changes, ...header } = body;
  // An array, not the generator: a COPY straight into the table that meets a key is staged again from the start.
  return { header, upserts, deletes: changes.length - upserts, copy: [...copyLines(changes, keyColumns(header))] };
}

function* copyLines(changes: BatchBody['changes'], keys: readonly WireColumn[]): Generator<Buffer> {
  const chunks = new CopyChunks();
  for (const change of changes) {
    const values = change.op === 'upsert' ? change.row : change.key;
    let line = '';
    for (const [i, k] of keys.entries()) line += `${i === 0 ? '' : '\t'}${copyText(values[k.name])}`;
    chunks.text(change.op === 'delete' ? `${line}\t\\N\n` : `${line}\t${copyText(JSON.stringify(change.row))}\n`);
    if (chunks.length >= 256 * 1024) yield chunks.take();
  }
  if (chunks.length > 0) yield chunks.take();
}
