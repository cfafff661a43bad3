/**
 * Where each upsert's row object sits in the raw (decoded) request bytes, so the receiver stores the row text
 * the agent sent instead of serialising the parsed row again. Only the compact framing the agent produces
 * (`"changes":[{"op":"upsert","row":{…}},{"op":"delete","key":{…}},…]`, no whitespace outside strings) is
 * recognised; anything else returns undefined and the caller serialises the parsed rows. The body has already
 * been parsed and validated (rows are flat objects of scalars) before this runs. A row whose bytes would differ
 * from `JSON.stringify` of the parsed row (escapes, number spellings, repeated names) is marked for
 * serialising, so the stored text is the same either way.
 */

const CHANGES = Buffer.from('"changes":[');
const UPSERT = Buffer.from('{"op":"upsert","row":');
const DELETE = Buffer.from('{"op":"delete","key":');
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN = 0x7b;
const CLOSE = 0x7d;
const COMMA = 0x2c;
const CLOSE_ARRAY = 0x5d;

/**
 * Row i (an upsert) spans bytes `start[i]`..`end[i]` of the body; `verbatim[i]` is 1 when those bytes are
 * exactly what `JSON.stringify` of the parsed row gives (no backslash escapes, numbers spelt as JavaScript
 * spells them, one member per column, so no duplicate names), 0 when the row must be serialised again.
 */
export interface RowSlices {
  start: Int32Array;
  end: Int32Array;
  verbatim: Uint8Array;
}

function startsWith(raw: Buffer, at: number, prefix: Buffer): boolean {
  if (at + prefix.length > raw.length) return false;
  for (let i = 0; i < prefix.length; i++) if (raw[at + i] !== prefix[i]) return false;
  return true;
}

function isNumberByte(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x2b || c === 0x2e || c === 0x65 || c === 0x45;
}

/** What scanning one flat object found. */
interface Scan {
  /** Index just past the object's `}`, or -1 when it is not compact (whitespace outside strings) or not flat. */
  end: number;
  members: number;
  verbatim: boolean;
}

/** Scan the flat JSON object starting at `at` (which holds `{`). */
function scanFlatObject(raw: Buffer, at: number, out: Scan): void {
  const n = raw.length;
  let i = at + 1;
  let verbatim = true;
  let members = raw[i] === CLOSE ? 0 : 1;
  out.end = -1;
  while (i < n) {
    const c = raw[i]!;
    if (c === QUOTE) {
      i++;
      while (i < n) {
        const s = raw[i]!;
        if (s === BACKSLASH) {
          verbatim = false;
          i += 2;
        } else if (s === QUOTE) {
          break;
        } else {
          i++;
        }
      }
      i++;
    } else if (c === CLOSE) {
      out.end = i + 1;
      out.members = members;
      out.verbatim = verbatim;
      return;
    } else if (c === COMMA) {
      members++;
      i++;
    } else if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
      const from = i;
      let plain = true;
      while (i < n && isNumberByte(raw[i]!)) {
        const d = raw[i]!;
        if (d === 0x2e || d === 0x65 || d === 0x45 || d === 0x2b) plain = false;
        i++;
      }
      // Short plain integers are spelt as JavaScript spells them (JSON forbids leading zeros), except -0.
      if (!plain || i - from > 15 || (i - from === 2 && c === 0x2d && raw[from + 1] === 0x30)) {
        const token = raw.toString('latin1', from, i);
        if (String(Number(token)) !== token) verbatim = false;
      }
    } else if (c <= 0x20 || c === OPEN || c === 0x5b) {
      return;
    } else {
      i++;
    }
  }
}

/**
 * The row slices of `ops` (each change's op, in order) in `raw`, or undefined when the body is not in the
 * compact framing (then nothing is sliced). `columns` is the number of columns every row carries.
 */
export function rowSlices(raw: Buffer, ops: readonly ('upsert' | 'delete')[], columns: number): RowSlices | undefined {
  const first = raw.indexOf(CHANGES);
  if (first < 0) return undefined;
  const count = ops.length;
  const slices: RowSlices = { start: new Int32Array(count), end: new Int32Array(count), verbatim: new Uint8Array(count) };
  const scan: Scan = { end: -1, members: 0, verbatim: false };
  let at = first + CHANGES.length;
  for (let i = 0; i < count; i++) {
    const upsert = ops[i] === 'upsert';
    if (!startsWith(raw, at, upsert ? UPSERT : DELETE)) return undefined;
    const objectAt = at + UPSERT.length;
    if (raw[objectAt] !== OPEN) return undefined;
    scanFlatObject(raw, objectAt, scan);
    const after = scan.end;
    if (after < 0 || raw[after] !== CLOSE) return undefined;
    if (upsert) {
      slices.start[i] = objectAt;
      slices.end[i] = after;
      slices.verbatim[i] = scan.verbatim && scan.members === columns ? 1 : 0;
    }
    const next = raw[after + 1];
    if (i < count - 1 ? next !== COMMA : next !== CLOSE_ARRAY) return undefined;
    at = after + 2;
  }
  // A second "changes" (JSON.parse keeps the last) can only follow the array: none comes before `first`, and
  // inside the array the pattern would have broken the framing.
  if (raw.indexOf(CHANGES, at) >= 0) return undefined;
  return slices;
}
