/**
 * SQL Server source side of watermark mode (watermark.ts).
 *
 * - rowversion: the read's upper bound is MIN_ACTIVE_ROWVERSION(), the lowest rowversion of a transaction not
 *   yet committed (@@DBTS + 1 when none is active), so every row below it is committed; the bound is exclusive
 *   and becomes the next read's inclusive lower bound. Values travel as binary style 1 text (`0x` + 16 hex
 *   digits) and are compared as binary(8), byte by byte, which is rowversion's order.
 * - number: bigint text, compared after CAST AS bigint.
 * - time: style 121 text (`yyyy-mm-dd hh:mi:ss.fffffff`, with ` +hh:mi` for datetimeoffset), converted back
 *   to the column's own type so that the comparison never converts the column (and an index on it is used).
 */
import type { WatermarkColumn, WatermarkSql } from './watermark.ts';

function typed(column: WatermarkColumn, param: string): string {
  switch (column.kind) {
    case 'rowversion':
      return `CONVERT(binary(8), ${param}, 1)`;
    case 'number':
      return `CAST(${param} AS bigint)`;
    case 'time':
      return `CONVERT(${column.nativeType}, ${param}, 121)`;
  }
}

export const mssqlWatermark: WatermarkSql = {
  bound(db, from, column, lo) {
    if (column.kind === 'rowversion') {
      return {
        sql: `SELECT CONVERT(varchar(18), MIN_ACTIVE_ROWVERSION(), 1) AS hi, CASE WHEN @p1 IS NOT NULL AND MIN_ACTIVE_ROWVERSION() < ${typed(column, '@p1')} THEN 1 ELSE 0 END AS backward`,
        params: [lo],
      };
    }
    const q = db.quote(column.name);
    const hi = column.kind === 'number' ? `CONVERT(varchar(20), MAX(${q}))` : `CONVERT(varchar(40), MAX(${q}), 121)`;
    return {
      sql: `SELECT ${hi} AS hi, CASE WHEN @p1 IS NOT NULL AND MAX(${q}) < ${typed(column, '@p1')} THEN 1 ELSE 0 END AS backward FROM ${from}`,
      params: [lo],
    };
  },

  delta(db, column, lo, hi) {
    const q = db.quote(column.name);
    const params: unknown[] = [];
    const p = (value: unknown) => {
      params.push(value);
      return `@p${params.length}`;
    };
    const conditions: string[] = [];
    if (hi === null) conditions.push('1 = 0');
    else if (column.kind === 'rowversion') {
      if (lo !== null) conditions.push(`${q} >= ${typed(column, p(lo))}`);
      conditions.push(`${q} < ${typed(column, p(hi))}`);
    } else {
      if (lo !== null) {
        const from = typed(column, p(lo));
        conditions.push(column.overlapMs > 0 ? `${q} > DATEADD(millisecond, -${p(column.overlapMs)}, ${from})` : `${q} > ${from}`);
      }
      conditions.push(`${q} <= ${typed(column, p(hi))}`);
    }
    const range = conditions.join(' AND ');
    return { where: column.nullable && column.nulls === 'read' ? `((${range}) OR ${q} IS NULL)` : range, params };
  },
};
