/**
 * Cells as PostgreSQL's binary COPY format (https://www.postgresql.org/docs/current/sql-copy.html, "Binary
 * Format"), for `PostgresDb.bulkWrite`: a SQL Server source's snapshot goes into the control database this way,
 * which spares the server the text input functions of every numeric, timestamp, date and uuid value and spares
 * Node the escaping and joining of text lines (docs/benchmarks.md, "SQL Server source").
 *
 * Each field is what the column type's binary receive function reads, for the types `columnTypeSql` gives:
 * big-endian integers and IEEE floats, UTF-8 text, raw bytea, 16 uuid bytes, a date as int32 days and a
 * timestamp or time as int64 microseconds since 2000-01-01 (or midnight), and numeric as base-10000 digit
 * groups with weight, sign and display scale. Temporal types of precision 7 are text columns there, and go as
 * text. A cell that does not fit its type (a value no reader makes) throws, naming the column.
 */
import type { Cell, ColumnSpec, ColumnType } from './types.ts';

const SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1');

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/** Days from 1970-01-01 to PostgreSQL's epoch, 2000-01-01. */
const PG_EPOCH_DAYS = 10_957;

type FieldWriter = (out: BinaryCopyWriter, cell: Exclude<Cell, null>) => void;

/** Days since 1970-01-01 of a proleptic Gregorian date (the civil-from-days inverse), exact for any year. */
function daysFromCivil(y: number, m: number, d: number): number {
  const yy = m <= 2 ? y - 1 : y;
  const era = Math.floor(yy / 400);
  const yoe = yy - era * 400;
  const doy = Math.floor((153 * (m + (m > 2 ? -3 : 9)) + 2) / 5) + d - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146_097 + doe - 719_468;
}

/** The decimal number in `s` from `from` for `count` characters, or NaN where a character is not a digit. */
function digitsAt(s: string, from: number, count: number): number {
  let n = 0;
  for (let i = from; i < from + count; i++) {
    const c = s.charCodeAt(i) - 48;
    if (c < 0 || c > 9) return NaN;
    n = n * 10 + c;
  }
  return n;
}

/** `YYYY-MM-DD` (the year may be longer, or negative) as days since 2000-01-01, and where the date ends. */
function parseDate(s: string): { days: number; end: number } {
  const negative = s.charCodeAt(0) === 45;
  const dash = s.indexOf('-', negative ? 1 : 0);
  const start = negative ? 1 : 0;
  const year = digitsAt(s, start, dash - start);
  const month = digitsAt(s, dash + 1, 2);
  const day = digitsAt(s, dash + 4, 2);
  if (dash - start < 4 || s.charCodeAt(dash + 3) !== 45 || !(month >= 1 && month <= 12 && day >= 1 && day <= 31)) throw new Error('not a date');
  return { days: daysFromCivil(negative ? -year : year, month, day) - PG_EPOCH_DAYS, end: dash + 6 };
}

/** `HH:MM:SS[.f…]` from `at` as microseconds (the fraction's digits beyond 6 must not be there: precision ≤ 6). */
function parseTime(s: string, at: number, end: number): number {
  const h = digitsAt(s, at, 2);
  const m = digitsAt(s, at + 3, 2);
  const sec = digitsAt(s, at + 6, 2);
  if (s.charCodeAt(at + 2) !== 58 || s.charCodeAt(at + 5) !== 58 || !(h <= 24 && m <= 59 && sec <= 60)) throw new Error('not a time');
  let us = ((h * 60 + m) * 60 + sec) * 1_000_000;
  if (end > at + 8) {
    const digits = end - at - 9;
    if (s.charCodeAt(at + 8) !== 46 || digits < 1 || digits > 6) throw new Error('not a time');
    const f = digitsAt(s, at + 9, digits);
    if (Number.isNaN(f)) throw new Error('not a time');
    us += f * 10 ** (6 - digits);
  } else if (end !== at + 8) throw new Error('not a time');
  return us;
}

/** A `[+-]HH:MM` offset at the end of `s` in minutes, and where it starts. */
function parseOffset(s: string): { minutes: number; at: number } {
  const at = s.length - 6;
  const sign = s.charCodeAt(at);
  const h = digitsAt(s, at + 1, 2);
  const m = digitsAt(s, at + 4, 2);
  if ((sign !== 43 && sign !== 45) || s.charCodeAt(at + 3) !== 58 || Number.isNaN(h) || Number.isNaN(m)) throw new Error('not an offset');
  return { minutes: (sign === 45 ? -1 : 1) * (h * 60 + m), at };
}

/** Numeric's binary form: ndigits, weight, sign, dscale (int16 each), then base-10000 digit groups. */
function writeNumeric(out: BinaryCopyWriter, text: string): void {
  if (text === 'NaN' || text === 'Infinity' || text === '-Infinity') {
    out.int32(8);
    out.int16(0);
    out.int16(0);
    out.int16(text === 'NaN' ? 0xc000 : text === 'Infinity' ? 0xd000 : 0xf000);
    out.int16(0);
    return;
  }
  const negative = text.charCodeAt(0) === 45;
  const start = negative || text.charCodeAt(0) === 43 ? 1 : 0;
  const point = text.indexOf('.', start);
  const intEnd = point < 0 ? text.length : point;
  const scale = point < 0 ? 0 : text.length - point - 1;
  if (intEnd === start && scale === 0) throw new Error('not a number');
  // Groups of four digits aligned on the decimal point: the integer part padded on the left, the fraction on the
  // right. Group g of the integer part starts at start - lead + 4g, group g of the fraction at point + 1 + 4g.
  const intDigits = intEnd - start;
  const lead = (4 - (intDigits % 4)) % 4;
  const intGroups = (intDigits + lead) / 4;
  const fracGroups = Math.ceil(scale / 4);
  const groupAt = (from: number, last: number): number => {
    let v = 0;
    for (let i = from; i < from + 4; i++) {
      const c = i < start || i >= last ? 0 : text.charCodeAt(i) - 48;
      if (c < 0 || c > 9) throw new Error('not a number');
      v = v * 10 + c;
    }
    return v;
  };
  const groups: number[] = new Array<number>(intGroups + fracGroups);
  for (let g = 0; g < intGroups; g++) groups[g] = groupAt(start - lead + g * 4, intEnd);
  for (let g = 0; g < fracGroups; g++) groups[intGroups + g] = groupAt(point + 1 + g * 4, text.length);
  let first = 0;
  while (first < groups.length && groups[first] === 0) first++;
  let last = groups.length;
  while (last > first && groups[last - 1] === 0) last--;
  const n = last - first;
  out.int32(8 + 2 * n);
  out.int16(n);
  out.int16(n === 0 ? 0 : intGroups - 1 - first);
  out.int16(negative && n > 0 ? 0x4000 : 0);
  out.int16(scale);
  for (let g = first; g < last; g++) out.int16(groups[g]!);
}

/** Each character code's hex digit value, or -1. */
const HEX_VALUE = new Int8Array(128).fill(-1);
for (let i = 0; i < 16; i++) {
  HEX_VALUE['0123456789abcdef'.charCodeAt(i)] = i;
  HEX_VALUE['0123456789ABCDEF'.charCodeAt(i)] = i;
}

/** The hex digit's value, or -1. */
function hexValue(c: number): number {
  return c < 128 ? HEX_VALUE[c]! : -1;
}

function writeUuid(out: BinaryCopyWriter, text: string): void {
  if (text.length !== 36) throw new Error('not a uuid');
  out.int32(16);
  const buf = out.reserve(16);
  let at = out.length;
  for (let i = 0; i < 36; ) {
    if (i === 8 || i === 13 || i === 18 || i === 23) {
      if (text.charCodeAt(i) !== 45) throw new Error('not a uuid');
      i++;
      continue;
    }
    const hi = hexValue(text.charCodeAt(i));
    const lo = hexValue(text.charCodeAt(i + 1));
    if (hi < 0 || lo < 0) throw new Error('not a uuid');
    buf[at++] = hi * 16 + lo;
    i += 2;
  }
  out.advance(16);
}

/**
 * The field of a JavaScript number `bytes` wide. Only a number is one: Buffer's writers would coerce a string
 * silently.
 */
function fixed(bytes: number, write: (out: BinaryCopyWriter, value: number) => void): FieldWriter {
  return (out, cell) => {
    if (typeof cell !== 'number') throw new Error('not a number');
    out.int32(bytes);
    write(out, cell);
  };
}

function fieldWriter(type: ColumnType): FieldWriter {
  switch (type.kind) {
    case 'boolean':
      return (out, cell) => {
        if (typeof cell !== 'boolean') throw new Error('not a boolean');
        out.int32(1);
        out.byte(cell ? 1 : 0);
      };
    case 'int16':
      return fixed(2, (out, v) => out.smallint(v));
    case 'int32':
      return fixed(4, (out, v) => out.int32(v));
    case 'int64':
      return (out, cell) => {
        out.int32(8);
        out.int64(typeof cell === 'bigint' ? cell : BigInt(cell as number | string));
      };
    case 'float32':
      return fixed(4, (out, v) => out.float32(v));
    case 'float64':
      return fixed(8, (out, v) => out.float64(v));
    case 'decimal':
      return (out, cell) => writeNumeric(out, String(cell));
    case 'string':
      return (out, cell) => out.text(cell as string);
    case 'binary':
      return (out, cell) => out.bytes(cell as Buffer);
    case 'uuid':
      return (out, cell) => writeUuid(out, cell as string);
    case 'date':
      return (out, cell) => {
        const text = cell as string;
        const { days, end } = parseDate(text);
        if (end !== text.length) throw new Error('not a date');
        out.int32(4);
        out.int32(days);
      };
    case 'time':
      if (type.precision > 6) return (out, cell) => out.text(cell as string);
      return (out, cell) => {
        const text = cell as string;
        out.int32(8);
        out.microseconds(0, parseTime(text, 0, text.length));
      };
    case 'timestamp':
    case 'timestamptz': {
      if (type.precision > 6) return (out, cell) => out.text(cell as string);
      const zoned = type.kind === 'timestamptz';
      return (out, cell) => {
        const text = cell as string;
        const { days, end } = parseDate(text);
        if (text.charCodeAt(end) !== 84) throw new Error('not a timestamp');
        const offset = zoned ? parseOffset(text) : { minutes: 0, at: text.length };
        // The offset moves the instant by whole minutes, at most a day either way: borrow or carry a day.
        let us = parseTime(text, end + 1, offset.at) - offset.minutes * 60_000_000;
        let day = days;
        if (us < 0) {
          us += 86_400_000_000;
          day--;
        } else if (us >= 86_400_000_000) {
          us -= 86_400_000_000;
          day++;
        }
        out.int32(8);
        out.microseconds(day, us);
      };
    }
  }
}

/**
 * Writes binary COPY data into chunks of about `chunkBytes`: the header at construction, then tuples, then the
 * trailer (`end`). `take()` hands over what has been written so far.
 */
export class BinaryCopyWriter {
  private buf: Buffer;
  /** The same memory as `buf`: DataView's setters are inlined where Buffer's writers check every call. */
  private view: DataView;
  private len = 0;
  private readonly chunkBytes: number;
  private readonly writers: FieldWriter[];
  private readonly names: string[];

  constructor(columns: readonly ColumnSpec[], chunkBytes = 256 * 1024) {
    this.chunkBytes = chunkBytes;
    this.buf = Buffer.allocUnsafe(chunkBytes + 1024);
    this.view = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength);
    this.writers = columns.map((c) => fieldWriter(c.type));
    this.names = columns.map((c) => c.name);
    SIGNATURE.copy(this.buf, 0);
    this.buf.writeInt32BE(0, 11); // flags
    this.buf.writeInt32BE(0, 15); // header extension length
    this.len = 19;
  }

  get length(): number {
    return this.len;
  }

  /** Whether a chunk's worth has been written. */
  get full(): boolean {
    return this.len >= this.chunkBytes;
  }

  /** The buffer, with room for `bytes` more from `length` on. */
  reserve(bytes: number): Buffer {
    if (this.len + bytes > this.buf.length) {
      const bigger = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.len + bytes + 1024));
      this.buf.copy(bigger, 0, 0, this.len);
      this.adopt(bigger);
    }
    return this.buf;
  }

  private adopt(buf: Buffer): void {
    this.buf = buf;
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  advance(bytes: number): void {
    this.len += bytes;
  }

  byte(v: number): void {
    this.reserve(1)[this.len++] = v;
  }

  /** An int16 of the format's own (counts, numeric's header words and digit groups, whose sign word is 0x4000 and up). */
  int16(v: number): void {
    this.reserve(2);
    this.view.setInt16(this.len, v);
    this.len += 2;
  }

  /** A smallint value: out of range throws, where int16 would wrap. */
  smallint(v: number): void {
    if (!Number.isInteger(v) || v < -32768 || v > 32767) throw new Error(`${v} is out of smallint range`);
    this.int16(v);
  }

  /** An int32: out of range or fractional throws, as Buffer's writer would. */
  int32(v: number): void {
    if ((v | 0) !== v) throw new Error(`${v} is out of integer range`);
    this.reserve(4);
    this.view.setInt32(this.len, v);
    this.len += 4;
  }

  int64(v: bigint): void {
    if (v < INT64_MIN || v > INT64_MAX) throw new Error(`${v} is out of bigint range`);
    this.reserve(8);
    this.view.setBigInt64(this.len, v);
    this.len += 8;
  }

  /**
   * An int64 of `days` × 86,400,000,000 + `us` (|days| < 2^22, 0 ≤ us < 2^37), without a BigInt: 86,400,000,000 is
   * 20 × 2^32 + 500,654,080, so the low part days × 500,654,080 + us stays exact in a double and carries into the high word.
   */
  microseconds(days: number, us: number): void {
    const low = days * 500_654_080 + us;
    const carry = Math.floor(low / 4_294_967_296);
    this.reserve(8);
    this.view.setInt32(this.len, days * 20 + carry);
    this.view.setUint32(this.len + 4, low - carry * 4_294_967_296);
    this.len += 8;
  }

  float32(v: number): void {
    this.reserve(4);
    this.view.setFloat32(this.len, v);
    this.len += 4;
  }

  float64(v: number): void {
    this.reserve(8);
    this.view.setFloat64(this.len, v);
    this.len += 8;
  }

  /** A text field: its UTF-8 bytes after their length. */
  text(s: string): void {
    const buf = this.reserve(4 + s.length * 3);
    const n = buf.write(s, this.len + 4, 'utf8');
    this.view.setInt32(this.len, n);
    this.len += 4 + n;
  }

  bytes(b: Buffer): void {
    const buf = this.reserve(4 + b.length);
    this.view.setInt32(this.len, b.length);
    this.len += 4 + b.copy(buf, this.len + 4);
  }

  row(cells: readonly Cell[]): void {
    const writers = this.writers;
    if (cells.length !== writers.length) throw new Error(`a row of ${cells.length} cells for ${writers.length} columns`);
    this.int16(writers.length);
    for (let i = 0; i < writers.length; i++) {
      const cell = cells[i]!;
      if (cell === null) {
        this.int32(-1);
        continue;
      }
      try {
        writers[i]!(this, cell);
      } catch (error) {
        throw new Error(`column ${JSON.stringify(this.names[i])}: ${typeof cell === "string" ? JSON.stringify(cell.slice(0, 100)) : typeof cell} cannot be written as its type (${(error as Error).message})`, { cause: error });
      }
    }
  }

  /** The trailer: a field count of -1. */
  end(): void {
    this.int16(-1);
  }

  take(): Buffer {
    const out = this.buf.subarray(0, this.len);
    this.adopt(Buffer.allocUnsafe(this.chunkBytes + 1024));
    this.len = 0;
    return out;
  }
}
