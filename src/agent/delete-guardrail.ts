/**
 * The delete guardrail (docs/design.md §9): a run that would delete more than `maxDeletePercent` of the rows the
 * receiver holds stops after the diff, before anything is batched or pushed. The classic cause is an outage
 * that makes the source return an empty or partial table; real mass deletes are confirmed with
 * `cdc-agent sync --allow-mass-delete`, which records a confirmation for that job in `cdc_events`.
 *
 * Failing here leaves staging untouched (I1), so a confirmed re-run recomputes the same deletes and pushes them.
 */
import type { Db } from '../dialect/types.ts';
import { PermanentError } from '../errors/errors.ts';
import { heldKeysTable } from '../snapshot/source-tables.ts';
import { stagedRows } from '../snapshot/staged-rows.ts';
import { controlSql } from '../snapshot/tables.ts';

export const MASS_DELETE_ALLOWED = 'mass_delete_allowed';
export const MASS_DELETE_BLOCKED = 'mass_delete_blocked';
export const MASS_DELETE_CONFIRMED = 'mass_delete_confirmed';

/** What the guardrail stores and looks for: the confirmation names the job it applies to. */
function confirmationDetail(jobId: string): string {
  return JSON.stringify({ jobId });
}

function insertEvent(db: Db): string {
  return `INSERT INTO cdc_events (tenant_id, source_id, run_id, kind, detail) VALUES (${db.param(1)}, ${db.param(2)}, ${db.param(3)}, ${db.param(4)}, ${db.param(5)})`;
}

/** Record that an operator confirmed the mass deletes of one job (`sync --allow-mass-delete`). */
export async function allowMassDelete(db: Db, args: { tenant: string; source: string; jobId: string }): Promise<void> {
  await db.execute(insertEvent(db), [args.tenant, args.source, null, MASS_DELETE_ALLOWED, confirmationDetail(args.jobId)]);
}

async function isConfirmed(db: Db, args: { tenant: string; source: string; jobId: string }): Promise<boolean> {
  const rows = await db.query(
    `SELECT 1 AS ok FROM cdc_events WHERE tenant_id = ${db.param(1)} AND source_id = ${db.param(2)} AND kind = ${db.param(3)} AND detail = ${db.param(4)}`,
    [args.tenant, args.source, MASS_DELETE_ALLOWED, confirmationDetail(args.jobId)],
  );
  return rows.length > 0;
}

/** Rows the receiver holds for a source: staging, plus keys held across a schema-drift rebuild. */
async function heldRows(db: Db, tenant: string, source: string): Promise<number> {
  let total = await stagedRows(db, tenant, source);
  const held = heldKeysTable(tenant, source);
  if (await controlSql(db).tableExists(db, held)) {
    const [row] = await db.query<{ n: number | string }>(`SELECT COUNT(*) AS n FROM ${db.table(held)}`);
    total += Number(row?.n ?? 0);
  }
  return total;
}

export class MassDeleteError extends PermanentError {
  readonly deletes: number;
  readonly held: number;

  constructor(message: string, options: { deletes: number; held: number; tenant: string; source: string }) {
    super(message, { context: { tenant: options.tenant, source: options.source } });
    this.deletes = options.deletes;
    this.held = options.held;
  }
}

export interface GuardrailInput {
  controlDb: Db;
  tenant: string;
  source: string;
  jobId: string;
  runId: string;
  deletes: number;
  maxDeletePercent: number;
}

/**
 * Throws MassDeleteError when the deletes exceed the limit and nobody confirmed them for this job.
 * Returns whether a confirmation was used (recorded as an event, for the audit trail).
 */
export async function checkDeleteGuardrail(input: GuardrailInput): Promise<{ confirmed: boolean; held: number }> {
  const { controlDb: db, tenant, source, jobId, runId, deletes, maxDeletePercent } = input;
  if (deletes === 0) return { confirmed: false, held: 0 };
  const held = await heldRows(db, tenant, source);
  const percent = held === 0 ? 100 : (deletes / held) * 100;
  if (percent <= maxDeletePercent) return { confirmed: false, held };
  const detail = JSON.stringify({ jobId, deletes, held, percent: Math.round(percent * 10) / 10, maxDeletePercent });
  if (await isConfirmed(db, { tenant, source, jobId })) {
    await db.execute(insertEvent(db), [tenant, source, runId, MASS_DELETE_CONFIRMED, detail]);
    return { confirmed: true, held };
  }
  await db.execute(insertEvent(db), [tenant, source, runId, MASS_DELETE_BLOCKED, detail]);
  const shown = Number.isInteger(percent) ? String(percent) : deletes < held && percent > 99.9 ? '99.9' : percent.toFixed(1);
  throw new MassDeleteError(
    `Tenant "${tenant}", source "${source}": this run would delete ${deletes.toLocaleString('en-US')} of the ${held.toLocaleString('en-US')} rows ` +
      `the receiver holds (${shown}%), more than maxDeletePercent (${maxDeletePercent}%). ` +
      'A source that suddenly returns an empty or partial table (an outage, a permissions or filter change) looks like this. ' +
      'Nothing was pushed and staging is unchanged. Check the source; if the deletes are real, confirm them with ' +
      `\`cdc-agent sync --tenant ${tenant} --source ${source} --allow-mass-delete\` (or raise maxDeletePercent for this source).`,
    { deletes, held, tenant, source },
  );
}
