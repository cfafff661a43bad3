/** The cdc_runs table: one row per run, for `status` and for the operator's history. */
import type { Db, Queryable } from '../dialect/types.ts';

/**
 * `unreconciled`: every batch was acknowledged, but the receiver answered the completion with a mismatch
 * (its problems are kept in `problems`). Never reported as succeeded.
 */
export type RunStatus = 'running' | 'succeeded' | 'unreconciled' | 'failed' | 'abandoned';

export class RunLedger {
  private readonly db: Db;

  constructor(db: Db) {
    this.db = db;
  }

  private p(n: number): string {
    return this.db.param(n);
  }

  async start(run: { runId: string; jobId: string; tenant: string; source: string; mode: string }): Promise<void> {
    await this.db.execute(
      `INSERT INTO cdc_runs (run_id, job_id, tenant_id, source_id, mode, phase) VALUES (${this.p(1)}, ${this.p(2)}, ${this.p(3)}, ${this.p(4)}, ${this.p(5)}, 'snapshot')`,
      [run.runId, run.jobId, run.tenant, run.source, run.mode],
    );
  }

  /** The run's mode once it is known to differ from the one it started with (schema drift makes it a resync). */
  async mode(runId: string, mode: string): Promise<void> {
    await this.db.execute(`UPDATE cdc_runs SET mode = ${this.p(1)} WHERE run_id = ${this.p(2)}`, [mode, runId]);
  }

  /** What the run reads (watermark mode, docs/watermark.md) and why. */
  async runType(runId: string, type: string, reason: string): Promise<void> {
    await this.db.execute(`UPDATE cdc_runs SET run_type = ${this.p(1)}, run_reason = ${this.p(2)} WHERE run_id = ${this.p(3)}`, [type, reason.slice(0, 400), runId]);
  }

  /** Whether the source has ever finished a run reconciled: the first one that does is its `initial`. */
  async everSynced(tenant: string, source: string): Promise<boolean> {
    return (await this.lastSuccess(tenant, source)) !== null;
  }

  /** The source's last reconciled run, with its source row count (the next snapshot's estimate), or null. */
  async lastSuccess(tenant: string, source: string): Promise<{ sourceRows: number | null } | null> {
    const rows = await this.db.query<{ last_counts: string | null }>(
      `SELECT last_counts FROM cdc_source_state WHERE tenant_id = ${this.p(1)} AND source_id = ${this.p(2)} AND last_success_at IS NOT NULL`,
      [tenant, source],
    );
    if (!rows[0]) return null;
    let counts: { sourceRows?: unknown } = {};
    try {
      counts = JSON.parse(rows[0].last_counts ?? '{}') as { sourceRows?: unknown };
    } catch {
      // unreadable counts: no estimate
    }
    return { sourceRows: typeof counts.sourceRows === 'number' ? counts.sourceRows : null };
  }

  /** Whether a resync run of the source started within the last `ms` (the mismatch policy's one-per-period). */
  async resyncSince(tenant: string, source: string, ms: number): Promise<boolean> {
    const seconds = Math.max(1, Math.ceil(ms / 1000));
    const since = this.db.dialect === 'postgres' ? `now() - ${this.p(3)} * interval '1 second'` : `DATEADD(second, -${this.p(3)}, SYSUTCDATETIME())`;
    const rows = await this.db.query(
      `SELECT 1 AS one FROM cdc_runs WHERE tenant_id = ${this.p(1)} AND source_id = ${this.p(2)} AND mode = 'resync' AND started_at > ${since}`,
      [tenant, source, seconds],
    );
    return rows.length > 0;
  }

  /** The receiver's mismatch, as an event beside the run (fenced with the run's finish by the caller's `tx`). */
  async recordUnreconciled(tx: Queryable, run: { runId: string; tenant: string; source: string; problems: readonly string[]; action: string }): Promise<void> {
    await tx.execute(
      `INSERT INTO cdc_events (tenant_id, source_id, run_id, kind, detail) VALUES (${this.p(1)}, ${this.p(2)}, ${this.p(3)}, 'run_unreconciled', ${this.p(4)})`,
      [run.tenant, run.source, run.runId, JSON.stringify({ problems: run.problems, action: run.action })],
    );
  }

  async phase(runId: string, phase: string): Promise<void> {
    await this.db.execute(`UPDATE cdc_runs SET phase = ${this.p(1)} WHERE run_id = ${this.p(2)}`, [phase, runId]);
  }

  async abandon(runId: string, why: string): Promise<void> {
    await this.db.execute(
      `UPDATE cdc_runs SET status = 'abandoned', error = ${this.p(1)}, finished_at = ${this.now()} WHERE run_id = ${this.p(2)} AND status = 'running'`,
      [why, runId],
    );
  }

  async finish(
    runId: string,
    status: RunStatus,
    counts: { sourceRows?: number; upserts?: number; deletes?: number; batches?: number },
    tx: Queryable = this.db,
    error?: string,
    problems?: readonly string[],
  ): Promise<void> {
    await tx.execute(
      `UPDATE cdc_runs SET status = ${this.p(1)}, phase = 'done', source_rows = ${this.p(2)}, upserts = ${this.p(3)}, deletes = ${this.p(4)}, batches = ${this.p(5)},
         error = ${this.p(6)}, problems = ${this.p(7)}, finished_at = ${this.now()} WHERE run_id = ${this.p(8)}`,
      [status, counts.sourceRows ?? null, counts.upserts ?? null, counts.deletes ?? null, counts.batches ?? null, error ?? null, problems?.length ? JSON.stringify(problems) : null, runId],
    );
  }

  async fail(runId: string, error: string): Promise<void> {
    await this.db.execute(
      `UPDATE cdc_runs SET status = 'failed', error = ${this.p(1)}, finished_at = ${this.now()} WHERE run_id = ${this.p(2)} AND status = 'running'`,
      [error, runId],
    );
  }

  private now(): string {
    return this.db.dialect === 'postgres' ? 'now()' : 'SYSUTCDATETIME()';
  }
}
