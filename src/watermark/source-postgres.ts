/**
 * PostgreSQL source side of watermark mode (watermark.ts). Bounds travel as text in a fixed ISO form
 * (to_char), independent of the session's DateStyle and TimeZone, and come back as typed parameters.
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
    const q = db.quote(column.name);
    const t = castType(column);
    const params: unknown[] = [];
    const p = (value: unknown) => {
      params.push(value);
      return `$${params.length}`;
    };
    const conditions: string[] = [];
    if (hi === null) conditions.push('FALSE');
    else {
      if (lo !== null) {
        conditions.push(column.overlapMs > 0 ? `${q} > ${p(lo)}::${t} - ${p(column.overlapMs)}::bigint * interval '1 millisecond'` : `${q} > ${p(lo)}::${t}`);
      }
      conditions.push(`${q} <= ${p(hi)}::${t}`);
    }
    const range = conditions.join(' AND ');
    return { where: column.nullable && column.nulls === 'read' ? `((${range}) OR ${q} IS NULL)` : range, params };
  },
};
