/**
 * PostgreSQL source catalog: pg_attribute for tables and views, the row description of a `LIMIT 0`
 * execution for queries (which plans the query but reads no rows). Type mapping: docs/type-mapping.md.
 */
import type { Db, ColumnType } from '../dialect/types.ts';
import type { PostgresDb } from '../dialect/postgres.ts';
import { parseQualifiedName } from '../dialect/identifiers.ts';
import { PermanentError } from '../errors/errors.ts';
import type { NativeColumn, SourceCatalog } from './introspect.ts';

const asText = (q: string) => `${q}::text`;

/**
 * Dates and timestamps travel in the portable range, years 0001–9999 (SQL Server's, and what the push encoding
 * spells as YYYY-MM-DD). PostgreSQL also holds infinity, BC dates and later years, which the renderings would
 * get wrong without a word (to_char gives NULL for infinity and drops the era of a BC date). Such a value fails
 * the snapshot instead: the cast of a message to the column's type raises a data error (SQLSTATE 22007,
 * permanent) whose text names the column and the value.
 */
function inPortableRange(type: 'date' | 'timestamp' | 'timestamptz'): (q: string) => string {
  const [low, high] = type === 'timestamptz' ? [`'0001-01-01 00:00:00+00'`, `'10000-01-01 00:00:00+00'`] : [`'0001-01-01'`, `'10000-01-01'`];
  return (q) => {
    const message = `'cdc-sync-agent: column ${q.replace(/'/g, "''")} holds ' || ${q}::text || ', outside years 0001-9999, which the agent carries; render it in a query source'`;
    return `CASE WHEN ${q} IS NULL OR (${q} >= ${low}::${type} AND ${q} < ${high}::${type}) THEN ${q} ELSE (${message})::${type} END`;
  };
}

/** Types read through their text form (exact and stable), carried as unlimited strings. */
const TEXT_RENDERED = new Set(['json', 'jsonb', 'xml', 'inet', 'cidr', 'macaddr', 'macaddr8', 'citext', 'name', '"char"']);

/**
 * Map PostgreSQL's `format_type()` of a base type to a portable type, or say why it cannot be carried.
 * `typtype` is pg_type.typtype ('e' for enums).
 */
export function mapPostgresType(formatted: string, typtype = 'b'): { type: ColumnType; render?: (q: string) => string } | { error: string } {
  if (typtype === 'e') return { type: { kind: 'string', maxLength: null }, render: asText };
  if (formatted.endsWith('[]')) return { error: 'arrays are not carried; unnest them or render them with a query source (e.g. array_to_json(col)::text)' };
  if (TEXT_RENDERED.has(formatted)) return { type: { kind: 'string', maxLength: null }, render: asText };
  let m: RegExpExecArray | null;
  switch (formatted) {
    case 'boolean':
      return { type: { kind: 'boolean' } };
    case 'smallint':
      return { type: { kind: 'int16' } };
    case 'integer':
      return { type: { kind: 'int32' } };
    case 'bigint':
      return { type: { kind: 'int64' } };
    case 'real':
      return { type: { kind: 'float32' } };
    case 'double precision':
      return { type: { kind: 'float64' } };
    case 'text':
      return { type: { kind: 'string', maxLength: null } };
    case 'bytea':
      return { type: { kind: 'binary', maxLength: null } };
    case 'uuid':
      return { type: { kind: 'uuid' } };
    case 'date':
      return { type: { kind: 'date' }, render: inPortableRange('date') };
    case 'numeric':
      return { error: 'numeric without precision and scale has no fixed scale to carry; cast it in a query source, e.g. CAST(col AS numeric(38,10))' };
  }
  if ((m = /^numeric\((\d+),(\d+)\)$/.exec(formatted))) {
    const precision = Number(m[1]);
    const scale = Number(m[2]);
    if (precision > 38 || scale < 0 || scale > precision) return { error: `${formatted} is outside decimal(1..38, 0..precision), the range both control dialects hold` };
    return { type: { kind: 'decimal', precision, scale } };
  }
  // PostgreSQL counts characters; the portable maxLength counts UTF-16 code units (two per character outside the BMP).
  if ((m = /^character varying(?:\((\d+)\))?$/.exec(formatted))) return { type: { kind: 'string', maxLength: m[1] ? 2 * Number(m[1]) : null } };
  if ((m = /^character(?:\((\d+)\))?$/.exec(formatted))) return { type: { kind: 'string', maxLength: m[1] ? 2 * Number(m[1]) : 2 } };
  if ((m = /^time(?:\((\d)\))? without time zone$/.exec(formatted))) return { type: { kind: 'time', precision: m[1] ? Number(m[1]) : 6 } };
  if ((m = /^timestamp(?:\((\d)\))? without time zone$/.exec(formatted)))
    return { type: { kind: 'timestamp', precision: m[1] ? Number(m[1]) : 6 }, render: inPortableRange('timestamp') };
  if ((m = /^timestamp(?:\((\d)\))? with time zone$/.exec(formatted)))
    return { type: { kind: 'timestamptz', precision: m[1] ? Number(m[1]) : 6 }, render: inPortableRange('timestamptz') };
  return { error: `type ${formatted} cannot be carried losslessly; use a query source that casts it (e.g. CAST(col AS text))` };
}

type CatalogRow = {
  name: string;
  formatted: string;
  typtype: string;
  nullable: boolean;
}

function toColumns(rows: readonly CatalogRow[], where: string): NativeColumn[] {
  return rows.map((r) => {
    const mapped = mapPostgresType(r.formatted, r.typtype);
    if ('error' in mapped) throw new PermanentError(`${where}: column ${JSON.stringify(r.name)}: ${mapped.error}.`);
    return {
      spec: { name: r.name, type: mapped.type, nullable: r.nullable },
      nativeType: r.formatted,
      ...(mapped.render ? { render: mapped.render } : {}),
    };
  });
}

// Domains are described by their base type and the domain's own type modifier.
const BASE_TYPE = `
  format_type(CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END, CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE $2::int END) AS formatted,
  CASE WHEN t.typtype = 'd' THEN bt.typtype ELSE t.typtype END AS typtype`;

export const postgresCatalog: SourceCatalog = {
  async describe(db: Db, ref, where) {
    if ('table' in ref) {
      const relation = db.table(parseQualifiedName(ref.table));
      // One statement for the columns and the primary key's order: every run describes its source again (drift),
      // and on a backend that has just started each catalog statement is its own cost to the tenant's server.
      const rows = await db.query<CatalogRow & { key_ord: unknown }>(
        `SELECT a.attname AS name, NOT a.attnotnull AS nullable,
           format_type(CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END, CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END) AS formatted,
           CASE WHEN t.typtype = 'd' THEN bt.typtype ELSE t.typtype END AS typtype, k.ord AS key_ord
         FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid LEFT JOIN pg_type bt ON bt.oid = t.typbasetype
           LEFT JOIN (SELECT k.attnum, k.ord FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
                      WHERE i.indrelid = to_regclass($1) AND i.indisprimary) AS k ON k.attnum = a.attnum
         WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`,
        [relation],
      );
      // No column: no such relation visible to the login (a relation of no columns has nothing to carry either).
      if (rows.length === 0) throw new PermanentError(`${where}: table or view ${relation} does not exist or is not visible to the agent's login; check the source's table in the configuration, or GRANT SELECT on it to that login.`);
      const primaryKey = rows.filter((r) => r.key_ord !== null).sort((a, b) => Number(a.key_ord) - Number(b.key_ord)).map((r) => r.name);
      return { columns: toColumns(rows, where), primaryKey };
    }
    // A query: its row description gives each column's type oid and modifier without reading a row.
    const pool = (db as PostgresDb).pool;
    let fields: Array<{ name: string; dataTypeID: number; dataTypeModifier: number }>;
    try {
      fields = (await pool.query(`SELECT * FROM (${ref.query}) AS cdc_q LIMIT 0`)).fields;
    } catch (error) {
      throw new PermanentError(`${where}: the source query does not run: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
    }
    const rows: CatalogRow[] = [];
    for (const f of fields) {
      const [row] = await db.query<{ formatted: string; typtype: string }>(
        `SELECT ${BASE_TYPE} FROM pg_type t LEFT JOIN pg_type bt ON bt.oid = t.typbasetype WHERE t.oid = $1::oid`,
        [f.dataTypeID, f.dataTypeModifier],
      );
      if (!row) throw new PermanentError(`${where}: column ${JSON.stringify(f.name)} has an unknown type oid ${f.dataTypeID}.`);
      // A query's result columns carry no NOT NULL constraint.
      rows.push({ name: f.name, formatted: row.formatted, typtype: row.typtype, nullable: true });
    }
    return { columns: toColumns(rows, where), primaryKey: [] };
  },
};
