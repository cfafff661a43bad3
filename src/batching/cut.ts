/**
 * Cutting a change set into batches (docs/design.md §5 step 3): in seq (key) order, a batch closes before it would
 * exceed `maxRows` or `maxBytes` of encoded changes. A change bigger than `maxBytes` travels alone. Pure
 * logic: the same changes always give the same boundaries (Invariant I3).
 */

export interface BatchPlan {
  batchNo: number;
  firstSeq: bigint;
  lastSeq: bigint;
  rows: number;
  /** Encoded size of the batch's change entries (the body adds a small fixed header). */
  bytes: number;
  upserts: number;
  deletes: number;
}

export interface BatchLimits {
  maxRows: number;
  maxBytes: number;
}

export class BatchCutter {
  private readonly limits: BatchLimits;
  private open: BatchPlan | undefined;
  private next = 1;

  constructor(limits: BatchLimits) {
    if (!(limits.maxRows >= 1) || !(limits.maxBytes >= 1)) throw new RangeError('maxRows and maxBytes must be at least 1');
    this.limits = limits;
  }

  /** Add one change; returns the batch it closed, if adding it closed one. */
  add(seq: bigint, bytes: number, op: 'U' | 'D'): BatchPlan | undefined {
    let closed: BatchPlan | undefined;
    const current = this.open;
    if (current && (current.rows + 1 > this.limits.maxRows || current.bytes + bytes > this.limits.maxBytes)) {
      closed = current;
      this.open = undefined;
    }
    const batch = (this.open ??= { batchNo: this.next++, firstSeq: seq, lastSeq: seq, rows: 0, bytes: 0, upserts: 0, deletes: 0 });
    if (seq <= batch.lastSeq && batch.rows > 0) throw new Error(`changes must arrive in increasing seq order (got ${seq} after ${batch.lastSeq})`);
    batch.lastSeq = seq;
    batch.rows++;
    batch.bytes += bytes;
    if (op === 'U') batch.upserts++;
    else batch.deletes++;
    return closed;
  }

  /** Close the last batch. */
  finish(): BatchPlan | undefined {
    const last = this.open;
    this.open = undefined;
    return last;
  }
}

/** Cut a whole sequence at once (tests, small sets). */
export function cutAll(changes: Iterable<{ seq: bigint; bytes: number; op: 'U' | 'D' }>, limits: BatchLimits): BatchPlan[] {
  const cutter = new BatchCutter(limits);
  const out: BatchPlan[] = [];
  for (const c of changes) {
    const closed = cutter.add(c.seq, c.bytes, c.op);
    if (closed) out.push(closed);
  }
  const last = cutter.finish();
  if (last) out.push(last);
  return out;
}
