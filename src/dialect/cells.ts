/**
 * Canonical cell rendering shared by both adapters, so that a value read from SQL Server and the same
 * value read from PostgreSQL are the same JavaScript value (see `Cell` in types.ts).
 */
import type { Cell, ColumnType } from './types.ts';

/** Pad or cut a fractional-second part to exactly `precision` digits. */
function fraction(digits: string | undefined, precision: number): string {
  if (precision === 0) return '';
  return `.${(digits ?? '').padEnd(precision, '0').slice(0, precision)}`;
}

const TIME = /^(\d{2}:\d{2}:\d{2})(?:\.(\d+))?$/;
const TIMESTAMP = /^(-?\d{4,}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?\s*(Z|[+-]\d{2}(?::?\d{2})?)?$/;

export function canonicalTime(text: string, precision: number): string {
  const m = TIME.exec(text.trim());
  if (!m) throw new Error(`not a time: ${JSON.stringify(text)}`);
  return `${m[1]}${fraction(m[2], precision)}`;
}

export function canonicalTimestamp(text: string, precision: number, withZone: boolean): string {
  const m = TIMESTAMP.exec(text.trim());
  if (!m) throw new Error(`not a timestamp: ${JSON.stringify(text)}`);
  const base = `${m[1]}T${m[2]}${fraction(m[3], precision)}`;
  if (!withZone) return base;
  let zone = m[4] ?? '+00:00';
  if (zone === 'Z') zone = '+00:00';
  else if (/^[+-]\d{2}$/.test(zone)) zone = `${zone}:00`;
  else if (/^[+-]\d{4}$/.test(zone)) zone = `${zone.slice(0, 3)}:${zone.slice(3)}`;
  return `${base}${zone}`;
}

/**
 * The function turning a driver value, or an exact text rendering made in SQL, into the canonical cell of a
 * column of `type`: chosen once per column, so that a read decides each cell's type by no switch of its own.
 */
export function cellReader(type: ColumnType): (value: unknown) => Cell {
  switch (type.kind) {
    case 'boolean':
      return (value) => (value == null ? null : typeof value === 'boolean' ? value : value === 1 || value === 't' || value === 'true');
    case 'int16':
    case 'int32':
    case 'float64':
      return (value) => (value == null ? null : typeof value === 'number' ? value : Number(value));
    case 'int64':
      return (value) => (value == null ? null : typeof value === 'bigint' ? value : BigInt(value as string));
    case 'float32':
      return (value) => (value == null ? null : Math.fround(typeof value === 'number' ? value : Number(value)));
    case 'decimal':
    case 'string':
      return (value) => (value == null ? null : String(value));
    case 'binary':
      return (value) => (value == null ? null : Buffer.isBuffer(value) ? value : Buffer.from(value as Uint8Array));
    case 'uuid':
      return (value) => (value == null ? null : String(value).toLowerCase());
    case 'date':
      return (value) => (value == null ? null : String(value).slice(0, 10));
    case 'time': {
      const precision = type.precision;
      return (value) => (value == null ? null : canonicalTime(String(value), precision));
    }
    case 'timestamp':
    case 'timestamptz': {
      const { precision } = type;
      const zoned = type.kind === 'timestamptz';
      return (value) => (value == null ? null : canonicalTimestamp(String(value), precision, zoned));
    }
  }
}

/** `cellReader(type)(value)`, for a single value. */
export function toCell(value: unknown, type: ColumnType): Cell {
  return cellReader(type)(value);
}

/** Equality of two cells, as a diff would decide it: exact bytes, exact digits. */
export function cellsEqual(a: Cell, b: Cell): boolean {
  if (Buffer.isBuffer(a) && Buffer.isBuffer(b)) return a.equals(b);
  if (typeof a === 'number' && typeof b === 'number') return Object.is(a, b) || a === b;
  return a === b;
}
