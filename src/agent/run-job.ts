/**
 * One job's run, phase by phase (docs/design.md §5): snapshot → diff → batch → push → done. The phase is recorded
 * (fenced by the lease) after each one completes, so another replica that takes the job over continues from
 * there. A job taken over before its changes were batched starts a fresh run: the snapshot and change tables
 * may be half-written by the worker that lost the lease, and I1 makes a fresh diff correct.
 */
import { randomBytes } from 'node:crypto';
import type { CompiledConfig } from '../config/load.ts';
import type { SourceConfig, TenantConfig } from '../config/schema.ts';
import type { Db, Queryable } from '../dialect/types.ts';
import { PermanentError } from '../errors/errors.ts';
import { countChanges, cutBatches } from '../batching/batches.ts';
import { snapshotIdentity, type ChangeSetKind } from '../batching/snapshot-set.ts';
import { sourceTables } from '../snapshot/source-tables.ts';
import { computeDiff } from '../cdc/diff.ts';
import type { PushMode } from '../contract/wire.ts';
import { pushRun } from '../push/push.ts';
import type { ClaimedJob, JobQueue } from '../queue-table/queue.ts';
import { describeSource } from '../snapshot/introspect.ts';
import type { SourceSchema } from '../snapshot/schema.ts';
import { takeKeys, takeSnapshot } from '../snapshot/snapshot.ts';
import { recordStagedRows } from '../snapshot/staged-rows.ts';
import { planRead, type ReadPlan, type RunType } from '../watermark/watermark.ts';
import { recordWatermark, recordWatermarkEvent } from '../watermark/state.ts';
import { prepareTables, recordSourceState } from '../snapshot/tables.ts';
import { connectionPath, isAuthenticationFailure, tenantPushPath, type SecretPath, type SecretRotation } from '../config/rotation.ts';
import type { Logger } from '../telemetry/logger.ts';
import { connectionTarget, type Telemetry } from '../telemetry/metrics.ts';
import type { SourceConnections } from './connections.ts';
import { RunLedger } from './run-ledger.ts';
import { checkDeleteGuardrail } from './delete-guardrail.ts';

export type Phase = 'snapshot' | 'diff' | 'batch' | 'push' | 'done';

/** What follows a run the receiver did not reconcile (source policy `onMismatch`, one resync per period). */
export type MismatchAction = 'resync' | 'alert' | 'resync_suppressed';

export interface RunStats {
  phase: Phase;
  sourceRows?: number;
  snapshotRows?: number;
  upserts?: number;
  deletes?: number;
  batches?: number;
  batchesAcked?: number;
  rowsPushed?: number;
  schemaChanged?: boolean;
  startedAt?: string;
  /** The run's mode as pushed (docs/data-push-api.md "Modes"): decided when the run starts, kept on resume. */
  mode?: PushMode;
  /** The worker that last worked on the run. */
  worker?: string;
  /** The latest failed push request that is being retried: when, and why. */
  pushRetry?: { at: string; cause: string };
  /** The last reconciled run's source rows, while this run's snapshot has not counted its own. */
  sourceRowsEstimate?: number;
  /** Set when the receiver answered the completion with a mismatch: the run is `unreconciled`. */
  unreconciled?: { problems: string[]; action: MismatchAction };
  /** What the run read (docs/watermark.md): every row (`full`), rows past the watermark, or those and every key. */
  runType?: RunType;
  runReason?: string;
  /** A watermark source's read: from which committed watermark, and the one its finish commits. */
  watermark?: NonNullable<ReadPlan['watermark']>;
  /** Where the diff left the changes: absent for the change table, 'snapshot' for an onboarding's (src/batching/snapshot-set.ts). */
  changeSet?: ChangeSetKind;
  /** With the snapshot as change set: which load of it the run's batches were cut from (src/batching/snapshot-set.ts). */
  snapshotId?: string;
  /** The source's batch.maxBytes when the batches were cut: a resent batch is split exactly as it was first sent. */
  batchMaxBytes?: number;
  [key: string]: unknown;
}

export interface JobContext {
  job: ClaimedJob;
  queue: JobQueue;
  config: CompiledConfig;
  controlDb: Db;
  sources: SourceConnections;
  log: Logger;
  signal: AbortSignal;
  telemetry?: Telemetry;
  rotation?: SecretRotation;
  /** This replica's worker id, recorded in the run's stats (who worked on it last). */
  workerId?: string;
  /** Told the run's id as soon as it is known (a fresh run's is new), so a failure can be recorded on the run. */
  onRunId?: (runId: string) => void;
  /** How many connections the diff may fill with at once (the daemon: 2 while it has a free job slot, else 1); default 2. */
  diffConnections?: () => number;
}

/** Run `fn`; on an authentication failure, re-read the secrets under `path` and, when one rotated, run it once more. */
async function retryAfterRotation<T>(ctx: JobContext, target: 'push' | 'source', path: SecretPath, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    if (!ctx.rotation || !isAuthenticationFailure(error)) throw error;
    const changed = await ctx.rotation.refresh(path);
    ctx.telemetry?.secretRefreshed(target, { tenant: ctx.job.tenant, source: ctx.job.source }, changed);
    if (!changed) throw error;
    ctx.log.warn({ target }, 'authentication failed; a rotated secret was found, retrying once with it');
    return fn();
  }
}

/** A refused source login, said in the operator's terms: which tenant, source and connection, and what to do. */
async function explainLoginFailure<T>(tenant: string, source: SourceConfig, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    if (!isAuthenticationFailure(error)) throw error;
    const detail = error instanceof Error ? error.message : String(error);
    throw new PermanentError(
      `Tenant "${tenant}", source "${source.id}": the source database refused the login of connection "${source.connection}" (${detail}). ` +
        `Check that connection's user and password (or the secret they name) and that the login exists with SELECT rights; then \`cdc-agent jobs retry-dead --tenant ${tenant}\`.`,
      { cause: error, context: { tenant, source: source.id } },
    );
  }
}

const ACTION_TEXT: Record<MismatchAction, string> = {
  resync: 'a resync of the source is enqueued (onMismatch: resync)',
  alert: 'nothing is enqueued (onMismatch: alert); run `cdc-agent verify` and `cdc-agent resync` to repair it',
  resync_suppressed: 'no resync is enqueued: one already ran within mismatchResyncEvery; run `cdc-agent verify` to find the difference',
};

export function newRunId(now = new Date()): string {
  return `${now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')}-${randomBytes(4).toString('hex')}`;
}

export function findSource(config: CompiledConfig, tenantId: string, sourceId: string): { tenant: TenantConfig; source: SourceConfig } {
  const tenant = config.tenants.find((t) => t.id === tenantId);
  const source = tenant?.sources.find((s) => s.id === sourceId);
  if (!tenant || !source) {
    throw new PermanentError(
      `Job for tenant "${tenantId}", source "${sourceId}" names a source that is not in this agent's configuration; ` +
        'add it back, or cancel the job with `cdc-agent jobs retry-dead`/let it dead-letter.',
      { context: { tenant: tenantId, source: sourceId } },
    );
  }
  return { tenant, source };
}

/** A failing push is logged (and shown to `--wait`) at most this often. */
const RETRY_NOTE_MS = 5_000;

/** Throttle progress writes so that a fast phase does not hammer the job row (`urgent`: a note that must not wait). */
function progressWriter(ctx: JobContext, runId: string, base: () => RunStats): (extra: Partial<RunStats>, urgent?: boolean) => void {
  let last = 0;
  let pending: Promise<void> = Promise.resolve();
  return (extra, urgent = false) => {
    const now = Date.now();
    if (!urgent && now - last < 1000) return;
    last = now;
    const stats = { ...base(), ...extra };
    pending = pending.then(() => ctx.queue.setProgress(ctx.job, { runId, stats }).catch(() => {}));
  };
}

/**
 * Whether the change table (or the snapshot) still holds the run's changes (counted by the diff into the job's
 * stats); a snapshot set must also be the same load of the snapshot.
 */
async function changesIntact(db: Db, tenant: string, source: string, stats: RunStats | null): Promise<boolean> {
  if (!stats || stats.upserts === undefined || stats.deletes === undefined) return true;
  if (stats.changeSet === 'snapshot' && (await snapshotIdentity(db, sourceTables(tenant, source).snapshot)) !== stats.snapshotId) return false;
  const held = await countChanges(db, tenant, source, stats.changeSet ?? 'table');
  return held.upserts === stats.upserts && held.deletes === stats.deletes;
}

export async function runJob(ctx: JobContext): Promise<RunStats> {
  const { job, queue, config, controlDb, log, signal } = ctx;
  const { tenant, source } = findSource(config, job.tenant, job.source);
  const ledger = new RunLedger(controlDb);

  let resumable = job.runId !== null && (job.phase === 'push' || job.phase === 'batch' || job.phase === 'done');
  let abandonReason = 'taken over before its changes were batched; a fresh run replaces it';
  if (resumable && job.phase !== 'done' && !(await changesIntact(controlDb, tenant.id, source.id, job.stats as RunStats | null))) {
    // The change table is scratch (UNLOGGED on PostgreSQL): a restart of the control database empties it. Staging
    // still holds exactly what the receiver acknowledged (I1), so a fresh run derives the rest of the changes.
    resumable = false;
    abandonReason =
      job.stats && (job.stats as RunStats).changeSet === 'snapshot'
        ? 'its snapshot, the change set of this onboarding, was emptied or loaded again (a control database restart, a later run or plan); a fresh run replaces it'
        : 'its change table was emptied (the control database restarted); a fresh run replaces it';
    log.warn({ runId: job.runId }, `run ${job.runId} cannot resume: ${abandonReason}`);
  }
  const runId = resumable ? job.runId! : newRunId();
  let stats: RunStats = resumable && job.stats ? ({ ...(job.stats as RunStats) } as RunStats) : { phase: 'snapshot', startedAt: new Date().toISOString() };
  // The mode tells the receiver what the run is (docs/data-push-api.md "Modes"): a source's first run that
  // succeeds is `initial` whatever enqueued it, an operator's or the mismatch policy's re-send is `resync`
  // (so is a re-send after schema drift, below), the rest `incremental`. A resumed run keeps its mode.
  const previous = stats.mode ? null : await ledger.lastSuccess(tenant.id, source.id);
  let mode: PushMode = stats.mode ?? (job.kind === 'resync' ? 'resync' : previous ? 'incremental' : 'initial');
  stats.mode = mode;
  // What `--wait` shows as the snapshot's total, marked as an estimate: the last run's source row count.
  if (previous?.sourceRows != null) stats.sourceRowsEstimate = previous.sourceRows;
  ctx.onRunId?.(runId);
  const resumedFrom = stats.worker;
  if (ctx.workerId) stats.worker = ctx.workerId;
  const runLog = log.child({ runId });
  const labels = { tenant: tenant.id, source: source.id };

  if (!resumable) {
    if (job.runId) await ledger.abandon(job.runId, abandonReason);
    await ledger.start({ runId, jobId: job.id, tenant: tenant.id, source: source.id, mode });
    await queue.setProgress(job, { phase: 'snapshot', runId, stats });
  } else {
    // Said only when it was another worker's: a retry of this worker's own attempt is no takeover.
    if (resumedFrom !== undefined && resumedFrom === ctx.workerId) runLog.info({ phase: job.phase }, `resuming run after attempt ${job.attempts - 1} failed`);
    else runLog.info({ phase: job.phase, ...(resumedFrom ? { previousWorker: resumedFrom } : {}) }, 'resuming run taken over from another worker');
  }

  const setPhase = async (phase: Phase, extra: Partial<RunStats> = {}) => {
    stats = { ...stats, ...extra, phase };
    await queue.setProgress(job, { phase, runId, stats });
    await ledger.phase(runId, phase);
  };
  const progress = progressWriter(ctx, runId, () => stats);
  let lastRetryNote = 0;
  const checkAbort = () => {
    if (signal.aborted) throw signal.reason instanceof Error ? signal.reason : new Error('aborted');
  };

  let schema: SourceSchema;
  if (stats.phase === 'snapshot') {
    const [sourceDb, described] = await explainLoginFailure(tenant.id, source, async () => {
      const db = await retryAfterRotation(ctx, 'source', connectionPath({ config }, tenant.id, source.connection), () => ctx.sources.get(tenant.id, source.connection));
      return [db, await describeSource(db, tenant.id, source)] as const;
    });
    schema = described.schema;
    const { drift } = await prepareTables({ controlDb, tenant: tenant.id, source, schema, runId });
    if (drift) {
      runLog.warn({ phase: 'snapshot', changes: drift.changes }, 'schema changed at the source; re-sending every row in the new shape (a resync run)');
      ctx.telemetry?.schemaChanged(labels, drift.changes);
      // A drift re-send is a resync, unless it is the source's first success (then it stays initial).
      if (mode === 'incremental') {
        mode = 'resync';
        stats.mode = mode;
        await ledger.mode(runId, mode);
      }
    }
    checkAbort();
    // What this run reads: every row, or (a watermark source) only rows past its watermark, and every key.
    const read = await planRead({ sourceDb, controlDb, tenant: tenant.id, source, described, mode, drift: drift !== null });
    if (source.watermark) {
      stats.runType = read.type;
      stats.runReason = read.reason;
      if (read.watermark) stats.watermark = read.watermark;
      else delete stats.watermark;
      await ledger.runType(runId, read.type, read.reason);
      runLog.info({ phase: 'snapshot', runType: read.type, watermark: read.watermark }, `${read.type} run: ${read.reason}`);
      if (read.fallback) {
        runLog.warn({ phase: 'snapshot', runType: read.type }, `watermark of ${tenant.id}/${source.id} not used: ${read.fallback}; this run reads every row`);
        await recordWatermarkEvent(controlDb, { tenant: tenant.id, source: source.id, runId, kind: 'watermark_reset', detail: { reason: read.fallback, runType: read.type } });
        ctx.telemetry?.watermarkReset(labels, read.fallback);
      }
    }
    const started = Date.now();
    const snap = await takeSnapshot({
      sourceDb,
      controlDb,
      tenant: tenant.id,
      source,
      schema,
      signal,
      // Described a moment ago, for this run: a shape that moved since fails the read itself (a column gone or
      // renamed) or is the next run's drift, as after any description.
      described,
      ...(read.delta ? { delta: read.delta } : {}),
      onProgress: (rows) => progress({ phase: 'snapshot', snapshotRows: rows }),
    });
    runLog.info({ phase: 'snapshot', rows: snap.rows, ms: Date.now() - started }, 'snapshot taken');
    if (read.type === 'keydiff') {
      const keysStarted = Date.now();
      const keys = await takeKeys({ sourceDb, controlDb, tenant: tenant.id, source, schema, signal, described });
      stats.keysRead = keys.rows;
      runLog.info({ phase: 'snapshot', keys: keys.rows, ms: Date.now() - keysStarted }, 'source keys read');
    }
    ctx.telemetry?.snapshotTaken(labels, snap.rows);
    const connection = tenant.connections[source.connection];
    if (connection) ctx.telemetry?.dependency({ type: 'SQL', name: `snapshot ${tenant.id}/${source.id}`, target: connectionTarget(connection), durationMs: Date.now() - started, success: true, properties: labels });
    await setPhase('diff', { sourceRows: snap.rows, snapshotRows: snap.rows, schemaChanged: drift !== null, schema });
    stats.schema = schema;
  } else {
    schema = stats.schema as SourceSchema;
    if (!schema) throw new PermanentError(`Run ${runId} of ${tenant.id}/${source.id} has no recorded schema and cannot resume; it will start over.`);
  }

  if (stats.phase === 'diff') {
    checkAbort();
    const started = Date.now();
    // A full run (initial, resync) re-sends every current row; the receiver drops what it held and did not get
    // again when the run completes (docs/data-push-api.md "Modes").
    const scope = stats.runType === 'watermark' ? 'delta' : stats.runType === 'keydiff' ? 'keydiff' : 'full';
    const diff = await computeDiff({
      controlDb,
      tenant: tenant.id,
      source,
      schema,
      everyRow: mode !== 'incremental',
      scope,
      ...(ctx.diffConnections ? { connections: ctx.diffConnections() } : {}),
    });
    runLog.info({ phase: 'diff', ...diff, ms: Date.now() - started }, 'diff computed');
    ctx.telemetry?.diffComputed(labels, diff.upserts, diff.deletes);
    // Before anything is batched: a mass delete stops here, staging untouched, unless confirmed for this job.
    // A schema-drift rebuild is exempt: a changed key legitimately deletes every old key.
    if (!stats.schemaChanged) {
      const guard = await checkDeleteGuardrail({ controlDb, tenant: tenant.id, source: source.id, jobId: job.id, runId, deletes: diff.deletes, maxDeletePercent: source.maxDeletePercent });
      if (guard.confirmed) runLog.warn({ phase: 'diff', deletes: diff.deletes, held: guard.held }, 'mass delete confirmed by an operator (sync --allow-mass-delete); pushing it');
    }
    if (diff.changeSet === 'snapshot') {
      stats.changeSet = 'snapshot';
      stats.snapshotId = diff.snapshotId;
    } else {
      delete stats.changeSet;
      delete stats.snapshotId;
    }
    await setPhase('batch', { upserts: diff.upserts, deletes: diff.deletes });
  }

  if (stats.phase === 'batch') {
    checkAbort();
    const cut = await cutBatches({
      controlDb,
      tenant: tenant.id,
      source: source.id,
      runId,
      schema,
      maxRows: source.batch.maxRows,
      maxBytes: source.batch.maxBytes,
      ...(stats.changeSet ? { changeSet: stats.changeSet } : {}),
    });
    await setPhase('push', { batches: cut.batches, upserts: cut.upserts, deletes: cut.deletes, batchMaxBytes: source.batch.maxBytes });
  }

  // The watermark moves only here, in the fenced transaction that finishes the run, after every batch was
  // acknowledged and applied to staging (I1): a run that dies earlier is read again from the old one.
  const commitWatermark = async (tx: Queryable) => {
    const mark = stats.watermark;
    if (!mark || !stats.runType) return;
    const found = stats.runType === 'full' && mode === 'incremental' && mark.checksHistory ? (stats.upserts ?? 0) + (stats.deletes ?? 0) : null;
    await recordWatermark(controlDb, tx, { tenant: tenant.id, source: source.id, column: mark.column, kind: mark.kind, value: mark.to, runType: stats.runType, fullDiffFound: found });
  };

  if (stats.phase === 'push') {
    checkAbort();
    const started = Date.now();
    const pushed = await retryAfterRotation(ctx, 'push', tenantPushPath({ config }, tenant.id), () => pushRun({
      controlDb,
      tenant,
      source,
      runId,
      mode,
      schema,
      // A run that read only changed rows tells the receiver the rows it should now hold: staging, once every
      // batch is applied to it (docs/data-push-api.md, the completion).
      sourceRows: stats.runType === 'watermark' || stats.runType === 'keydiff' ? 'staged' : (stats.sourceRows ?? 0),
      ...(stats.changeSet ? { changeSet: stats.changeSet } : {}),
      ...(stats.batchMaxBytes !== undefined ? { maxBytes: stats.batchMaxBytes } : {}),
      fence: (fn) => queue.fenced(job, fn),
      signal,
      onProgress: (p) => progress({ phase: 'push', batchesAcked: p.batchesAcked, batches: p.batches, rowsPushed: p.rows }),
      onFailedAttempt: (failed) => {
        // Seen within seconds, in the log and by `--wait`, not only when the attempt's retries are spent.
        const now = Date.now();
        if (now - lastRetryNote < RETRY_NOTE_MS) return;
        lastRetryNote = now;
        runLog.warn({ phase: 'push', attempt: failed.attempt, retriesLeft: failed.retriesLeft, cause: failed.error.message }, 'push request failed; retrying');
        stats.pushRetry = { at: new Date(now).toISOString(), cause: failed.error.message };
        progress({ phase: 'push' }, true);
      },
    }));
    delete stats.pushRetry;
    runLog.info({ phase: 'push', ...pushed, completion: pushed.completion.status, ms: Date.now() - started }, 'changes pushed and acknowledged');
    ctx.telemetry?.pushed(labels, pushed.batches, Date.now() - started);
    ctx.telemetry?.dependency({ type: 'HTTP', name: `push ${tenant.id}/${source.id}`, target: new URL(tenant.push.url).host, data: tenant.push.url, durationMs: Date.now() - started, success: true, properties: labels });
    stats = { ...stats, batches: pushed.batches, batchesAcked: pushed.batches };
    if (pushed.completion.status === 'mismatch') {
      const problems = pushed.completion.problems.length > 0 ? pushed.completion.problems : ['the receiver answered mismatch without naming a problem'];
      const action: MismatchAction =
        source.onMismatch === 'alert' ? 'alert' : (await ledger.resyncSince(tenant.id, source.id, source.mismatchResyncEvery)) ? 'resync_suppressed' : 'resync';
      stats.unreconciled = { problems, action };
      runLog.error({ phase: 'push', problems, action }, `the receiver did not reconcile run ${runId}: ${problems.join('; ')}; ${ACTION_TEXT[action]}`);
      ctx.telemetry?.runUnreconciled(labels, { runId, mode, problems, action });
      await queue.fenced(job, async (tx) => {
        await ledger.finish(runId, 'unreconciled', stats, tx, undefined, problems);
        await ledger.recordUnreconciled(tx, { runId, tenant: tenant.id, source: source.id, problems, action });
        await commitWatermark(tx);
        await recordStagedRows(controlDb, tx, tenant.id, source.id, pushed.sourceRows);
      });
    } else {
      await queue.fenced(job, async (tx) => {
        await ledger.finish(runId, 'succeeded', stats, tx);
        await commitWatermark(tx);
        await recordStagedRows(controlDb, tx, tenant.id, source.id, pushed.sourceRows);
      });
    }
    await recordSourceState({
      reconciled: stats.unreconciled === undefined,
      controlDb,
      tenant: tenant.id,
      source: source.id,
      schema,
      runId,
      counts: { sourceRows: stats.sourceRows ?? 0, upserts: stats.upserts ?? 0, deletes: stats.deletes ?? 0, batches: pushed.batches },
    });
    stats.phase = 'done';
  }
  return stats;
}
