/**
 * PostgreSQL source side of watermark mode (watermark.ts). Bounds travel as text in a fixed ISO form
 * (to_char), independent of the session's DateStyle and TimeZone, and come back as typed parameters, or, for
 * the delta's binary COPY, as settings of the COPY's transaction that the condition reads (`copyDelta`).
 */
import type { Db } from '../dialect/types.ts';
import type { WatermarkColumn, WatermarkSql } from './watermark.ts';

function castType(column: WatermarkColumn): string {
  if (column.kind === 'number') return 'bigint';
  return /with time zone/.test(column.nativeType) ? 'timestamptz' : 'timestamp';
}

/** The column's greatest value as the watermark's text. */
function maxText(db: Db, column: WatermarkColumn): string {
  const q = db.quote(column.name);
  if (column.kind === 'number') return `max(${q})::text`;
  return castType(column) === 'timestamptz'
    ? `to_char(max(${q}) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')`
    : `to_char(max(${q}), 'YYYY-MM-DD"T"HH24:MI:SS.US')`;
}

export const postgresWatermark: WatermarkSql = {
  bound(db, from, column, lo) {
    if (column.kind === 'rowversion') throw new Error('PostgreSQL has no rowversion watermark');
    const q = db.quote(column.name);
    const t = castType(column);
    return {
      sql: `SELECT ${maxText(db, column)} AS hi, CASE WHEN $1::${t} IS NOT NULL AND max(${q}) < $1::${t} THEN 1 ELSE 0 END AS backward FROM ${from}`,
      params: [lo],
    };
  },

  delta(db, column, lo, hi) {
    const params: unknown[] = [];
    const where = deltaWhere(db, column, lo, hi, (value) => {
      params.push(value);
      return `$${params.length}`;
    });
    return { where, params };
  },

  copyDelta(db, column, lo, hi) {
    const settings: Record<string, string> = {};
    const where = deltaWhere(db, column, lo, hi, (value) => {
      const name = `cdc_sync.v${Object.keys(settings).length + 1}`;
      settings[name] = String(value);
      return `current_setting('${name}')`;
    });
    return { where, settings };
  },
};

/**
 * The delta's condition, each value spelt by `value` (a bind parameter, or a setting that a COPY reads: COPY
 * takes no parameters); each is cast to the column's type, so both spellings compare the same.
 */
function deltaWhere(db: Db, column: WatermarkColumn, lo: string | null, hi: string | null, value: (v: string | number) => string): string {
  const q = db.quote(column.name);
  const t = castType(column);
  const conditions: string[] = [];
  if (hi === null) conditions.push('FALSE');
  else {
    if (lo !== null) {
      conditions.push(column.overlapMs > 0 ? `${q} > ${value(lo)}::${t} - ${value(column.overlapMs)}::bigint * interval '1 millisecond'` : `${q} > ${value(lo)}::${t}`);
    }
    conditions.push(`${q} <= ${value(hi)}::${t}`);
  }
  const range = conditions.join(' AND ');
  return column.nullable && column.nulls === 'read' ? `((${range}) OR ${q} IS NULL)` : range;
}
