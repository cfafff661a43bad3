/**
 * cdc_source_state.staging_rows: how many rows a source's staging table holds, so that a run which read only
 * changed rows (watermark, keydiff) can tell the receiver the rows it should hold without counting all of
 * staging, which was the largest O(table) cost left in a watermark run (docs/benchmarks.md, issue 21).
 *
 * It changes only where staging does, in the same transaction (I1): each acknowledgement of a watermark or
 * keydiff run adds its batch's net new rows (src/push/staging.ts), any other run's first acknowledgements set
 * it unknown (NULL: counting those batches would cost a probe of staging per change of an onboarding), every
 * run's finish records what staging then holds, and rebuilding the tables sets it unknown. Unknown is read as
 * a count of staging, never as a guess.
 */
import type { Db, Queryable } from '../dialect/types.ts';
import { sourceTables } from './source-tables.ts';

function update(db: Db, set: string): string {
  return `UPDATE cdc_source_state SET staging_rows = ${set} WHERE tenant_id = ${db.param(1)} AND source_id = ${db.param(2)}`;
}

/** The kept count, or null where it is unknown. */
export async function keptStagedRows(db: Db, tenant: string, source: string): Promise<number | null> {
  const [kept] = await db.query<{ n: unknown }>(`SELECT staging_rows AS n FROM cdc_source_state WHERE tenant_id = ${db.param(1)} AND source_id = ${db.param(2)}`, [tenant, source]);
  return kept && kept.n !== null && kept.n !== undefined ? Number(kept.n) : null;
}

/** Rows the source's staging holds: the kept count, or a count of staging when it is unknown. */
export async function stagedRows(db: Db, tenant: string, source: string): Promise<number> {
  const kept = await keptStagedRows(db, tenant, source);
  if (kept !== null) return kept;
  const [row] = await db.query<{ n: unknown }>(`SELECT count(*) AS n FROM ${db.table(sourceTables(tenant, source).staging)}`);
  return Number(row?.n ?? 0);
}

/** Record what staging holds (`null`: unknown, written only over a known count), inside the transaction that made it so. */
export async function recordStagedRows(db: Db, tx: Queryable, tenant: string, source: string, rows: number | null): Promise<void> {
  if (rows === null) await tx.execute(`${update(db, 'NULL')} AND staging_rows IS NOT NULL`, [tenant, source]);
  else await tx.execute(update(db, db.param(3)), [tenant, source, rows]);
}

/** Add an acknowledged batch's net new rows to a known count (an unknown one stays unknown). */
export async function addStagedRows(db: Db, tx: Queryable, tenant: string, source: string, delta: number): Promise<void> {
  if (delta !== 0) await tx.execute(update(db, `staging_rows + ${db.param(3)}`), [tenant, source, delta]);
}
