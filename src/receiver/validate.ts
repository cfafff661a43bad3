/**
 * Strict validation of Data Push API requests: JSON schemas for the structure (checked by fastify's ajv
 * before a handler runs) and value checks against the batch's own schema block. Every refusal says where.
 */
import { ID_PATTERN, PART_PATTERN, type BatchBody, type WireColumn, type WireSchema, type WireValue } from '../contract/wire.ts';

const TYPE_KINDS = ['boolean', 'int16', 'int32', 'int64', 'decimal', 'float32', 'float64', 'string', 'binary', 'uuid', 'date', 'time', 'timestamp', 'timestamptz'];
const MODES = ['initial', 'incremental', 'resync'];
const VALUE = { type: ['string', 'number', 'boolean', 'null'] };

export const batchBodySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['runId', 'mode', 'batch', 'schema', 'changes'],
  properties: {
    runId: { type: 'string', pattern: ID_PATTERN },
    mode: { enum: MODES },
    batch: { type: 'integer', minimum: 1 },
    part: { type: 'string', pattern: PART_PATTERN },
    schema: {
      type: 'object',
      additionalProperties: false,
      required: ['version', 'key', 'columns'],
      properties: {
        version: { type: 'string', pattern: '^sha256:[0-9a-f]{64}$' },
        key: { type: 'array', minItems: 1, items: { type: 'string', minLength: 1 } },
        columns: {
          type: 'array',
          minItems: 1,
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['name', 'type', 'nullable'],
            properties: {
              name: { type: 'string', minLength: 1 },
              type: { enum: TYPE_KINDS },
              nullable: { type: 'boolean' },
              precision: { type: 'integer', minimum: 0, maximum: 38 },
              scale: { type: 'integer', minimum: 0, maximum: 38 },
              maxLength: { type: ['integer', 'null'], minimum: 1 },
            },
          },
        },
      },
    },
    changes: {
      type: 'array',
      minItems: 1,
      items: {
        oneOf: [
          {
            type: 'object',
            additionalProperties: false,
            required: ['op', 'row'],
            properties: { op: { const: 'upsert' }, row: { type: 'object', additionalProperties: VALUE } },
          },
          {
            type: 'object',
            additionalProperties: false,
            required: ['op', 'key'],
            properties: { op: { const: 'delete' }, key: { type: 'object', additionalProperties: VALUE } },
          },
        ],
      },
    },
  },
} as const;

/** The batch schema without `changes`: a header alone, as the fast path (scan.ts) parses it. A "changes" member is refused. */
const { changes: _changes, ...headerProperties } = batchBodySchema.properties;
export const batchHeaderSchema = {
  ...batchBodySchema,
  required: batchBodySchema.required.filter((name) => name !== 'changes'),
  properties: headerProperties,
} as const;

export const completeBodySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['runId', 'mode', 'schemaVersion', 'batches', 'upserts', 'deletes', 'sourceRows'],
  properties: {
    runId: { type: 'string', pattern: ID_PATTERN },
    mode: { enum: MODES },
    schemaVersion: { type: 'string', pattern: '^sha256:[0-9a-f]{64}$' },
    batches: { type: 'integer', minimum: 0 },
    upserts: { type: 'integer', minimum: 0 },
    deletes: { type: 'integer', minimum: 0 },
    sourceRows: { type: 'integer', minimum: 0 },
  },
} as const;

export const pathParamsSchema = {
  type: 'object',
  required: ['tenant', 'dataset'],
  properties: { tenant: { type: 'string', pattern: ID_PATTERN }, dataset: { type: 'string', pattern: ID_PATTERN }, runId: { type: 'string', pattern: ID_PATTERN } },
} as const;

/** `GET …/digest?buckets=N&bucket=B`: decimal integers (query values are text; no coercion). */
export const digestQuerySchema = {
  type: 'object',
  additionalProperties: false,
  properties: { buckets: { type: 'string', pattern: '^[1-9][0-9]{0,4}$' }, bucket: { type: 'string', pattern: '^(0|[1-9][0-9]{0,4})$' } },
} as const;

export const INT_RANGE = { int16: [-32768, 32767], int32: [-2147483648, 2147483647] } as const;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function fraction(precision: number | undefined): string {
  return precision ? `\\.\\d{${precision}}` : '';
}

/** Time patterns by kind and precision, compiled once (validation runs for every value of every batch). */
const TIME_PATTERNS = new Map<string, RegExp>();
function timePattern(kind: 'time' | 'timestamp' | 'timestamptz', precision: number | undefined): RegExp {
  const id = `${kind}:${precision ?? 0}`;
  let re = TIME_PATTERNS.get(id);
  if (!re) {
    const f = fraction(precision);
    re = new RegExp(
      kind === 'time'
        ? `^\\d{2}:\\d{2}:\\d{2}${f}$`
        : kind === 'timestamp'
          ? `^-?\\d{4,}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}${f}$`
          : `^-?\\d{4,}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}${f}[+-]\\d{2}:\\d{2}$`,
    );
    TIME_PATTERNS.set(id, re);
  }
  return re;
}

/** Why `value` is not a valid encoding for `column`, or null when it is. */
export function valueProblem(value: WireValue, column: WireColumn): string | null {
  if (value === null) return column.nullable ? null : 'is null but the column is NOT NULL';
  const t = column.type;
  switch (t) {
    case 'boolean':
      return typeof value === 'boolean' ? null : 'must be true or false';
    case 'int16':
    case 'int32': {
      const [min, max] = INT_RANGE[t];
      return typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max ? null : `must be a JSON integer in ${t} range`;
    }
    case 'int64': {
      if (typeof value !== 'string' || !/^-?(0|[1-9]\d{0,18})$/.test(value)) return 'must be a string of decimal digits (int64 travels as a string)';
      const n = BigInt(value);
      return n >= INT64_MIN && n <= INT64_MAX ? null : 'is out of int64 range';
    }
    case 'decimal': {
      const m = typeof value === 'string' ? /^-?(\d+)(?:\.(\d+))?$/.exec(value) : null;
      if (!m) return 'must be a string of decimal digits (decimal travels as a string)';
      const scale = m[2]?.length ?? 0;
      const intDigits = m[1]!.replace(/^0+(?=\d)/, '').length;
      if (column.scale !== undefined && scale > column.scale) return `has ${scale} fractional digits; the column keeps ${column.scale}`;
      if (column.precision !== undefined && intDigits > column.precision - (column.scale ?? 0) && m[1] !== '0') return `has too many digits for decimal(${column.precision},${column.scale ?? 0})`;
      return null;
    }
    case 'float32':
    case 'float64':
      return typeof value === 'number' || value === 'NaN' || value === 'Infinity' || value === '-Infinity' ? null : 'must be a JSON number (or "NaN", "Infinity", "-Infinity")';
    case 'string':
      if (typeof value !== 'string') return 'must be a string';
      return column.maxLength != null && value.length > column.maxLength ? `is ${value.length} characters; the column holds ${column.maxLength}` : null;
    case 'binary': {
      if (typeof value !== 'string' || !BASE64.test(value)) return 'must be base64';
      const bytes = Buffer.byteLength(value, 'base64');
      return column.maxLength != null && bytes > column.maxLength ? `is ${bytes} bytes; the column holds ${column.maxLength}` : null;
    }
    case 'uuid':
      return typeof value === 'string' && UUID.test(value) ? null : 'must be a canonical lower-case uuid';
    case 'date':
      return typeof value === 'string' && /^-?\d{4,}-\d{2}-\d{2}$/.test(value) ? null : 'must be YYYY-MM-DD';
    case 'time':
      return typeof value === 'string' && timePattern('time', column.precision).test(value)
        ? null
        : `must be HH:MM:SS with exactly ${column.precision ?? 0} fractional digits`;
    case 'timestamp':
      return typeof value === 'string' && timePattern('timestamp', column.precision).test(value)
        ? null
        : `must be YYYY-MM-DDTHH:MM:SS with exactly ${column.precision ?? 0} fractional digits`;
    case 'timestamptz':
      return typeof value === 'string' && timePattern('timestamptz', column.precision).test(value)
        ? null
        : `must be YYYY-MM-DDTHH:MM:SS with exactly ${column.precision ?? 0} fractional digits and a +HH:MM offset`;
    default:
      return `has unknown type ${String(t)}`;
  }
}

/** Problems with the schema block itself. */
export function schemaProblems(schema: WireSchema): string[] {
  const problems: string[] = [];
  const names = new Set<string>();
  for (const c of schema.columns) {
    if (names.has(c.name)) problems.push(`schema.columns: duplicate column ${JSON.stringify(c.name)}`);
    names.add(c.name);
    if (c.type === 'decimal' && (c.precision === undefined || c.scale === undefined || c.scale > c.precision)) {
      problems.push(`schema.columns[${JSON.stringify(c.name)}]: decimal needs precision >= scale`);
    }
    if ((c.type === 'time' || c.type === 'timestamp' || c.type === 'timestamptz') && (c.precision === undefined || c.precision > 7)) {
      problems.push(`schema.columns[${JSON.stringify(c.name)}]: ${c.type} needs precision 0-7`);
    }
  }
  const keys = new Set<string>();
  for (const k of schema.key) {
    if (!names.has(k)) problems.push(`schema.key: ${JSON.stringify(k)} is not a column`);
    if (keys.has(k)) problems.push(`schema.key: ${JSON.stringify(k)} repeated`);
    keys.add(k);
  }
  return problems;
}

type Checker = (value: WireValue) => string | null;

const INT64_DIGITS = /^-?(0|[1-9]\d{0,18})$/;
const DECIMAL = /^-?(\d+)(?:\.(\d+))?$/;
const DATE = /^-?\d{4,}-\d{2}-\d{2}$/;

/**
 * A checker equivalent to `valueProblem(value, column)`, specialised once per column and batch: the hot cases
 * (the agent's own well-formed values) take a few comparisons; anything unusual falls back to `valueProblem`
 * for the reason.
 */
function checker(column: WireColumn): Checker {
  const slow: Checker = (value) => valueProblem(value, column);
  const nullable = column.nullable;
  switch (column.type) {
    case 'boolean':
      return (value) => (typeof value === 'boolean' || (value === null && nullable) ? null : slow(value));
    case 'int16':
    case 'int32': {
      const [min, max] = INT_RANGE[column.type];
      return (value) => (typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max) || (value === null && nullable) ? null : slow(value);
    }
    case 'int64':
      // Up to 18 digits cannot leave the int64 range; 19 digits go through the exact check.
      return (value) =>
        (typeof value === 'string' && value.length <= 19 && INT64_DIGITS.test(value) && (value.length < 19 || value.charCodeAt(0) === 45)) || (value === null && nullable)
          ? null
          : slow(value);
    case 'decimal': {
      const scale = column.scale ?? 0;
      const intMax = column.precision === undefined ? Infinity : column.precision - scale;
      return (value) => {
        if (value === null && nullable) return null;
        const m = typeof value === 'string' ? DECIMAL.exec(value) : null;
        if (!m) return slow(value);
        // Within the column's digits for sure, or the exact check (leading zeros, a bare 0) decides.
        return (m[2]?.length ?? 0) > scale || m[1]!.length > intMax ? slow(value) : null;
      };
    }
    case 'float32':
    case 'float64':
      return (value) => (typeof value === 'number' || (value === null && nullable) ? null : slow(value));
    case 'string': {
      const max = column.maxLength ?? Infinity;
      return (value) => ((typeof value === 'string' && value.length <= max) || (value === null && nullable) ? null : slow(value));
    }
    case 'uuid':
      return (value) => ((typeof value === 'string' && UUID.test(value)) || (value === null && nullable) ? null : slow(value));
    case 'date':
      return (value) => ((typeof value === 'string' && DATE.test(value)) || (value === null && nullable) ? null : slow(value));
    case 'time':
    case 'timestamp':
    case 'timestamptz': {
      const re = timePattern(column.type, column.precision);
      return (value) => ((typeof value === 'string' && re.test(value)) || (value === null && nullable) ? null : slow(value));
    }
    default:
      return slow;
  }
}

/** JSON.parse leaves only null, booleans, numbers and strings as own values here (the JSON schema checked); anything else is inherited. */
function present(value: unknown): boolean {
  return value !== undefined && (value === null || typeof value !== 'object') && typeof value !== 'function';
}

/**
 * Check every change against the batch's schema: upsert rows carry exactly the columns, delete keys exactly
 * the key columns, values are valid encodings, and no key appears twice. Returns the first problems found.
 * One pass, with checkers specialised per column; the reasons are those of `valueProblem`.
 */
export function batchProblems(body: BatchBody, limit = 10): string[] {
  const problems = schemaProblems(body.schema);
  if (problems.length > 0) return problems;
  const columns = new Map(body.schema.columns.map((c) => [c.name, c]));
  const keyColumns = body.schema.key.map((k) => columns.get(k)!);
  const keyNames = keyColumns.map((c) => c.name);
  const rowNames = body.schema.columns.map((c) => c.name);
  // Key columns are checked as NOT NULL whatever the schema says.
  const rowChecks = body.schema.columns.map((c) => checker(keyColumns.includes(c) ? { ...c, nullable: false } : c));
  const keyChecks = keyColumns.map((c) => checker({ ...c, nullable: false }));
  const allowed = { row: new Set(rowNames), key: new Set(keyNames) };
  const single = keyNames.length === 1 ? keyNames[0]! : undefined;
  const seen = new Set<string>();
  const changes = body.changes;
  for (let i = 0; i < changes.length && problems.length < limit; i++) {
    const change = changes[i]!;
    const upsert = change.op === 'upsert';
    const values: Record<string, WireValue> = upsert ? change.row : change.key;
    const names = upsert ? rowNames : keyNames;
    const checks = upsert ? rowChecks : keyChecks;
    const where = `changes[${i}].${upsert ? 'row' : 'key'}`;
    let own = 0;
    for (const name in values) if (Object.hasOwn(values, name)) own++;
    let found = 0;
    for (let c = 0; c < names.length; c++) {
      const name = names[c]!;
      const value = values[name];
      if (!present(value)) {
        problems.push(`${where}: missing column ${JSON.stringify(name)}`);
        continue;
      }
      found++;
      const problem = checks[c]!(value as WireValue);
      if (problem) problems.push(`${where}.${name} ${problem}`);
    }
    if (own !== found) {
      const expected = upsert ? allowed.row : allowed.key;
      for (const name of Object.keys(values)) if (!expected.has(name)) problems.push(`${where}: unexpected column ${JSON.stringify(name)}`);
    }
    const key = single !== undefined ? String(values[single]) : JSON.stringify(keyNames.map((n) => values[n]));
    if (seen.has(key)) problems.push(`${where}: key ${single !== undefined ? JSON.stringify([values[single]]) : key} appears more than once in the batch`);
    seen.add(key);
  }
  return problems.slice(0, limit);
}
