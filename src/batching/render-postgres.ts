/**
 * The push payload rendered by PostgreSQL (docs/design.md §10): one SQL expression per change that yields exactly the
 * bytes `encodeChange` (src/contract/wire.ts) produces in Node for the same row: same property order, same
 * value encoding (bigint and decimal as strings, timestamps as canonical text with every fractional digit of
 * the column's precision, bytea as base64 without line breaks, uuid lower-case, non-finite floats as strings,
 * floats spelt as JavaScript's Number#toString spells them). The rows then leave the server through a binary
 * COPY and Node only frames batches; no row is materialised as JavaScript values.
 *
 * test/batching/render.test.ts proves byte equality with the Node encoding on the every-type fixture.
 */
import type { ColumnSpec, Db } from '../dialect/types.ts';
import type { SourceSchema } from '../snapshot/schema.ts';

/** A JSON string literal of `name` as an SQL string literal. */
function jsonName(name: string): string {
  return sqlText(`${JSON.stringify(name)}:`);
}

function sqlText(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}

/**
 * A float (its shortest round-trip text `t`, PostgreSQL 12+ with extra_float_digits ≥ 1) respelt as JavaScript's
 * Number#toString: PostgreSQL writes scientific notation outside 1e-4 ≤ |x| < 1e15 (float8), JavaScript outside
 * 1e-7 ≤ |x| < 1e21, and JavaScript drops the exponent's leading zero. The shortest digits are the same.
 *
 * Plain string functions only: the respelling used to bind its regexp_match in a sub-SELECT, and the mere
 * presence of that correlated subplan in the entry made PostgreSQL's evaluation of the whole entry cost ≈ 1.7
 * CPU-s more per 1M rows (2.5 against 0.8 for the benchmark's 12-column row), though the branch rarely ran.
 * With `value` (a float8 column), values in PostgreSQL's plain range skip the checks and print once.
 */
function floatJson(t: string, value?: string): string {
  const mantissa = `split_part(${t}, 'e', 1)`;
  const e = `split_part(${t}, 'e', 2)::int`;
  const sign = `CASE WHEN left(${t}, 1) = '-' THEN '-' ELSE '' END`;
  // Every digit of the mantissa: its first, then the rest.
  const digits = `replace(ltrim(${mantissa}, '-'), '.', '')`;
  const sci =
    `CASE` +
    ` WHEN ${e} >= 21 OR ${e} <= -7 THEN ${sign} || left(${digits}, 1) || CASE WHEN length(${digits}) = 1 THEN '' ELSE '.' || substr(${digits}, 2) END` +
    ` || 'e' || CASE WHEN ${e} < 0 THEN '-' ELSE '+' END || abs(${e})::text` +
    ` WHEN ${e} >= 0 THEN CASE WHEN length(${digits}) <= ${e} + 1 THEN ${sign} || ${digits} || repeat('0', ${e} + 1 - length(${digits}))` +
    ` ELSE ${sign} || left(${digits}, ${e} + 1) || '.' || substr(${digits}, ${e} + 2) END` +
    ` ELSE ${sign} || '0.' || repeat('0', -${e} - 1) || ${digits} END`;
  // abs(NaN) compares above every number in PostgreSQL, so NaN and the infinities take the general branches.
  const plain = value === undefined ? '' : ` WHEN abs(${value}) >= 1e-4::float8 AND abs(${value}) < 1e15::float8 THEN ${t}`;
  return (
    `CASE${plain} WHEN ${t} IN ('NaN', 'Infinity', '-Infinity') THEN '"' || ${t} || '"'` +
    ` WHEN ${t} = '-0' THEN '0'` +
    ` WHEN strpos(${t}, 'e') = 0 THEN ${t} ELSE ${sci} END`
  );
}

/**
 * A timestamp as `YYYY-MM-DDTHH:MM:SS` plus `precision` fractional digits: one to_char with microseconds, with
 * the digits beyond the precision (and the point, at 0) cut off its end, so the year's width does not matter
 * (a second to_char for the fraction cost ≈ 0.35 s per 1M rows).
 */
function isoTimestamp(value: string, precision: number): string {
  const full = `to_char(${value}, 'YYYY-MM-DD"T"HH24:MI:SS.US')`;
  return precision === 6 ? full : `left(${full}, -${precision === 0 ? 7 : 6 - precision})`;
}

/** The JSON value of one column of the change table (never NULL: SQL NULL becomes `null`). */
export function jsonValue(db: Db, column: ColumnSpec, alias = ''): string {
  const q = `${alias}${db.quote(column.name)}`;
  const t = column.type;
  let value: string;
  switch (t.kind) {
    case 'boolean':
      value = `${q}::text`; // 'true' | 'false'
      break;
    case 'int16':
    case 'int32':
      value = `${q}::text`;
      break;
    case 'int64':
    case 'decimal':
    case 'uuid':
      value = `'"' || ${q}::text || '"'`;
      break;
    case 'float32':
      // float4's own output is its shortest round-trip digits, as shortestFloat32 in src/contract/wire.ts.
      value = floatJson(`${q}::text`);
      break;
    case 'float64':
      value = floatJson(`${q}::text`, q);
      break;
    case 'string':
      value = `to_json(${q}::text)::text`;
      break;
    case 'binary':
      value = `'"' || translate(encode(${q}, 'base64'), E'\\n', '') || '"'`;
      break;
    case 'date':
      value = `'"' || to_char(${q}, 'YYYY-MM-DD') || '"'`;
      break;
    case 'time':
      // time(p ≤ 6) prints HH:MM:SS[.digits without trailing zeros]; canonicalTime pads/cuts to p digits.
      value =
        t.precision <= 6
          ? `'"' || left(${q}::text, 8) || ${t.precision === 0 ? `''` : `'.' || left(rpad(substr(${q}::text, 10), ${t.precision}, '0'), ${t.precision})`} || '"'`
          : `to_json(${q}::text)::text`;
      break;
    case 'timestamp':
      value =
        t.precision <= 6
          ? `'"' || ${isoTimestamp(q, t.precision)} || '"'`
          : `to_json(${q}::text)::text`;
      break;
    case 'timestamptz':
      value =
        t.precision <= 6
          ? `'"' || ${isoTimestamp(`(${q} AT TIME ZONE 'UTC')`, t.precision)} || '+00:00"'`
          : `to_json(${q}::text)::text`;
      break;
  }
  return `COALESCE(${value}, 'null')`;
}

/**
 * The change entry of a change-table row: `{"op":"delete","key":{…}}` for op 'D' (key columns in key order),
 * else `{"op":"upsert","row":{…}}` with every column in schema order.
 *
 * Columns stored as text because PostgreSQL cannot hold their precision (time/timestamp with 7 digits) are
 * emitted as stored: the snapshot wrote them in canonical form (src/dialect/cells.ts).
 */
export function entrySql(db: Db, schema: SourceSchema): string {
  const byName = new Map(schema.columns.map((c) => [c.name, c]));
  const pairs = (columns: readonly ColumnSpec[]) => columns.map((c, i) => `${i === 0 ? '' : "',' || "}${jsonName(c.name)} || ${jsonValue(db, c)}`).join(' || ');
  const keys = schema.key.map((k) => byName.get(k)!);
  const op = `upper(trim(${db.quote('op')}))`;
  return (
    `CASE WHEN ${op} = 'D' THEN '{"op":"delete","key":{' || ${pairs(keys)} || '}}'` +
    ` ELSE '{"op":"upsert","row":{' || ${pairs(schema.columns)} || '}}' END`
  );
}
