/**
 * The batch stage (docs/design.md §5 step 3): cut a run's change table into batches by max rows and max bytes in
 * seq (key) order and record them in cdc_batches. Boundaries are fixed once written: cutting again returns
 * what is recorded, so a resent batch has the same rows, the same bytes and the same idempotency key (I3).
 */
import type { Db, QualifiedName, Queryable } from '../dialect/types.ts';
import type { SourceSchema } from '../snapshot/schema.ts';
import { sourceTables } from '../snapshot/source-tables.ts';
import { groupedBatches, readChangeSizes } from './change-set.ts';
import { BatchCutter, type BatchPlan } from './cut.ts';
import { countSnapshotSet, cutSnapshotBatches, type ChangeSetKind } from './snapshot-set.ts';

export interface RecordedBatch {
  batchNo: number;
  firstSeq: bigint;
  lastSeq: bigint;
  rows: number;
  bytes: number;
  status: 'pending' | 'acked';
  attempts: number;
}

export interface CutResult {
  batches: number;
  upserts: number;
  deletes: number;
}

/** cdc_batches rows per INSERT: 8 parameters each stays under SQL Server's 2,100. */
const INSERT_CHUNK = 200;

export async function listBatches(db: Queryable & Pick<Db, 'param'>, runId: string): Promise<RecordedBatch[]> {
  const rows = await db.query<{ batch_no: number; first_seq: unknown; last_seq: unknown; row_count: number; byte_count: unknown; status: string; attempts: number }>(
    `SELECT batch_no, first_seq, last_seq, row_count, byte_count, status, attempts FROM cdc_batches WHERE run_id = ${db.param(1)} ORDER BY batch_no`,
    [runId],
  );
  return rows.map((r) => ({
    batchNo: Number(r.batch_no),
    firstSeq: BigInt(r.first_seq as string),
    lastSeq: BigInt(r.last_seq as string),
    rows: Number(r.row_count),
    bytes: Number(r.byte_count),
    status: r.status === 'acked' ? 'acked' : 'pending',
    attempts: Number(r.attempts),
  }));
}

/** Upserts and deletes in the run's change set: the change table, or the snapshot (every row an upsert). */
export async function countChanges(db: Db, tenant: string, source: string, kind: ChangeSetKind = 'table'): Promise<{ upserts: number; deletes: number }> {
  const { changes, snapshot } = sourceTables(tenant, source);
  if (kind === 'snapshot') return countSnapshotSet(db, snapshot);
  const rows = await db.query<{ op: string; n: unknown }>(`SELECT ${db.quote('op')} AS op, COUNT(*) AS n FROM ${db.table(changes)} GROUP BY ${db.quote('op')}`);
  let upserts = 0;
  let deletes = 0;
  for (const r of rows) {
    if (String(r.op).trim().toUpperCase() === 'D') deletes += Number(r.n);
    else upserts += Number(r.n);
  }
  return { upserts, deletes };
}

async function insertBatches(tx: Queryable, db: Db, args: { tenant: string; source: string; runId: string }, plans: readonly BatchPlan[]): Promise<void> {
  for (let i = 0; i < plans.length; i += INSERT_CHUNK) {
    const chunk = plans.slice(i, i + INSERT_CHUNK);
    const params: unknown[] = [];
    const values = chunk.map((b) => {
      const at = params.length;
      params.push(args.runId, b.batchNo, args.tenant, args.source, b.firstSeq, b.lastSeq, b.rows, b.bytes);
      return `(${Array.from({ length: 8 }, (_, k) => db.param(at + k + 1)).join(', ')})`;
    });
    await tx.execute(
      `INSERT INTO cdc_batches (run_id, batch_no, tenant_id, source_id, first_seq, last_seq, row_count, byte_count) VALUES ${values.join(', ')}`,
      params,
    );
  }
}

async function cutChangeByChange(db: Db, changes: QualifiedName, schema: SourceSchema, limits: { maxRows: number; maxBytes: number }): Promise<BatchPlan[]> {
  const plans: BatchPlan[] = [];
  const cutter = new BatchCutter(limits);
  for await (const change of readChangeSizes(db, changes, schema)) {
    // Each entry plus its separating comma (entryBytes in src/contract/wire.ts).
    const closed = cutter.add(change.seq, change.bytes + 1, change.op);
    if (closed) plans.push(closed);
  }
  const last = cutter.finish();
  if (last) plans.push(last);
  return plans;
}

export async function cutBatches(args: {
  controlDb: Db;
  tenant: string;
  source: string;
  runId: string;
  schema: SourceSchema;
  maxRows: number;
  maxBytes: number;
  /** Where the diff left the run's changes (default: the change table). */
  changeSet?: ChangeSetKind;
}): Promise<CutResult> {
  const { controlDb: db } = args;
  const kind = args.changeSet ?? 'table';
  const existing = await listBatches(db, args.runId);
  if (existing.length > 0) return { batches: existing.length, ...(await countChanges(db, args.tenant, args.source, kind)) };

  const { changes, snapshot } = sourceTables(args.tenant, args.source);
  const limits = { maxRows: args.maxRows, maxBytes: args.maxBytes };
  // One entry per batch stays in memory, never the rows. Where every maxRows changes fit in maxBytes (the usual
  // case) the server cuts them in one grouped query; else they are cut change by change here. A snapshot set is
  // cut by heap pages, its bytes unknown until each batch is rendered.
  const plans: BatchPlan[] =
    kind === 'snapshot'
      ? await cutSnapshotBatches(db, snapshot, args.schema, limits)
      : ((await groupedBatches(db, changes, args.schema, limits)) ?? (await cutChangeByChange(db, changes, args.schema, limits)));

  const written = await db
    .transaction(async (tx) => {
      await insertBatches(tx, db, args, plans);
      return true;
    })
    .catch(async (error: unknown) => {
      // Another worker recorded this run's batches first: theirs stand.
      if ((await listBatches(db, args.runId)).length > 0) return false;
      throw error;
    });
  if (!written) return { batches: (await listBatches(db, args.runId)).length, ...(await countChanges(db, args.tenant, args.source, kind)) };

  const upserts = plans.reduce((n, b) => n + b.upserts, 0);
  const deletes = plans.reduce((n, b) => n + b.deletes, 0);
  return { batches: plans.length, upserts, deletes };
}
