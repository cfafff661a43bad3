/** The cdc_runs table: one row per run, for `status` and for the operator's history. */
import type { Db, Queryable } from '../dialect/types.ts';

export type RunStatus = 'running' | 'succeeded' | 'failed' | 'abandoned';

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

  async phase(runId: string, phase: string): Promise<void> {
    await this.db.execute(`UPDATE cdc_runs SET phase = ${this.p(1)} WHERE run_id = ${this.p(2)}`, [phase, runId]);
  }

  async abandon(runId: string, why: string): Promise<void> {
    await this.db.execute(
      `UPDATE cdc_runs SET status = 'abandoned', error = ${this.p(1)}, finished_at = ${this.now()} WHERE run_id = ${this.p(2)} AND status = 'running'`,
      [why, runId],
    );
  }

  async finish(runId: string, status: RunStatus, counts: { sourceRows?: number; upserts?: number; deletes?: number; batches?: number }, tx: Queryable = this.db, error?: string): Promise<void> {
    await tx.execute(
      `UPDATE cdc_runs SET status = ${this.p(1)}, phase = 'done', source_rows = ${this.p(2)}, upserts = ${this.p(3)}, deletes = ${this.p(4)}, batches = ${this.p(5)},
         error = ${this.p(6)}, finished_at = ${this.now()} WHERE run_id = ${this.p(7)}`,
      [status, counts.sourceRows ?? null, counts.upserts ?? null, counts.deletes ?? null, counts.batches ?? null, error ?? null, runId],
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
