/**
 * SQL Server source catalog. A table or view is read from the catalog views (sys.columns, sys.types), which
 * every SQL Server since 2005 and Babelfish have, and which show a user the objects it may select from; a query
 * is described by `sp_describe_first_result_set`, which analyses it without executing it (Babelfish describes
 * SELECTs only, which is what a query source is). The primary key of a table comes from sys.indexes. Type
 * mapping: docs/type-mapping.md.
 */
import type { ColumnType, Db } from '../dialect/types.ts';
import { parseQualifiedName } from '../dialect/identifiers.ts';
import { PermanentError } from '../errors/errors.ts';
import type { NativeColumn, SourceCatalog } from './introspect.ts';

const toNvarcharMax = (q: string) => `CONVERT(nvarchar(max), ${q})`;

/**
 * Map a `system_type_name` (base type for alias types; for CLR types the caller passes user_type_name)
 * to a portable type, or say why it cannot be carried.
 */
export function mapMssqlType(systemTypeName: string): { type: ColumnType; render?: (q: string) => string } | { error: string } {
  const t = systemTypeName.toLowerCase();
  let m: RegExpExecArray | null;
  switch (t) {
    case 'bit':
      return { type: { kind: 'boolean' } };
    case 'tinyint':
    case 'smallint':
      return { type: { kind: 'int16' } };
    case 'int':
      return { type: { kind: 'int32' } };
    case 'bigint':
      return { type: { kind: 'int64' } };
    // money is a scaled 64-bit integer with 4 decimal places: decimal(19,4) holds every value exactly.
    case 'money':
      return { type: { kind: 'decimal', precision: 19, scale: 4 } };
    case 'smallmoney':
      return { type: { kind: 'decimal', precision: 10, scale: 4 } };
    case 'real':
      return { type: { kind: 'float32' } };
    case 'float':
      return { type: { kind: 'float64' } };
    case 'uniqueidentifier':
      return { type: { kind: 'uuid' } };
    case 'date':
      return { type: { kind: 'date' } };
    // datetime ticks are 1/300 s; style 121 renders each tick as a distinct millisecond value that converts back to it.
    case 'datetime':
      return { type: { kind: 'timestamp', precision: 3 } };
    case 'smalldatetime':
      return { type: { kind: 'timestamp', precision: 0 } };
    case 'text':
    case 'ntext':
      return { type: { kind: 'string', maxLength: null }, render: toNvarcharMax };
    case 'xml':
      return { type: { kind: 'string', maxLength: null }, render: toNvarcharMax };
    case 'image':
      return { type: { kind: 'binary', maxLength: null }, render: (q) => `CONVERT(varbinary(max), ${q})` };
    // rowversion (reported under its old name timestamp) is 8 bytes.
    case 'timestamp':
    case 'rowversion':
      return { type: { kind: 'binary', maxLength: 8 } };
    // hierarchyid's ToString() form parses back to the same value.
    case 'hierarchyid':
      return { type: { kind: 'string', maxLength: 4000 }, render: (q) => `CAST(${q} AS nvarchar(4000))` };
    case 'sql_variant':
      return { error: 'sql_variant has no single type to carry; use a query source that converts it, e.g. CONVERT(nvarchar(4000), col)' };
    case 'geography':
    case 'geometry':
      return { error: `${t} is not carried; use a query source that renders it, e.g. col.STAsText() or col.STAsBinary()` };
  }
  if ((m = /^(?:decimal|numeric)\((\d+),\s*(\d+)\)$/.exec(t))) return { type: { kind: 'decimal', precision: Number(m[1]), scale: Number(m[2]) } };
  if ((m = /^n?(?:var)?char\((\d+|max)\)$/.exec(t))) return { type: { kind: 'string', maxLength: m[1] === 'max' ? null : Number(m[1]) } };
  if ((m = /^(?:var)?binary\((\d+|max)\)$/.exec(t))) return { type: { kind: 'binary', maxLength: m[1] === 'max' ? null : Number(m[1]) } };
  if ((m = /^time\((\d)\)$/.exec(t))) return { type: { kind: 'time', precision: Number(m[1]) } };
  if ((m = /^datetime2\((\d)\)$/.exec(t))) return { type: { kind: 'timestamp', precision: Number(m[1]) } };
  if ((m = /^datetimeoffset\((\d)\)$/.exec(t))) return { type: { kind: 'timestamptz', precision: Number(m[1]) } };
  return { error: `type ${systemTypeName} cannot be carried losslessly; use a query source that converts it` };
}

type DescribedRow = {
  name: string | null;
  is_nullable: boolean;
  system_type_name: string | null;
  user_type_name: string | null;
  max_length: number;
  precision: number;
  scale: number;
}

/** A column as the catalog views describe it. */
type CatalogRow = {
  name: string;
  is_nullable: boolean;
  max_length: number;
  precision: number;
  scale: number;
  type_name: string;
  base_type_name: string | null;
  is_assembly_type: boolean;
}

/**
 * The catalog's column as `system_type_name` spells it (`nvarchar(40)`, `decimal(18,4)`, `datetime2(7)`): the
 * base system type of an alias type, lengths in characters for n-types (max_length counts bytes, -1 is max).
 */
export function catalogTypeName(r: Pick<CatalogRow, 'max_length' | 'precision' | 'scale' | 'type_name' | 'base_type_name' | 'is_assembly_type'>): string {
  const base = (r.is_assembly_type ? r.type_name : (r.base_type_name ?? r.type_name)).toLowerCase();
  const length = (bytesPerChar: number) => (r.max_length === -1 ? 'max' : String(r.max_length / bytesPerChar));
  switch (base) {
    case 'char':
    case 'varchar':
    case 'binary':
    case 'varbinary':
      return `${base}(${length(1)})`;
    case 'nchar':
    case 'nvarchar':
      return `${base}(${length(2)})`;
    case 'decimal':
    case 'numeric':
      return `${base}(${r.precision},${r.scale})`;
    case 'time':
    case 'datetime2':
    case 'datetimeoffset':
      return `${base}(${r.scale})`;
    default:
      return base;
  }
}

function nativeColumn(where: string, name: string | null, index: number, native: string, nullable: boolean): NativeColumn {
  if (!name) throw new PermanentError(`${where}: column ${index + 1} has no name; alias it in the query.`);
  const mapped = mapMssqlType(native);
  if ('error' in mapped) throw new PermanentError(`${where}: column ${JSON.stringify(name)}: ${mapped.error}.`);
  return { spec: { name, type: mapped.type, nullable }, nativeType: native, ...(mapped.render ? { render: mapped.render } : {}) };
}

export const mssqlCatalog: SourceCatalog = {
  async describe(db: Db, ref, where) {
    if (!('table' in ref)) {
      let rows: DescribedRow[];
      try {
        rows = await db.query<DescribedRow>('EXEC sp_describe_first_result_set @tsql = @p1', [`SELECT * FROM (${ref.query}) AS cdc_q`]);
      } catch (error) {
        throw new PermanentError(`${where}: the source query cannot be described: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
      }
      // Hidden columns are browse-mode extras, never part of the query's own result.
      const visible = rows.filter((r) => !(r as { is_hidden?: boolean }).is_hidden);
      // SQL Server spells system_type_name with its length or precision (`nvarchar(40)`); Babelfish gives the bare
      // name (`nvarchar`), so the length, precision and scale columns complete it the way the catalog's do.
      const typeName = (r: DescribedRow) =>
        r.system_type_name === null
          ? (r.user_type_name ?? 'unknown CLR type')
          : r.system_type_name.includes('(')
            ? r.system_type_name
            : catalogTypeName({ type_name: r.system_type_name, base_type_name: r.system_type_name, max_length: r.max_length, precision: r.precision, scale: r.scale, is_assembly_type: false });
      const columns = visible.map((r, i) => nativeColumn(where, r.name, i, typeName(r), Boolean(r.is_nullable)));
      return { columns, primaryKey: [] };
    }
    const objectName = db.table(parseQualifiedName(ref.table));
    const found = await db.query<{ id: number | null }>('SELECT OBJECT_ID(@p1) AS id', [objectName]);
    if (found[0]?.id === null || found[0]?.id === undefined) {
      throw new PermanentError(`${where}: table or view ${objectName} does not exist or is not visible to the agent's login; check the source's table in the configuration, or GRANT SELECT on it to that login.`);
    }
    // Hidden columns (a temporal table's period columns declared HIDDEN) are not in SELECT *: left out here too.
    const rows = await db.query<CatalogRow>(
      `SELECT c.name, c.is_nullable, c.max_length, c.precision, c.scale, t.name AS type_name, bt.name AS base_type_name, t.is_assembly_type
       FROM sys.columns AS c
       JOIN sys.types AS t ON t.user_type_id = c.user_type_id
       LEFT JOIN sys.types AS bt ON bt.user_type_id = c.system_type_id AND bt.is_user_defined = 0
       WHERE c.object_id = OBJECT_ID(@p1) AND c.is_hidden = 0
       ORDER BY c.column_id`,
      [objectName],
    );
    const columns = rows.map((r, i) => nativeColumn(where, r.name, i, catalogTypeName(r), Boolean(r.is_nullable)));
    const key = await db.query<{ name: string }>(
      `SELECT c.name FROM sys.indexes AS i
         JOIN sys.index_columns AS ic ON ic.object_id = i.object_id AND ic.index_id = i.index_id
         JOIN sys.columns AS c ON c.object_id = ic.object_id AND c.column_id = ic.column_id
       WHERE i.object_id = OBJECT_ID(@p1) AND i.is_primary_key = 1 AND ic.key_ordinal > 0
       ORDER BY ic.key_ordinal`,
      [objectName],
    );
    return { columns, primaryKey: key.map((k) => k.name) };
  },
};
