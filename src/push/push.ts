/**
 * The push stage (docs/design.md §5 step 4): send every pending batch of a run, up to `push.maxInFlight` at once, in
 * any order (a run touches each key once). On a 2xx the batch is marked acked and applied to staging in one
 * fenced transaction (Invariant I1). A 413 splits the batch into deterministic halves. After the last batch,
 * the run-completion call carries the counts so the receiver can reconcile.
 */
import PQueue from 'p-queue';
import { listBatches, countChanges, type RecordedBatch } from '../batching/batches.ts';
import { readChangeBytes, readJoinedEntries } from '../batching/change-set.ts';
import type { SourceConfig, TenantConfig } from '../config/schema.ts';
import type { Db, Queryable } from '../dialect/types.ts';
import { toCdcError } from '../errors/classify.ts';
import { PermanentError, TransientError, type ErrorContext } from '../errors/errors.ts';
import type { SourceSchema } from '../snapshot/schema.ts';
import { sourceTables } from '../snapshot/source-tables.ts';
import { stagedRows } from '../snapshot/staged-rows.ts';
import { createPushClient, type FailedAttempt, type PushClient } from './client.ts';
import { frameBatch, idempotencyKey, wireSchema, type PushMode, type RunCompleted } from '../contract/wire.ts';
import { PayloadTooLargeError } from './errors.ts';
import { ackAndApply } from './staging.ts';
import type { ChangeSetKind } from '../batching/snapshot-set.ts';

/** The queue's lease fencing: runs `fn` in a transaction that only commits while this worker holds the lease. */
export type Fence = <T>(fn: (tx: Queryable) => Promise<T>) => Promise<T>;

export interface PushProgress {
  batchesAcked: number;
  batches: number;
  /** Changes acknowledged so far. */
  rows: number;
}

export interface PushResult {
  batches: number;
  upserts: number;
  deletes: number;
  /** The rows the completion told the receiver it should hold: staging's, every batch applied. */
  sourceRows: number;
  /** Requests the receiver answered as already applied (a replayed idempotency key). */
  replays: number;
  /**
   * The receiver's answer to the run's completion: `reconciled`, or `mismatch` with its problems (a replayed
   * completion answers `duplicate` with the problems it found the first time). The agent acts on a mismatch.
   */
  completion: { status: RunCompleted['status']; problems: string[] };
}

export interface PushRunArgs {
  controlDb: Db;
  tenant: TenantConfig;
  source: SourceConfig;
  runId: string;
  mode: PushMode;
  schema: SourceSchema;
  /**
   * Rows the receiver should hold after the run. `'staged'`: what staging holds once every batch is applied
   * (a run that read only changed rows); the acknowledgements then keep staging's row count exact
   * (src/snapshot/staged-rows.ts), so that it is not counted.
   */
  sourceRows: number | 'staged';
  /** Where the diff left the run's changes (default: the change table; src/batching/snapshot-set.ts). */
  changeSet?: ChangeSetKind;
  /**
   * The source's batch.maxBytes when the batches were cut (default: as configured now). A snapshot set's batch
   * over it is sent in halves; taking the recorded value keeps a resent batch split as it was first sent.
   */
  maxBytes?: number;
  fence: Fence;
  onProgress?: (progress: PushProgress) => void;
  signal?: AbortSignal;
  /** A shared client for the tenant; one is made (and closed) for this run when absent. */
  client?: PushClient;
  /** Each failed request attempt that the client retries (for the run's own client). */
  onFailedAttempt?: (failed: FailedAttempt) => void;
}

const COMMA = Buffer.from(',');
/** What a posted body is replaced with in the sender's frame, so that only the client holds it. */
const RELEASED = Buffer.alloc(0);
const CLOSE = Buffer.from(']}');

/** What a batch body holds around its entries: `frameBatch(header, [])` split at its `]}`. */
export function bodyFrame(header: Parameters<typeof frameBatch>[0]): { head: Buffer; tail: Buffer } {
  const empty = frameBatch(header, []);
  // frameBatch ends with `"changes":[]}`: everything before `]}` is the head.
  return { head: Buffer.from(empty.slice(0, -2), 'utf8'), tail: CLOSE };
}

/**
 * A batch body as bytes: exactly `frameBatch(header, entries)` in UTF-8, built from the entries' bytes
 * without turning them into one JavaScript string (the body and its entries stay off the V8 heap).
 */
export function frameBatchBytes(header: Parameters<typeof frameBatch>[0], entries: readonly Buffer[]): Buffer {
  const { head } = bodyFrame(header);
  const parts: Buffer[] = [head];
  let length = head.length + CLOSE.length;
  entries.forEach((entry, i) => {
    if (i > 0) parts.push(COMMA);
    parts.push(entry);
    length += entry.length + (i > 0 ? 1 : 0);
  });
  parts.push(CLOSE);
  return Buffer.concat(parts, length);
}

/**
 * The completion answer as the agent acts on it. A body that is not the contract's (a receiver that answers
 * 2xx with no JSON) is taken as reconciled with no problems, as the contract's 2xx without a body says.
 */
export function completionOf(body: unknown): PushResult['completion'] {
  const b = (body ?? {}) as { status?: unknown; problems?: unknown };
  const problems = Array.isArray(b.problems) ? b.problems.map((p) => String(p)) : [];
  const status = b.status === 'mismatch' || b.status === 'duplicate' ? b.status : 'reconciled';
  // A replayed completion that had problems the first time is still a mismatch.
  return { status: status === 'duplicate' && problems.length > 0 ? 'mismatch' : status, problems };
}

/** The two deterministic halves of a list: the first has the extra element when the length is odd. */
export function halves<T>(items: readonly T[]): [T[], T[]] {
  const mid = Math.ceil(items.length / 2);
  return [items.slice(0, mid), items.slice(mid)];
}

export async function pushRun(args: PushRunArgs): Promise<PushResult> {
  const { controlDb: db, tenant, source, runId, schema } = args;
  if (args.client && args.client.tenant !== tenant.id) {
    // Invariant I4: a client carries one tenant's endpoint and credentials.
    throw new PermanentError(`push client for tenant ${args.client.tenant} was given a run of tenant ${tenant.id}`);
  }
  const client = args.client ?? createPushClient(tenant, {}, args.onFailedAttempt ? { onFailedAttempt: args.onFailedAttempt } : {});
  const tables = sourceTables(tenant.id, source.id);
  const context: ErrorContext = { tenant: tenant.id, source: source.id, runId };
  const wire = wireSchema(schema);
  const schemaJson = JSON.stringify(wire);
  const kind = args.changeSet ?? 'table';
  const maxBytes = args.maxBytes ?? source.batch.maxBytes;
  const from = kind === 'snapshot' ? tables.snapshot : tables.changes;
  const target = { tenant: tenant.id, source: source.id, staging: tables.staging, changes: tables.changes, changeSet: kind, snapshot: tables.snapshot, schema, countRows: args.sourceRows === 'staged' };

  try {
    const all = await listBatches(db, runId);
    const pending = all.filter((b) => b.status === 'pending');
    let acked = all.length - pending.length;
    let rows = all.filter((b) => b.status === 'acked').reduce((n, b) => n + b.rows, 0);
    let replays = 0;
    let countForgotten = false;
    let failure: unknown;
    const stopped = () => failure !== undefined || args.signal?.aborted === true;

    /** A batch's change entries as the change table holds them, checked against the recorded row count. */
    const readEntries = async (batch: RecordedBatch): Promise<Buffer[]> => {
      const entries: Buffer[] = [];
      for await (const change of readChangeBytes(db, from, schema, { first: batch.firstSeq, last: batch.lastSeq }, undefined, kind)) entries.push(change.entry);
      if (entries.length !== batch.rows) throw emptied(batch, entries.length);
      return entries;
    };
    // The change table (or the snapshot) is scratch: a restart of the control database empties it (UNLOGGED on
    // PostgreSQL). Retried, the job finds the run's changes gone and starts a fresh run from staging (src/agent/run-job.ts).
    const held = kind === 'snapshot' ? 'the snapshot' : 'the change table';
    const emptied = (batch: RecordedBatch, read: number) =>
      new TransientError(
        `Batch ${batch.batchNo} of run ${runId} should hold ${batch.rows} changes but ${held} has ${read}; ` +
          `${held} was emptied or rewritten under a running push. The job will retry with a fresh run.`,
        { context },
      );

    const header = (batch: RecordedBatch, part: string | undefined) => ({ runId, mode: args.mode, batch: batch.batchNo, ...(part !== undefined ? { part } : {}), schemaJson });
    const frame = (batch: RecordedBatch, entries: readonly Buffer[], part: string | undefined): Buffer => frameBatchBytes(header(batch, part), entries);

    /**
     * Posts a framed body (a batch, or a part of one after a 413). The entries are not held while the request is
     * out (memory, issue 10: they pin the COPY chunks they were read from): a 413 reads them again (`entriesOf`).
     */
    const send = async (batch: RecordedBatch, body: Buffer, count: number, part: string | undefined, entriesOf: () => Promise<Buffer[]>): Promise<number> => {
      if (stopped()) throw failure ?? args.signal?.reason;
      const sendHalves = async (): Promise<number> => {
        const sendHalf = (half: Buffer[], suffix: '1' | '2') => {
          const sub = part === undefined ? suffix : `${part}.${suffix}`;
          return send(batch, frame(batch, half, sub), half.length, sub, () => Promise.resolve(half));
        };
        const [first, second] = halves(await entriesOf());
        const a = await sendHalf(first, '1');
        const b = await sendHalf(second, '2');
        return a + b;
      };
      // A snapshot set's batch was cut before its entries were rendered: entries over maxBytes travel in halves,
      // as after a 413, without asking the receiver first. (A change table's batches were cut within it.)
      if (kind === 'snapshot' && count > 1 && body.length - bodyFrame(header(batch, part)).head.length - CLOSE.length > maxBytes) {
        // This frame would hold the oversized body while its halves are read and sent.
        // eslint-disable-next-line no-useless-assignment
        body = RELEASED;
        return sendHalves();
      }
      const key = idempotencyKey(runId, batch.batchNo, part);
      try {
        const request = client.postBatch(source.id, key, body, { ...(args.signal ? { signal: args.signal } : {}), context });
        // The client keeps the body only until it is compressed; this frame would keep it for the whole request.
        body = RELEASED;
        const sent = await request;
        if (sent.body.status === 'duplicate') replays++;
        return sent.attempts;
      } catch (error) {
        if (!(error instanceof PayloadTooLargeError)) throw error;
        if (count <= 1) {
          throw new PermanentError(
            `Batch ${batch.batchNo} of run ${runId} (${tenant.id}/${source.id}) holds a single change of ${error.bytes} bytes, over the receiver's body limit; ` +
              'raise the receiver limit or exclude the large column.',
            { cause: error, context },
          );
        }
        return 1 + (await sendHalves());
      }
    };

    /** The whole batch's body, its entries copied into it as read (a 413 reads them again one by one). */
    const framed = async (batch: RecordedBatch): Promise<Buffer> => {
      const range = { first: batch.firstSeq, last: batch.lastSeq };
      // A snapshot set's batches were cut without their bytes (0): the body is sized by a guess and grows.
      const size = batch.bytes > 0 ? batch.bytes - 1 : batch.rows * 256;
      const { rows: read, body } = await readJoinedEntries(db, from, schema, range, { ...bodyFrame(header(batch, undefined)), size }, kind);
      if (read !== batch.rows) throw emptied(batch, read);
      return body;
    };

    const pushBatch = async (batch: RecordedBatch): Promise<void> => {
      // The body goes straight into send, not into a local of this frame, which would hold it while the request is out.
      const attempts = await send(batch, await framed(batch), batch.rows, undefined, () => readEntries(batch));
      // Until one acknowledgement has committed, each also sets the staged-row count unknown (ackAndApply).
      const forgetCount = !countForgotten;
      const applied = await args.fence((tx) => ackAndApply(db, tx, target, { runId, batchNo: batch.batchNo, firstSeq: batch.firstSeq, lastSeq: batch.lastSeq, attempts, rows: batch.rows, forgetCount }));
      if (applied) countForgotten = true;
      acked++;
      rows += batch.rows;
      args.onProgress?.({ batchesAcked: acked, batches: all.length, rows });
    };

    const queue = new PQueue({ concurrency: tenant.push.maxInFlight });
    for (const batch of pending) {
      void queue.add(async () => {
        if (stopped()) return;
        try {
          await pushBatch(batch);
        } catch (error) {
          // The first failure stops the run: no later batch is sent (those in flight finish and are acked).
          failure ??= error;
        }
      });
    }
    await queue.onIdle();
    args.signal?.throwIfAborted();
    if (failure !== undefined) throw toCdcError(failure, `Pushing run ${runId} of ${tenant.id}/${source.id}`, context);

    const { upserts, deletes } = await countChanges(db, tenant.id, source.id, kind);
    const sourceRows = args.sourceRows === 'staged' ? await stagedRows(db, tenant.id, source.id) : args.sourceRows;
    const answer = await client.postComplete(
      source.id,
      { runId, mode: args.mode, schemaVersion: wire.version, batches: all.length, upserts, deletes, sourceRows },
      { ...(args.signal ? { signal: args.signal } : {}), context },
    );
    return { batches: all.length, upserts, deletes, sourceRows, replays, completion: completionOf(answer.body) };
  } finally {
    if (!args.client) client.close();
  }
}
