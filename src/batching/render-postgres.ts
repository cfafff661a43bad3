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
 * A float (its shortest round-trip text `t`, PostgreSQL 12+ with extra_float_digits ≥ 1) respelt as JavaScript
 * spells it (Number#toString, and for float32 `shortestFloat32` in src/contract/wire.ts): PostgreSQL writes
 * scientific notation outside 1e-4 ≤ |x| < 1e15 (float8; 1e6 for float4), JavaScript outside 1e-7 ≤ |x| < 1e21,
 * and JavaScript drops the exponent's leading zero.
 *
 * The digits are PostgreSQL's (Ryu's) shortest but for two rare cases, where JavaScript's differ:
 * - Ryu leaves out a bound of the rounding interval that JavaScript takes: a value of ≥ 2^53 (float8) or ≥ 2^24
 *   (float4), whose interval's bound is an integer, can read back from one digit fewer than Ryu gives
 *   (4.0919270273950384e+16 is 40919270273950380 in JavaScript), about 0.3 % of random float8 bit patterns.
 * - A float4 exactly halfway between two shortest candidates (3516931.25): Ryu takes the even one (3516931.2),
 *   `toPrecision` the larger in magnitude (3516931.3).
 * Both are caught by cheap guards, so their checks run for those values only.
 *
 * Plain string functions only: the respelling used to bind its regexp_match in a sub-SELECT, and the mere
 * presence of that correlated subplan in the entry made PostgreSQL's evaluation of the whole entry cost ≈ 1.7
 * CPU-s more per 1M rows (2.5 against 0.8 for the benchmark's 12-column row), though the branch rarely ran.
 * Values of float8 in PostgreSQL's plain range skip the checks and print once.
 */
function floatJson(q: string, kind: 'float32' | 'float64'): string {
  const t = `${q}::text`;
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
  const type = kind === 'float64' ? 'float8' : 'float4';
  // The interval's bound: Ryu's digits less their last, truncated (lo) or one up (hi), whichever reads back as
  // the value; these values are integers in scientific notation, so the digits and exponent come straight off t.
  const n = `length(${digits})`;
  const scale = `${e} - ${n} + 2`;
  const lo = `left(${digits}, ${n} - 1)`;
  const hi = `(${lo}::bigint + 1)::text`;
  // A candidate past the type's largest value would make the cast fail (hi, at the largest value itself).
  const largest = kind === 'float64' ? '1.7976931348623157e308' : '3.4028235e38';
  const candidate = (c: string) => `(${c} || 'e' || (${scale})::text)`;
  const readsBack = (c: string) =>
    `CASE WHEN ${candidate(c)}::numeric > ${largest}::numeric THEN false ELSE (${sign} || ${candidate(c)})::${type} = ${q} END`;
  // A candidate's digits c, exponent scale, spelt as JavaScript spells an integer of them.
  const integer = (c: string) => {
    const trimmed = `rtrim(${c}, '0')`;
    const exp = `(${scale} + length(${c}) - 1)`;
    return (
      `${sign} || CASE WHEN ${exp} < 21 THEN ${trimmed} || repeat('0', ${exp} + 1 - length(${trimmed}))` +
      ` ELSE left(${trimmed}, 1) || CASE WHEN length(${trimmed}) = 1 THEN '' ELSE '.' || substr(${trimmed}, 2) END || 'e+' || ${exp}::text END`
    );
  };
  // 2^53 and 2^24: from there on every value is an integer whose interval's bounds are integers too.
  const bound = `abs(${q}) >= ${kind === 'float64' ? '9007199254740992::float8' : '16777216::float4'} AND ${n} > 1`;
  const boundCase = ` WHEN ${bound} AND ${readsBack(lo)} THEN ${integer(lo)} WHEN ${bound} AND ${readsBack(hi)} THEN ${integer(hi)}`;
  // A float4 tie: its exact value x (as float8 text: at most 10 digits, the last a 5 after the point) lies
  // halfway between Ryu's digits (x truncated by one digit) and x rounded half away from zero, which also reads
  // back; JavaScript takes the latter. Ryu's digits must end in a non-zero digit, else they are shorter still.
  let tieCase = '';
  if (kind === 'float32') {
    const x = `${q}::float8::text`;
    const places = `length(split_part(${x}, '.', 2)) - 1`;
    const down = `trunc(${x}::numeric, ${places})`;
    const up = `round(${x}::numeric, ${places})`;
    tieCase =
      ` WHEN right(${x}, 1) = '5' AND length(${x}) <= 12 AND strpos(${x}, '.') > 0 AND strpos(${x}, 'e') = 0` +
      ` AND ${t}::numeric = ${down} AND right(${down}::text, 1) <> '0' AND ${up}::float4 = ${q} THEN ${up}::text`;
  }
  // abs(NaN) compares above every number in PostgreSQL, so NaN and the infinities take the general branches.
  const plain = kind === 'float64' ? ` WHEN abs(${q}) >= 1e-4::float8 AND abs(${q}) < 1e15::float8 THEN ${t}` : '';
  return (
    `CASE${plain} WHEN ${t} IN ('NaN', 'Infinity', '-Infinity') THEN '"' || ${t} || '"'` +
    ` WHEN ${t} = '-0' THEN '0'${boundCase}${tieCase}` +
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
      value = floatJson(q, 'float32');
      break;
    case 'float64':
      value = floatJson(q, 'float64');
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
