/**
 * SQL Server source catalog. `sys.dm_exec_describe_first_result_set` describes a table, a view and a query
 * the same way without executing anything (SELECT permission is enough); the primary key of a table comes
 * from sys.indexes. Type mapping: docs/type-mapping.md.
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
  error_message: string | null;
}

export const mssqlCatalog: SourceCatalog = {
  async describe(db: Db, ref, where) {
    let select: string;
    let objectName: string | null = null;
    if ('table' in ref) {
      objectName = db.table(parseQualifiedName(ref.table));
      const found = await db.query<{ id: number | null }>('SELECT OBJECT_ID(@p1) AS id', [objectName]);
      if (found[0]?.id === null || found[0]?.id === undefined) {
        throw new PermanentError(`${where}: table or view ${objectName} does not exist or is not visible to the agent's login; check the source's table in the configuration, or GRANT SELECT on it to that login.`);
      }
      select = `SELECT * FROM ${objectName}`;
    } else {
      select = `SELECT * FROM (${ref.query}) AS cdc_q`;
    }
    const rows = await db.query<DescribedRow>(
      `SELECT name, is_nullable, system_type_name, user_type_name, error_message
       FROM sys.dm_exec_describe_first_result_set(@p1, NULL, 0)
       WHERE is_hidden = 0 OR is_hidden IS NULL ORDER BY column_ordinal`,
      [select],
    );
    const failed = rows.find((r) => r.error_message !== null);
    if (failed) throw new PermanentError(`${where}: the source cannot be described: ${failed.error_message}`);
    const columns: NativeColumn[] = rows.map((r, i) => {
      if (!r.name) throw new PermanentError(`${where}: column ${i + 1} has no name; alias it in the query.`);
      const native = r.system_type_name ?? r.user_type_name ?? 'unknown CLR type';
      const mapped = mapMssqlType(native);
      if ('error' in mapped) throw new PermanentError(`${where}: column ${JSON.stringify(r.name)}: ${mapped.error}.`);
      return { spec: { name: r.name, type: mapped.type, nullable: Boolean(r.is_nullable) }, nativeType: native, ...(mapped.render ? { render: mapped.render } : {}) };
    });
    let primaryKey: string[] = [];
    if (objectName !== null) {
      const key = await db.query<{ name: string }>(
        `SELECT c.name FROM sys.indexes AS i
           JOIN sys.index_columns AS ic ON ic.object_id = i.object_id AND ic.index_id = i.index_id
           JOIN sys.columns AS c ON c.object_id = ic.object_id AND c.column_id = ic.column_id
         WHERE i.object_id = OBJECT_ID(@p1) AND i.is_primary_key = 1 AND ic.key_ordinal > 0
         ORDER BY ic.key_ordinal`,
        [objectName],
      );
      primaryKey = key.map((k) => k.name);
    }
    return { columns, primaryKey };
  },
};
