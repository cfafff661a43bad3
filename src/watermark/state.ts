/**
 * cdc_watermarks: how far each watermark source has been read, and when deletes and a full diff were last
 * looked for. Read when a run chooses its type; written only by `recordWatermark`, inside the fenced
 * transaction that finishes a run (after every batch was acknowledged and applied to staging).
 */
import type { Db, Queryable } from '../dialect/types.ts';
import type { RunType, WatermarkKind } from './watermark.ts';

export interface WatermarkState {
  tenant: string;
  source: string;
  column: string;
  kind: WatermarkKind;
  /** The watermark's text; null when the source had no row at the last read. */
  value: string | null;
  lastFullDiffAt: string | null;
  /** Changes the last full diff found after watermark runs; null when it was a first run or a resync. */
  lastFullDiffFound: number | null;
  lastKeyDiffAt: string | null;
  /** Seconds since the last full diff (by the control database's clock), null when none ran. */
  fullDiffAgeSeconds: number | null;
  keyDiffAgeSeconds: number | null;
}

type StateRow = {
  tenant_id: string;
  source_id: string;
  column_name: string;
  kind: WatermarkKind;
  value: string | null;
  last_full_diff_at: unknown;
  last_full_diff_found: unknown;
  last_key_diff_at: unknown;
  full_age: unknown;
  key_age: unknown;
};

function selectSql(db: Db): string {
  const age = (column: string) =>
    db.dialect === 'postgres' ? `EXTRACT(EPOCH FROM now() - ${column})::float8` : `DATEDIFF_BIG(millisecond, ${column}, SYSUTCDATETIME()) / 1000.0`;
  return (
    'SELECT tenant_id, source_id, column_name, kind, value, last_full_diff_at, last_full_diff_found, last_key_diff_at, ' +
    `${age('last_full_diff_at')} AS full_age, ${age('last_key_diff_at')} AS key_age FROM cdc_watermarks`
  );
}

function iso(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  if (value instanceof Date) return value.toISOString();
  const text = String(value).trim().replace(' ', 'T');
  const ms = Date.parse(/([zZ]|[+-]\d\d(:?\d\d)?)$/.test(text) ? text : `${text}Z`);
  return Number.isNaN(ms) ? String(value) : new Date(ms).toISOString();
}

const num = (value: unknown) => (value === null || value === undefined ? null : Number(value));

function toState(row: StateRow): WatermarkState {
  return {
    tenant: row.tenant_id,
    source: row.source_id,
    column: row.column_name,
    kind: row.kind,
    value: row.value,
    lastFullDiffAt: iso(row.last_full_diff_at),
    lastFullDiffFound: num(row.last_full_diff_found),
    lastKeyDiffAt: iso(row.last_key_diff_at),
    fullDiffAgeSeconds: num(row.full_age),
    keyDiffAgeSeconds: num(row.key_age),
  };
}

export async function readWatermark(db: Db, tenant: string, source: string): Promise<WatermarkState | null> {
  const rows = await db.query<StateRow>(`${selectSql(db)} WHERE tenant_id = ${db.param(1)} AND source_id = ${db.param(2)}`, [tenant, source]);
  return rows[0] ? toState(rows[0]) : null;
}

export async function listWatermarks(db: Db): Promise<WatermarkState[]> {
  return (await db.query<StateRow>(selectSql(db))).map(toState);
}

/**
 * The run's watermark, committed with the run's finish (`tx` is the fenced transaction). A full run also
 * records when it ran and what it found, and any full or keydiff run when deletes were last looked for.
 */
export async function recordWatermark(
  db: Db,
  tx: Queryable,
  row: { tenant: string; source: string; column: string; kind: WatermarkKind; value: string | null; runType: RunType; fullDiffFound?: number | null },
): Promise<void> {
  const full = row.runType === 'full' ? 1 : 0;
  const keys = row.runType === 'watermark' ? 0 : 1;
  const params = [row.tenant, row.source, row.column, row.kind, row.value, full, row.fullDiffFound ?? null, keys];
  if (db.dialect === 'postgres') {
    await tx.execute(
      `INSERT INTO cdc_watermarks AS w (tenant_id, source_id, column_name, kind, value, last_full_diff_at, last_full_diff_found, last_key_diff_at, updated_at)
       VALUES ($1, $2, $3, $4, $5, CASE WHEN $6::int = 1 THEN now() END, $7::bigint, CASE WHEN $8::int = 1 THEN now() END, now())
       ON CONFLICT (tenant_id, source_id) DO UPDATE SET
         column_name = EXCLUDED.column_name, kind = EXCLUDED.kind, value = EXCLUDED.value,
         last_full_diff_at = CASE WHEN $6::int = 1 THEN now() ELSE w.last_full_diff_at END,
         last_full_diff_found = CASE WHEN $6::int = 1 THEN $7::bigint ELSE w.last_full_diff_found END,
         last_key_diff_at = CASE WHEN $8::int = 1 THEN now() ELSE w.last_key_diff_at END,
         updated_at = now()`,
      params,
    );
    return;
  }
  // UPDLOCK + HOLDLOCK: the safe upsert without MERGE (as cdc_source_state's).
  await tx.execute(
    `UPDATE dbo.cdc_watermarks WITH (UPDLOCK, HOLDLOCK)
       SET column_name = @p3, kind = @p4, value = @p5,
           last_full_diff_at = CASE WHEN @p6 = 1 THEN SYSUTCDATETIME() ELSE last_full_diff_at END,
           last_full_diff_found = CASE WHEN @p6 = 1 THEN @p7 ELSE last_full_diff_found END,
           last_key_diff_at = CASE WHEN @p8 = 1 THEN SYSUTCDATETIME() ELSE last_key_diff_at END,
           updated_at = SYSUTCDATETIME()
     WHERE tenant_id = @p1 AND source_id = @p2;
     IF @@ROWCOUNT = 0
       INSERT INTO dbo.cdc_watermarks (tenant_id, source_id, column_name, kind, value, last_full_diff_at, last_full_diff_found, last_key_diff_at)
       VALUES (@p1, @p2, @p3, @p4, @p5, CASE WHEN @p6 = 1 THEN SYSUTCDATETIME() END, @p7, CASE WHEN @p8 = 1 THEN SYSUTCDATETIME() END);`,
    params,
  );
}

/** A watermark that can no longer be trusted (it went backwards, or its column changed), as an event beside the run. */
export async function recordWatermarkEvent(db: Db, event: { tenant: string; source: string; runId: string; kind: 'watermark_reset'; detail: Record<string, unknown> }): Promise<void> {
  await db.execute(
    `INSERT INTO cdc_events (tenant_id, source_id, run_id, kind, detail) VALUES (${db.param(1)}, ${db.param(2)}, ${db.param(3)}, ${db.param(4)}, ${db.param(5)})`,
    [event.tenant, event.source, event.runId, event.kind, JSON.stringify(event.detail)],
  );
}
