/**
 * Invariant I1: staging = what the receiver acknowledged. On a 2xx, one fenced transaction marks the batch
 * acked and applies its changes to staging. SQL Server deletes every staged row whose key the batch touches,
 * then inserts the batch's upserted rows; PostgreSQL deletes only the batch's deleted keys and upserts the rest
 * with `INSERT … ON CONFLICT` on staging's primary key, whose uniqueness check the insert makes anyway, so an
 * onboarding's batches (upserts of keys staging lacks) no longer probe staging once per change for nothing
 * (the delete was ≈ 0.4 CPU-s of the control database per 1M onboarded rows, docs/benchmarks.md).
 */
import type { ColumnSpec, Db, DialectName, QualifiedName, Queryable } from '../dialect/types.ts';
import type { SourceSchema } from '../snapshot/schema.ts';
import { addStagedRows, recordStagedRows } from '../snapshot/staged-rows.ts';
import { snapshotRangeSql, type ChangeSetKind } from '../batching/snapshot-set.ts';
import { TransientError } from '../errors/errors.ts';

interface StagingDialect {
  /**
   * `DELETE` of staged rows matching `EXISTS (…)`, with the staged table aliased `s`. It must probe staging's
   * key index once per change of the batch (a nested loop), never scan staging: left to itself the planner
   * chose a hash semi-join over a full scan of staging for every batch, so an onboarding's acknowledgements
   * cost O(batches × table) (measured on a 1M-row staging table: 447 ms per 5,000-row batch, 137 ms with the
   * nested loop).
   */
  deleteMatching(staging: string, exists: string): string;
  /**
   * An insert of `select`'s rows (columns `names`) that replaces the staged row with the same key. Where present,
   * the delete covers only the batch's deleted keys; where absent, every key the batch touches is deleted first
   * and the upserted rows are plainly inserted.
   */
  upsert?(db: Db, staging: string, names: readonly string[], key: readonly string[], select: string): string;
  /** Statements run in the acknowledging transaction before the delete (scoped to it). */
  applySettings: readonly string[];
  /** Key equality between `c` (change) and `s` (staged), exact for text and binary. */
  keyEquals(db: Db, column: ColumnSpec): string;
  now: string;
}

const DIALECTS: Record<DialectName, StagingDialect> = {
  postgres: {
    deleteMatching: (staging, exists) => `DELETE FROM ${staging} AS s WHERE EXISTS (${exists})`,
    upsert: (db, staging, names, key, select) => {
      const rest = names.filter((n) => !key.includes(n)).map((n) => db.quote(n));
      const action = rest.length === 0 ? 'DO NOTHING' : `DO UPDATE SET ${rest.map((c) => `${c} = EXCLUDED.${c}`).join(', ')}`;
      return `INSERT INTO ${staging} (${names.map((n) => db.quote(n)).join(', ')}) ${select} ON CONFLICT (${key.map((k) => db.quote(k)).join(', ')}) ${action}`;
    },
    applySettings: ['SET LOCAL enable_hashjoin = off', 'SET LOCAL enable_mergejoin = off'],
    // PostgreSQL compares text and bytea byte for byte (deterministic collations) and keeps trailing spaces.
    keyEquals: (db, c) => `c.${db.quote(c.name)} = s.${db.quote(c.name)}`,
    now: 'now()',
  },
  mssql: {
    // OPTION (LOOP JOIN): every join of the statement, the semi-join of EXISTS included, as nested loops.
    deleteMatching: (staging, exists) => `DELETE s FROM ${staging} AS s WHERE EXISTS (${exists}) OPTION (LOOP JOIN)`,
    applySettings: [],
    // SQL Server's `=` ignores case under the default collations and trailing spaces under every collation
    // (and trailing 0x00 for binary); a binary collation plus equal DATALENGTH makes it exact.
    keyEquals: (db, c) => {
      const a = `c.${db.quote(c.name)}`;
      const b = `s.${db.quote(c.name)}`;
      if (c.type.kind === 'string') return `(${a} = ${b} COLLATE Latin1_General_100_BIN2 AND DATALENGTH(${a}) = DATALENGTH(${b}))`;
      if (c.type.kind === 'binary') return `(${a} = ${b} AND DATALENGTH(${a}) = DATALENGTH(${b}))`;
      return `${a} = ${b}`;
    },
    now: 'SYSUTCDATETIME()',
  },
};

export interface StagingTarget {
  tenant: string;
  source: string;
  staging: QualifiedName;
  changes: QualifiedName;
  /** Where the run's changes are (src/batching/snapshot-set.ts); with 'snapshot', `snapshot` is read instead of `changes`. */
  changeSet?: ChangeSetKind;
  snapshot?: QualifiedName;
  schema: SourceSchema;
  /**
   * Keep the source's count of staged rows exact (src/snapshot/staged-rows.ts): a run that reads only changed
   * rows, whose completion asks for it. Otherwise the push's first acknowledgements set it unknown
   * (`forgetCount`) and the run's finish records it.
   */
  countRows: boolean;
}

/**
 * Mark batch `batchNo` of `runId` acknowledged and apply rows with seq in [first, last] to staging, inside
 * `tx`. Returns false (and changes nothing) when the batch was already acknowledged. `rows` is the batch's
 * recorded row count; `forgetCount` sets the staged-row count unknown (a run that does not keep it, until one
 * of its acknowledgements has committed: per acknowledgement, that one-row update cost 0.29 CPU-s per 1M
 * onboarded rows).
 */
export async function ackAndApply(
  db: Db,
  tx: Queryable,
  target: StagingTarget,
  batch: { runId: string; batchNo: number; firstSeq: bigint; lastSeq: bigint; attempts: number; rows: number; forgetCount: boolean },
): Promise<boolean> {
  const d = DIALECTS[db.dialect];
  const p = (n: number) => db.param(n);
  const acked = await tx.execute(
    `UPDATE cdc_batches SET status = 'acked', acked_at = ${d.now}, attempts = attempts + ${p(3)} WHERE run_id = ${p(1)} AND batch_no = ${p(2)} AND status = 'pending'`,
    [batch.runId, batch.batchNo, batch.attempts],
  );
  if (acked === 0) return false;
  if (batch.forgetCount && !target.countRows) await recordStagedRows(db, tx, target.tenant, target.source, null);
  if (target.changeSet === 'snapshot') {
    await applySnapshotRange(db, tx, target, batch);
    return true;
  }
  const byName = new Map(target.schema.columns.map((c) => [c.name, c]));
  const keyMatch = target.schema.key.map((k) => d.keyEquals(db, byName.get(k)!)).join(' AND ');
  const seq = db.quote('seq');
  const staging = db.table(target.staging);
  const changes = db.table(target.changes);
  const op = db.quote('op');
  for (const statement of d.applySettings) await tx.execute(statement);
  const range = [batch.firstSeq, batch.lastSeq];
  // Where the delete covers only deleted keys, the upserts that add a row are those whose key staging lacks,
  // counted before they are applied (a probe of staging's key per upsert of the batch). Where it covers every
  // key the batch touches, the insert's count less the delete's is the batch's net change.
  const added =
    target.countRows && d.upsert
      ? await countQuery(tx, `SELECT count(*) AS n FROM ${changes} AS c WHERE c.${seq} BETWEEN ${p(1)} AND ${p(2)} AND c.${op} = 'U' AND NOT EXISTS (SELECT 1 FROM ${staging} AS s WHERE ${keyMatch})`, range)
      : 0;
  const deletedOnly = d.upsert ? ` AND c.${op} = 'D'` : '';
  const deleted = await tx.execute(d.deleteMatching(staging, `SELECT 1 FROM ${changes} AS c WHERE c.${seq} BETWEEN ${p(1)} AND ${p(2)}${deletedOnly} AND ${keyMatch}`), range);
  const columns = target.schema.columns.map((c) => c.name);
  const names = columns.map((c) => db.quote(c)).join(', ');
  const upserted = `SELECT ${names} FROM ${changes} WHERE ${seq} BETWEEN ${p(1)} AND ${p(2)} AND ${op} = 'U'`;
  const inserted = await tx.execute(d.upsert ? d.upsert(db, staging, columns, target.schema.key, upserted) : `INSERT INTO ${staging} (${names}) ${upserted}`, range);
  if (target.countRows) await addStagedRows(db, tx, target.tenant, target.source, (d.upsert ? added : inserted) - deleted);
  return true;
}

/**
 * A batch of a snapshot set: every row of its heap range is an upsert of a key staging lacks (an onboarding:
 * staging was empty when the diff chose the set, only this run writes it, and each batch is applied once), so
 * nothing is deleted and the rows are plainly inserted. A key staging held would fail the insert on its primary
 * key rather than be overwritten. `INSERT … ON CONFLICT` cost 2.8 CPU-s per 1M rows against 1.6 for the insert.
 */
async function applySnapshotRange(db: Db, tx: Queryable, target: StagingTarget, batch: { runId: string; batchNo: number; firstSeq: bigint; lastSeq: bigint; rows: number }): Promise<void> {
  if (db.dialect !== 'postgres' || !target.snapshot) throw new Error(`a snapshot change set needs a PostgreSQL control database and its snapshot table`);
  const columns = target.schema.columns.map((c) => db.quote(c.name));
  const rows = snapshotRangeSql(db, target.snapshot, columns.map((c) => `c.${c}`).join(', '), { first: batch.firstSeq, last: batch.lastSeq });
  const inserted = await tx.execute(`INSERT INTO ${db.table(target.staging)} (${columns.join(', ')}) ${rows}`);
  // The snapshot emptied since the batch was read (a control database restart): the acknowledgement rolls back
  // rather than record rows staging did not get; the job's retry starts a fresh run (src/agent/run-job.ts).
  if (inserted !== batch.rows) {
    throw new TransientError(`Batch ${batch.batchNo} of run ${batch.runId} should apply ${batch.rows} rows to staging but the snapshot has ${inserted} of them; the snapshot was emptied under a running push. The job will retry with a fresh run.`);
  }
  if (target.countRows) await addStagedRows(db, tx, target.tenant, target.source, inserted);
}

async function countQuery(tx: Queryable, sql: string, params: unknown[]): Promise<number> {
  const [row] = await tx.query<{ n: unknown }>(sql, params);
  return Number(row?.n ?? 0);
}
