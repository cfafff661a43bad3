/**
 * The reference receiver's fast path: a batch body in the agent's compact framing, validated and staged straight
 * from its bytes, without parsing it into objects. The header (everything before `"changes"`) is parsed and
 * validated as usual; the changes are scanned once, every value checked against its column's type in place, and
 * each change written as its staging COPY line (staged.ts) on the way.
 *
 * The rule that keeps it honest: it accepts only bodies that the full path (JSON.parse, the JSON schema,
 * `batchProblems`) accepts, and stages them byte for byte as `stageParsed` would. Anything it is not sure of
 * (whitespace, another member order, an unusual spelling, a value it would refuse, a repeated key) makes it give
 * way: it returns undefined and the full path decides, with its reasons. test/receiver/scan.test.ts checks the
 * rule against the full path on the agent's bodies and on mutations of them.
 */
import { isUtf8 } from 'node:buffer';
import type { WireColumn } from '../contract/wire.ts';
import { CopyChunks, copyText, type BatchHeader, type BufferPool, type StagedBatch } from './staged.ts';
import { INT_RANGE, schemaProblems, valueProblem } from './validate.ts';

const CHANGES = Buffer.from('"changes":[');
const UPSERT = Buffer.from('{"op":"upsert","row":{');
const DELETE = Buffer.from('{"op":"delete","key":{');
const NAN = Buffer.from('"NaN"');
const INFINITY = Buffer.from('"Infinity"');
const MINUS_INFINITY = Buffer.from('"-Infinity"');
/** The strings a float column may hold instead of a number. */
const NON_FINITE = [NAN, INFINITY, MINUS_INFINITY];
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN = 0x7b;
const CLOSE = 0x7d;
const COMMA = 0x2c;
const CLOSE_ARRAY = 0x5d;
const MINUS = 0x2d;
const TAB = 0x09;
/** 1 for the bytes of lower-case hexadecimal digits. */
const HEX = new Uint8Array(256);
for (const c of '0123456789abcdef') HEX[c.charCodeAt(0)] = 1;
const NEWLINE = 0x0a;

/** How a column's values are checked; the kinds without a byte check of their own decode and ask `valueProblem`. */
const Check = { String: 0, Int64: 1, Int32: 2, Decimal: 3, Float: 4, Boolean: 5, Uuid: 6, Date: 7, Temporal: 8, Other: 9 } as const;
type Check = (typeof Check)[keyof typeof Check];

interface Plan {
  column: WireColumn;
  check: Check;
  nullable: boolean;
  isKey: boolean;
  maxLength: number;
  /** decimal: digits allowed before and after the point. */
  intDigits: number;
  scale: number;
  /** time, timestamp, timestamptz: fractional digits, and which of the three. */
  precision: number;
  temporal: 'time' | 'timestamp' | 'timestamptz';
  /** int16, int32: the range. */
  min: number;
  max: number;
}

/** What scanning a value found beyond where it ends. */
interface ValueState {
  /** The value is spelt as `JSON.stringify` of it would be (no escapes, canonical numbers). */
  canonical: boolean;
  /** A string holding escapes: its decoded value is in `decoded`. */
  escaped: boolean;
  decoded: string;
}

function planOf(column: WireColumn, keys: readonly string[]): Plan {
  const isKey = keys.includes(column.name);
  const check =
    column.type === 'string'
      ? Check.String
      : column.type === 'int64'
        ? Check.Int64
        : column.type === 'int16' || column.type === 'int32'
          ? Check.Int32
          : column.type === 'decimal'
            ? Check.Decimal
            : column.type === 'float32' || column.type === 'float64'
              ? Check.Float
              : column.type === 'boolean'
                ? Check.Boolean
                : column.type === 'uuid'
                  ? Check.Uuid
                  : column.type === 'date'
                    ? Check.Date
                    : column.type === 'time' || column.type === 'timestamp' || column.type === 'timestamptz'
                      ? Check.Temporal
                      : Check.Other;
  return {
    column,
    check,
    // Key columns are NOT NULL whatever the schema says (as in batchProblems).
    nullable: column.nullable && !isKey,
    isKey,
    maxLength: column.maxLength ?? Infinity,
    intDigits: (column.precision ?? 0) - (column.scale ?? 0),
    scale: column.scale ?? 0,
    precision: column.precision ?? 0,
    temporal: column.type === 'time' || column.type === 'timestamptz' ? column.type : 'timestamp',
    min: INT_RANGE[column.type === 'int16' ? 'int16' : 'int32'][0],
    max: INT_RANGE[column.type === 'int16' ? 'int16' : 'int32'][1],
  };
}

function matches(raw: Buffer, at: number, bytes: Buffer): boolean {
  if (at + bytes.length > raw.length) return false;
  for (let i = 0; i < bytes.length; i++) if (raw[at + i] !== bytes[i]) return false;
  return true;
}

function isDigit(b: number | undefined): boolean {
  return b !== undefined && b >= 0x30 && b <= 0x39;
}

/** `n` digits at `at`. */
function digits(raw: Buffer, at: number, n: number): boolean {
  for (let i = 0; i < n; i++) if (!isDigit(raw[at + i])) return false;
  return true;
}

/** The index past a JSON string starting at `at` (a quote), or -1; notes escapes in `state`. */
function stringEnd(raw: Buffer, at: number, state: ValueState): number {
  const n = raw.length;
  let i = at + 1;
  while (i < n) {
    const b = raw[i]!;
    if (b === QUOTE) return i + 1;
    if (b === BACKSLASH) {
      state.escaped = true;
      i += 2;
    } else if (b < 0x20) {
      return -1; // JSON allows no raw control character in a string
    } else {
      i++;
    }
  }
  return -1;
}

/** The value of the decimal digits `raw[from, to)` (at most 15 of them, so exact). */
function digitsValue(raw: Buffer, from: number, to: number): number {
  let n = 0;
  for (let i = from; i < to; i++) n = n * 10 + raw[i]! - 0x30;
  return n;
}

/** A string's value as JSON.parse gives it (escapes decoded), or undefined when its escapes are not valid JSON. */
function decodeString(raw: Buffer, at: number, end: number): string | undefined {
  try {
    const value: unknown = JSON.parse(raw.toString('utf8', at, end));
    return typeof value === 'string' ? value : undefined;
  } catch {
    return undefined;
  }
}

/** UTF-16 code units of the valid UTF-8 in `raw[from, to)`: JavaScript's string length. */
function utf16Length(raw: Buffer, from: number, to: number): number {
  let n = 0;
  for (let i = from; i < to; i++) {
    const b = raw[i]!;
    if ((b & 0xc0) !== 0x80) n += b >= 0xf0 ? 2 : 1;
  }
  return n;
}

/** The index past `-?\d{4,}-\d{2}-\d{2}` at `at`, or -1. */
function dateEnd(raw: Buffer, at: number): number {
  let i = raw[at] === MINUS ? at + 1 : at;
  const from = i;
  while (isDigit(raw[i])) i++;
  if (i - from < 4 || raw[i] !== MINUS || !digits(raw, i + 1, 2) || raw[i + 3] !== MINUS || !digits(raw, i + 4, 2)) return -1;
  return i + 6;
}

/** The index past `\d{2}:\d{2}:\d{2}` and exactly `precision` fractional digits at `at`, or -1. */
function clockEnd(raw: Buffer, at: number, precision: number): number {
  if (!digits(raw, at, 2) || raw[at + 2] !== 0x3a || !digits(raw, at + 3, 2) || raw[at + 5] !== 0x3a || !digits(raw, at + 6, 2)) return -1;
  if (precision === 0) return at + 8;
  return raw[at + 8] === 0x2e && digits(raw, at + 9, precision) ? at + 9 + precision : -1;
}

/** The index past a time, timestamp or timestamptz (validate.ts's patterns) at `at`, or -1. */
function temporalEnd(raw: Buffer, at: number, plan: Plan): number {
  if (plan.temporal === 'time') return clockEnd(raw, at, plan.precision);
  const date = dateEnd(raw, at);
  if (date < 0 || raw[date] !== 0x54) return -1;
  const clock = clockEnd(raw, date + 1, plan.precision);
  if (clock < 0 || plan.temporal === 'timestamp') return clock;
  const sign = raw[clock];
  return (sign === 0x2b || sign === MINUS) && digits(raw, clock + 1, 2) && raw[clock + 3] === 0x3a && digits(raw, clock + 4, 2) ? clock + 6 : -1;
}

/** The index past a JSON number at `at` (JSON's grammar exactly), or -1; notes a spelling JSON.stringify would change. */
function numberEnd(raw: Buffer, at: number, state: ValueState): number {
  let i = raw[at] === MINUS ? at + 1 : at;
  let plain = true;
  let exponent = false;
  if (raw[i] === 0x30) i++;
  else if (isDigit(raw[i])) while (isDigit(raw[i])) i++;
  else return -1;
  if (raw[i] === 0x2e) {
    i++;
    if (!isDigit(raw[i])) return -1;
    while (isDigit(raw[i])) i++;
    plain = false;
  }
  if (raw[i] === 0x65 || raw[i] === 0x45) {
    i++;
    if (raw[i] === 0x2b || raw[i] === MINUS) i++;
    if (!isDigit(raw[i])) return -1;
    while (isDigit(raw[i])) i++;
    plain = false;
    exponent = true;
  }
  if (!plain || i - at > 15 || (i - at === 2 && raw[at] === MINUS && raw[at + 1] === 0x30)) {
    if (exponent || !shortestFixed(raw, at, i)) {
      const token = raw.toString('latin1', at, i);
      if (String(Number(token)) !== token) state.canonical = false;
    }
  }
  return i;
}

/**
 * Whether the number `raw[from, to)` (JSON's grammar, no exponent) is surely spelt as JavaScript spells it, without
 * converting it: at most 15 significant digits (so no shorter decimal reads back as the same
 * double), no trailing fractional zero, not -0, and in the range JavaScript writes without an exponent.
 * False means "convert and compare", not "not canonical".
 */
function shortestFixed(raw: Buffer, from: number, to: number): boolean {
  let i = raw[from] === MINUS ? from + 1 : from;
  const intFrom = i;
  while (i < to && isDigit(raw[i])) i++;
  const intDigits = i - intFrom;
  if (i === to) return intDigits <= 15 && !(raw[intFrom] === 0x30 && raw[from] === MINUS);
  if (raw[i] !== 0x2e || raw[to - 1] === 0x30) return false;
  const fraction = to - i - 1;
  if (raw[intFrom] !== 0x30) return intDigits + fraction <= 15;
  // 0.000ddd: JavaScript writes an exponent below 1e-6.
  let zeros = 0;
  while (raw[i + 1 + zeros] === 0x30) zeros++;
  return zeros <= 5 && fraction - zeros <= 15;
}

/**
 * The index past the value at `at` if the full path would accept it for this column, else -1. A value it
 * would accept but store spelt differently clears `state.canonical`.
 */
function valueEnd(raw: Buffer, at: number, plan: Plan, state: ValueState): number {
  const first = raw[at];
  if (first === 0x6e) return plan.nullable && raw[at + 1] === 0x75 && raw[at + 2] === 0x6c && raw[at + 3] === 0x6c ? at + 4 : -1;
  switch (plan.check) {
    case Check.Boolean:
      if (first === 0x74) return raw[at + 1] === 0x72 && raw[at + 2] === 0x75 && raw[at + 3] === 0x65 ? at + 4 : -1;
      if (first === 0x66) return raw[at + 1] === 0x61 && raw[at + 2] === 0x6c && raw[at + 3] === 0x73 && raw[at + 4] === 0x65 ? at + 5 : -1;
      return -1;
    case Check.Int32: {
      // -?(0|[1-9]\d*) in range; any other spelling (-0, 5.0, 5e0) gives way.
      let i = first === MINUS ? at + 1 : at;
      const from = i;
      let n = 0;
      if (raw[i] === 0x30) i++;
      else
        while (isDigit(raw[i])) {
          n = n * 10 + raw[i]! - 0x30;
          i++;
        }
      if (i === from || i - from > 10 || (raw[from] === 0x30 && first === MINUS)) return -1;
      if (first === MINUS) n = -n;
      return n >= plan.min && n <= plan.max ? i : -1;
    }
    case Check.Float: {
      if (first === QUOTE) {
        for (const word of NON_FINITE) if (matches(raw, at, word)) return at + word.length;
        return -1;
      }
      const end = numberEnd(raw, at, state);
      return end >= 0 && plan.isKey && !state.canonical ? -1 : end;
    }
    default:
      break;
  }
  // The rest travel as strings.
  if (first !== QUOTE) return -1;
  const end = stringEnd(raw, at, state);
  if (end < 0) return -1;
  if (state.escaped) {
    // Only plain text columns take escapes here; the decoded value gets the full check.
    const decoded = plan.check === Check.String ? decodeString(raw, at, end) : undefined;
    if (decoded === undefined || valueProblem(decoded, plan.column) !== null) return -1;
    state.decoded = decoded;
    state.canonical = false;
    return end;
  }
  const from = at + 1;
  const to = end - 1;
  switch (plan.check) {
    case Check.String:
      return to - from <= plan.maxLength || utf16Length(raw, from, to) <= plan.maxLength ? end : -1;
    case Check.Int64: {
      // -?(0|[1-9]\d{0,18}); 19 digits are checked against the range exactly.
      const d = raw[from] === MINUS ? from + 1 : from;
      if (d === to || !digits(raw, d, to - d) || (raw[d] === 0x30 && to - d > 1) || to - d > 19) return -1;
      if (to - d === 19 && valueProblem(raw.toString('latin1', from, to), plan.column) !== null) return -1;
      return end;
    }
    case Check.Decimal: {
      // -?(\d+)(\.\d+)? within the column's digits; leading zeros beyond them give way to the exact check.
      let i = raw[from] === MINUS ? from + 1 : from;
      const intFrom = i;
      while (isDigit(raw[i])) i++;
      const intDigits = i - intFrom;
      if (intDigits === 0 || intDigits > plan.intDigits) return -1;
      if (i === to) return end;
      if (raw[i] !== 0x2e) return -1;
      const fraction = to - i - 1;
      return fraction >= 1 && fraction <= plan.scale && digits(raw, i + 1, fraction) ? end : -1;
    }
    case Check.Uuid: {
      if (to - from !== 36) return -1;
      if (raw[from + 8] !== MINUS || raw[from + 13] !== MINUS || raw[from + 18] !== MINUS || raw[from + 23] !== MINUS) return -1;
      for (let i = 0; i < 36; i++) if (HEX[raw[from + i]!] === 0 && i !== 8 && i !== 13 && i !== 18 && i !== 23) return -1;
      return end;
    }
    case Check.Date:
      return dateEnd(raw, from) === to ? end : -1;
    case Check.Temporal:
      return temporalEnd(raw, from, plan) === to ? end : -1;
    default:
      return valueProblem(raw.toString('utf8', from, to), plan.column) === null ? end : -1;
  }
}

/** The members of a row or key object: each name's bytes (with the comma before every member but the first) and plan. */
function members(plans: readonly Plan[]): { names: Buffer[]; plans: readonly Plan[] } {
  return { names: plans.map((p, i) => Buffer.from(`${i > 0 ? ',' : ''}${JSON.stringify(p.column.name)}:`)), plans };
}

/** A name JSON.parse files before the others (an array index), so that `JSON.stringify` of a parsed row reorders it. */
function reorders(name: string): boolean {
  return /^(0|[1-9]\d{0,9})$/.test(name) && Number(name) < 2 ** 32 - 1;
}

/**
 * The staged batch of `raw` when it is in the agent's compact framing and valid, else undefined (the full path
 * then parses and judges it). `headerValid` is the batch JSON schema without `changes` (validate.ts).
 */
export function scanBatch(raw: Buffer, headerValid: (header: unknown) => boolean, pool?: BufferPool): StagedBatch | undefined {
  // The lines are written into one buffer from `pool`, rarely grown: room for the entries they come from.
  const room = raw.length + 4096;
  const first = pool?.take(room);
  const staged = scan(raw, headerValid, new CopyChunks(room, first));
  if (!staged) {
    if (first) pool!.give(first); // nothing refers to it once the scan gave way
    return undefined;
  }
  const { batch, buffer } = staged;
  return pool ? { ...batch, release: () => pool.give(buffer) } : batch;
}

function scan(raw: Buffer, headerValid: (header: unknown) => boolean, chunks: CopyChunks): { batch: StagedBatch; buffer: Buffer } | undefined {
  if (raw[0] !== OPEN || !isUtf8(raw)) return undefined;
  const changesAt = raw.indexOf(CHANGES);
  if (changesAt < 1 || raw[changesAt - 1] !== COMMA) return undefined;
  // The header: the body up to its last member, closed. The full path's parser scans for names that could
  // poison a prototype; a header that could spell one gives way to it (rows carry only the schema's names).
  const head = raw.subarray(0, changesAt - 1);
  if (head.indexOf('proto') >= 0 || head.indexOf('constructor') >= 0 || head.indexOf('\\u') >= 0) return undefined;
  let header: BatchHeader;
  try {
    header = JSON.parse(`${head.toString('utf8')}}`) as BatchHeader;
  } catch {
    return undefined;
  }
  // The header schema forbids a "changes" of its own, so the array below is the one JSON.parse would keep.
  if (!headerValid(header) || schemaProblems(header.schema).length > 0) return undefined;

  const plans = header.schema.columns.map((c) => planOf(c, header.schema.key));
  const keyPlans = header.schema.key.map((k) => plans.find((p) => p.column.name === k)!);
  const row = members(plans);
  const key = members(keyPlans);
  /** Position in the key of each row column, or -1. */
  const keyIndex = plans.map((p) => header.schema.key.indexOf(p.column.name));
  const verbatimRows = !plans.some((p) => reorders(p.column.name));
  const keyCount = keyPlans.length;
  const keyFrom = new Int32Array(keyCount);
  const keyTo = new Int32Array(keyCount);
  const keyDecoded: Array<string | undefined> = new Array<string | undefined>(keyCount);
  // Repeated keys: a lone key of up to 15 digits is told apart by its number, which needs no set while the keys
  // ascend (as the agent sends them); any other key by its text.
  const numbers = new Float64Array(Math.max(16, raw.length >> 6));
  let numbered = 0;
  let ascending = true;
  const seen = new Set<string | number>();
  const copy: Buffer[] = [];
  const state: ValueState = { canonical: true, escaped: false, decoded: '' };
  let upserts = 0;
  let deletes = 0;
  let at = changesAt + CHANGES.length;
  for (;;) {
    const upsert = matches(raw, at, UPSERT);
    if (!upsert && !matches(raw, at, DELETE)) return undefined;
    const objectAt = at + UPSERT.length - 1;
    const { names, plans: expected } = upsert ? row : key;
    let p = objectAt + 1;
    let canonical = verbatimRows;
    for (let c = 0; c < expected.length; c++) {
      const name = names[c]!;
      if (!matches(raw, p, name)) return undefined;
      p += name.length;
      state.canonical = true;
      state.escaped = false;
      const end = valueEnd(raw, p, expected[c]!, state);
      if (end < 0) return undefined;
      canonical &&= state.canonical;
      const k = upsert ? keyIndex[c]! : c;
      if (k >= 0) {
        keyFrom[k] = p;
        keyTo[k] = end;
        keyDecoded[k] = state.escaped ? state.decoded : undefined;
      }
      p = end;
    }
    if (raw[p] !== CLOSE || raw[p + 1] !== CLOSE) return undefined;
    const objectEnd = p + 1;

    // The staging line: the key texts, the row text (NULL for a delete).
    let id = '';
    let number = -1;
    for (let k = 0; k < keyCount; k++) {
      const decoded = keyDecoded[k];
      if (k > 0) chunks.byte(TAB);
      if (decoded !== undefined) {
        const text = copyText(decoded);
        chunks.text(text);
        id = k === 0 ? text : `${id}\t${text}`;
        continue;
      }
      // A key's text as copyText(value) gives it: a plain string's bytes need no escaping (no backslash, no
      // control character), nor do numbers and booleans, which the scan accepted only as JSON.stringify spells them.
      let from = keyFrom[k]!;
      let to = keyTo[k]!;
      if (raw[from] === QUOTE) {
        from++;
        to--;
      }
      chunks.bytes(raw, from, to);
      // (A lone column has one spelling per value: a string of digits or a number. "-0" is not digits.)
      if (keyCount === 1 && to - from <= 15 && to > from && digits(raw, from, to - from)) number = digitsValue(raw, from, to);
      else id = k === 0 ? raw.toString('utf8', from, to) : `${id}\t${raw.toString('utf8', from, to)}`;
    }
    // A key twice gives way: the full path says where.
    if (number < 0) {
      if (seen.has(id)) return undefined;
      seen.add(id);
    } else if (ascending && (numbered === 0 || number > numbers[numbered - 1]!) && numbered < numbers.length) {
      numbers[numbered++] = number;
    } else {
      if (ascending) {
        ascending = false;
        for (let n = 0; n < numbered; n++) seen.add(numbers[n]!);
      }
      if (seen.has(number)) return undefined;
      seen.add(number);
    }
    chunks.byte(TAB);
    if (!upsert) {
      chunks.text('\\N');
      deletes++;
    } else {
      // A canonical row's bytes are JSON.stringify of it and hold nothing COPY escapes; any other is serialised again.
      if (canonical) chunks.bytes(raw, objectAt, objectEnd);
      else chunks.text(copyText(JSON.stringify(JSON.parse(raw.toString('utf8', objectAt, objectEnd)))));
      upserts++;
    }
    chunks.byte(NEWLINE);

    at = objectEnd + 1;
    if (raw[at] === COMMA) {
      at++;
      continue;
    }
    if (raw[at] === CLOSE_ARRAY && raw[at + 1] === CLOSE && at + 2 === raw.length) break;
    return undefined;
  }
  // Handed over as slices of the one buffer (pg-copy-streams sends each as a CopyData message of its own).
  const { written, buffer } = chunks.finish();
  for (let from = 0; from < written.length; from += 256 * 1024) copy.push(written.subarray(from, Math.min(written.length, from + 256 * 1024)));
  return { batch: { header, upserts, deletes, copy }, buffer };
}
