/**
 * Watermark mode (docs/watermark.md): a source with a rowversion, number or datetime column that every insert
 * and update moves forward is read three ways, all with nothing but SELECT:
 *
 * - a **watermark** run reads only the rows past the last committed watermark, and diffs only those keys
 *   against staging (upserts only; an update that changed nothing the receiver holds sends nothing);
 * - a **keydiff** run does the same, and also reads every key (only the key columns), so that keys staging
 *   has and the source has not become deletes;
 * - a **full** run is the snapshot-diff of every other source; after any sequence of the other two it must
 *   find nothing to send, which `status` reports (`lastFullDiffFound`).
 *
 * The upper bound of each read is taken on the source before the read: `MIN_ACTIVE_ROWVERSION()` for a
 * rowversion (every row below it is committed, so rows of transactions still in flight are read next time),
 * the column's greatest value otherwise. The new watermark is recorded only in the transaction that finishes
 * the run, after every batch was acknowledged (src/agent/run-job.ts): a crash anywhere repeats work and loses
 * nothing (I1, I7).
 */
import type { SourceConfig } from '../config/schema.ts';
import type { Db, DialectName } from '../dialect/types.ts';
import type { NativeColumn } from '../snapshot/introspect.ts';
import { formatDurationMs } from '../config/duration.ts';
import { readWatermark } from './state.ts';
import { mssqlWatermark } from './source-mssql.ts';
import { postgresWatermark } from './source-postgres.ts';
import type { WatermarkState } from './state.ts';

/** How a watermark column is compared: rowversion bytes, integer values, or points in time. */
export type WatermarkKind = 'rowversion' | 'number' | 'time';

export type RunType = 'full' | 'watermark' | 'keydiff';

/** Datetime watermarks read back this far unless the source says otherwise. */
export const DEFAULT_OVERLAP_MS = 5 * 60_000;

export interface WatermarkColumn {
  name: string;
  kind: WatermarkKind;
  /** The source's own type name (`datetime2(7)`, `timestamp with time zone`), which the dialect casts bounds to. */
  nativeType: string;
  nullable: boolean;
  /** What a NULL in the column means: read at every watermark run, or left to full diffs. */
  nulls: 'read' | 'fullDiffOnly';
  /** Milliseconds each read of a datetime watermark starts before the last one (0 for the other kinds). */
  overlapMs: number;
}

/** The dialect's source-side statements for a watermark column (source-postgres.ts, source-mssql.ts). */
export interface WatermarkSql {
  /**
   * One row `{ hi, backward }`: the read's upper bound as the watermark's text (NULL when the source has no
   * value yet), and 1 when that bound is below `lo` (the watermark went backwards), else 0.
   */
  bound(db: Db, from: string, column: WatermarkColumn, lo: string | null): { sql: string; params: unknown[] };
  /** The condition for rows past `lo` up to `hi` (NULL `lo`: from the beginning), with its parameters. */
  delta(db: Db, column: WatermarkColumn, lo: string | null, hi: string | null): { where: string; params: unknown[] };
  /**
   * The same condition for a raw COPY, which takes no bind parameters: its values travel as settings of the
   * COPY's transaction (`Db.copyOut`), still bound as parameters. Absent where the source has no raw COPY.
   */
  copyDelta?(db: Db, column: WatermarkColumn, lo: string | null, hi: string | null): { where: string; settings: Record<string, string> };
}

export function watermarkSql(dialect: DialectName): WatermarkSql {
  return dialect === 'postgres' ? postgresWatermark : mssqlWatermark;
}

/** The kind a native column is compared as, or null when it cannot be a watermark. */
function kindOf(dialect: DialectName, native: NativeColumn): WatermarkKind | null {
  if (dialect === 'mssql' && /^(timestamp|rowversion)$/i.test(native.nativeType)) return 'rowversion';
  switch (native.spec.type.kind) {
    case 'int16':
    case 'int32':
    case 'int64':
      return 'number';
    case 'timestamp':
    case 'timestamptz':
      return 'time';
    default:
      return null;
  }
}

const USABLE: Record<DialectName, string> = {
  mssql: 'rowversion (timestamp), bigint, int, smallint, tinyint, datetime2, datetime, smalldatetime or datetimeoffset',
  postgres: 'bigint, integer, smallint, timestamp or timestamp with time zone',
};

/** The source's watermark column, or why it cannot be used (the run then falls back to a full diff). */
export function watermarkColumn(dialect: DialectName, natives: readonly NativeColumn[], source: SourceConfig): WatermarkColumn | { problem: string } {
  const config = source.watermark;
  if (!config) return { problem: 'the source has no watermark' };
  const native = natives.find((c) => c.spec.name === config.column);
  if (!native) {
    return { problem: `watermark column ${JSON.stringify(config.column)} does not exist at the source (its columns: ${natives.map((c) => c.spec.name).join(', ')})` };
  }
  const kind = kindOf(dialect, native);
  if (kind === null) {
    return { problem: `watermark column ${JSON.stringify(config.column)} is ${native.nativeType}; a watermark must be ${USABLE[dialect]}` };
  }
  if (native.spec.nullable && config.nulls === undefined) {
    return {
      problem:
        `watermark column ${JSON.stringify(config.column)} is nullable; say how its NULLs are treated with watermark.nulls: read (read them at every run) ` +
        'or fullDiffOnly (only full diffs see them)',
    };
  }
  if (config.overlap !== undefined && kind !== 'time') {
    return { problem: `watermark.overlap applies to datetime watermarks only; ${JSON.stringify(config.column)} is ${native.nativeType}` };
  }
  return {
    name: native.spec.name,
    kind,
    nativeType: native.nativeType,
    nullable: native.spec.nullable,
    nulls: config.nulls ?? 'read',
    overlapMs: kind === 'time' ? (config.overlap ?? DEFAULT_OVERLAP_MS) : 0,
  };
}

/** An age as `45s`, `12m`, `2h10m`, `3d4h`. */
function ageText(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(s / 86_400)}d${Math.floor((s % 86_400) / 3600)}h`;
}

export interface RunChoice {
  type: RunType;
  /** Why, in the operator's words (shown by `status`, `plan` and the run's log line). */
  reason: string;
  /** Set when a watermark source falls back to a full diff for a reason the operator must hear about (an event). */
  fallback?: string;
}

/**
 * Which kind of run a source's next run is, from its history. `mode` is the push mode the run was given
 * (only an incremental run may read less than everything); `drift` is set when the schema changed.
 */
export function chooseRunType(args: {
  source: SourceConfig;
  mode: 'initial' | 'incremental' | 'resync';
  drift: boolean;
  column: WatermarkColumn | { problem: string } | null;
  state: WatermarkState | null;
}): RunChoice {
  const { source, mode, drift, column, state } = args;
  const config = source.watermark;
  if (!config) return { type: 'full', reason: 'the source has no watermark' };
  if (mode === 'initial') return { type: 'full', reason: 'the first run of a source reads every row' };
  if (mode === 'resync') return { type: 'full', reason: 'a resync re-sends every row' };
  if (drift) return { type: 'full', reason: 'the schema changed at the source' };
  if (column === null || 'problem' in column) {
    const problem = column === null ? 'the watermark column cannot be read' : column.problem;
    return { type: 'full', reason: `${problem}; a full diff instead`, fallback: problem };
  }
  if (!state) return { type: 'full', reason: 'no watermark is recorded yet' };
  if (state.column !== column.name || state.kind !== column.kind) {
    const why = `the watermark column changed from ${JSON.stringify(state.column)} (${state.kind}) to ${JSON.stringify(column.name)} (${column.kind})`;
    return { type: 'full', reason: `${why}; a full diff records the new one`, fallback: why };
  }
  const age = (seconds: number | null) => (seconds === null ? 'never' : `${ageText(seconds)} ago`);
  if (state.fullDiffAgeSeconds === null || state.fullDiffAgeSeconds * 1000 >= config.fullDiffEvery) {
    return { type: 'full', reason: `the last full diff was ${age(state.fullDiffAgeSeconds)} (fullDiffEvery ${formatDurationMs(config.fullDiffEvery)})` };
  }
  if (state.keyDiffAgeSeconds === null || state.keyDiffAgeSeconds * 1000 >= config.keyDiffEvery) {
    return { type: 'keydiff', reason: `deletes were last looked for ${age(state.keyDiffAgeSeconds)} (keyDiffEvery ${formatDurationMs(config.keyDiffEvery)})` };
  }
  return { type: 'watermark', reason: state.value === null ? `rows of ${column.name} from the beginning (the source was empty)` : `rows past ${column.name} ${state.value}` };
}

/** What a run reads, decided before it reads anything, and the watermark it commits when it finishes. */
export interface ReadPlan extends RunChoice {
  /** Absent for a source without a usable watermark. */
  watermark?: {
    column: string;
    kind: WatermarkKind;
    /** The committed watermark the read starts after (null: from the beginning). */
    from: string | null;
    /** The watermark committed with the run's finish. */
    to: string | null;
    /** Whether a watermark of this column was recorded before: a full diff then checks the watermark runs' work. */
    checksHistory: boolean;
  };
  /** The condition of a watermark or keydiff run's read; `copy` is the same for a raw COPY, where the source has one. */
  delta?: { where: string; params: unknown[]; copy?: { where: string; settings: Record<string, string> } };
}

/**
 * Choose the run's type from the source's history (chooseRunType) and take the read's upper bound on the source.
 * A watermark found to have gone backwards (a restore from backup) turns the run into a full diff.
 */
export async function planRead(args: {
  sourceDb: Db;
  controlDb: Db;
  tenant: string;
  source: SourceConfig;
  described: { from: string; natives: readonly NativeColumn[] };
  mode: 'initial' | 'incremental' | 'resync';
  drift: boolean;
}): Promise<ReadPlan> {
  const { sourceDb, controlDb, tenant, source, described, mode, drift } = args;
  if (!source.watermark) return { type: 'full', reason: 'the source has no watermark' };
  const column = watermarkColumn(sourceDb.dialect, described.natives, source);
  const state = await readWatermark(controlDb, tenant, source.id);
  let choice = chooseRunType({ source, mode, drift, column, state });
  if ('problem' in column) return choice;
  const sql = watermarkSql(sourceDb.dialect);
  const checksHistory = state !== null && state.column === column.name && state.kind === column.kind;
  const lo = choice.type === 'full' ? null : (state?.value ?? null);
  const bound = sql.bound(sourceDb, described.from, column, lo);
  const [row] = await sourceDb.query<{ hi: string | null; backward: number | boolean | null }>(bound.sql, bound.params);
  const hi = row?.hi ?? null;
  if (choice.type !== 'full' && Number(row?.backward ?? 0) === 1) {
    const why = `the watermark went backwards: ${column.name} is now at most ${hi} at the source, below the ${lo} already read (a restore from backup?)`;
    choice = { type: 'full', reason: `${why}; a full diff instead`, fallback: why };
  }
  // A number or time watermark is the greatest value read; an empty read keeps the one before.
  const to = column.kind === 'rowversion' ? hi : (hi ?? (choice.type === 'full' ? null : lo));
  const watermark = { column: column.name, kind: column.kind, from: choice.type === 'full' ? null : lo, to, checksHistory };
  if (choice.type === 'full') return { ...choice, watermark };
  const copy = sql.copyDelta?.(sourceDb, column, lo, hi);
  return { ...choice, watermark, delta: { ...sql.delta(sourceDb, column, lo, hi), ...(copy ? { copy } : {}) } };
}
