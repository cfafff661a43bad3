/**
 * Introspection of a data source (a table, a view or a query) into its portable shape. Each dialect's
 * catalog adapter (introspect-postgres.ts, introspect-mssql.ts) reports native columns; this module applies
 * the source's configuration (column include/exclude, key) the same way for both.
 */
import type { SourceConfig } from '../config/schema.ts';
import type { ColumnSpec, Db, DialectName } from '../dialect/types.ts';
import { parseQualifiedName } from '../dialect/identifiers.ts';
import { PermanentError } from '../errors/errors.ts';
import { postgresCatalog } from './introspect-postgres.ts';
import { mssqlCatalog } from './introspect-mssql.ts';
import type { SourceSchema } from './schema.ts';

/** A source column as the catalog reports it, with the portable type it is carried as. */
export interface NativeColumn {
  spec: ColumnSpec;
  /** The source's own type name, for messages and docs. */
  nativeType: string;
  /**
   * A select-list expression over the quoted column that renders it as the portable type, when the
   * native value is not read directly (e.g. PostgreSQL json as text, SQL Server xml as nvarchar(max)).
   */
  render?: (quoted: string) => string;
}

export type SourceRef = { table: string } | { query: string };

export interface SourceCatalog {
  /**
   * Native columns of the source in order and its primary key (empty for views and queries).
   * Throws a PermanentError when the source does not exist or a column cannot be carried losslessly;
   * `where` names tenant and source for those messages.
   */
  describe(db: Db, ref: SourceRef, where: string): Promise<{ columns: NativeColumn[]; primaryKey: string[] }>;
}

const CATALOGS: Record<DialectName, SourceCatalog> = { postgres: postgresCatalog, mssql: mssqlCatalog };

export interface DescribedSource {
  schema: SourceSchema;
  /** A SELECT over the source returning exactly `schema.columns`, by name, with renderings applied. */
  select: string;
  /** The FROM of `select`: the quoted table, or the query as a derived table. */
  from: string;
  /** `select`'s list, one item per column of `schema.columns` (`expr AS name` where rendered). */
  items: string[];
  /** Every column the source has, included or not (a watermark column may be left out of what is synced). */
  natives: NativeColumn[];
}

export function where(tenant: string, source: SourceConfig | string): string {
  return `tenant "${tenant}", source "${typeof source === 'string' ? source : source.id}"`;
}

export async function describeSource(sourceDb: Db, tenant: string, source: SourceConfig): Promise<DescribedSource> {
  const at = where(tenant, source);
  const context = { tenant, source: source.id };
  const ref: SourceRef = source.table !== undefined ? { table: source.table } : { query: source.query ?? '' };
  const { columns: all, primaryKey } = await CATALOGS[sourceDb.dialect].describe(sourceDb, ref, at);

  const names = new Set(all.map((c) => c.spec.name));
  if (names.size !== all.length) throw new PermanentError(`${at}: the source returns two columns with the same name; alias them.`, { context });
  const unknown = [...(source.columns.include ?? []), ...(source.columns.exclude ?? [])].filter((n) => !names.has(n));
  if (unknown.length > 0) {
    throw new PermanentError(`${at}: columns.include/exclude name columns the source does not have: ${unknown.join(', ')}.`, { context });
  }
  const include = source.columns.include ? new Set(source.columns.include) : null;
  const exclude = new Set(source.columns.exclude ?? []);
  const columns = all.filter((c) => (include === null || include.has(c.spec.name)) && !exclude.has(c.spec.name));

  const key = source.key ?? primaryKey;
  if (key.length === 0) {
    throw new PermanentError(`${at}: the source has no primary key; give the key columns in the configuration (key: [...]).`, { context });
  }
  const kept = new Set(columns.map((c) => c.spec.name));
  const missing = key.filter((k) => !kept.has(k));
  if (missing.length > 0) {
    throw new PermanentError(
      `${at}: key column(s) ${missing.map((m) => JSON.stringify(m)).join(', ')} are not among the source's (included) columns ` +
        `(${[...kept].join(', ')}); fix the source's key in the configuration, or stop excluding the column. Nothing was pushed.`,
      { context },
    );
  }

  const from = 'table' in ref ? sourceDb.table(parseQualifiedName(ref.table)) : `(${ref.query}) AS cdc_q`;
  const list = columns.map((c) => {
    const q = sourceDb.quote(c.spec.name);
    return c.render ? `${c.render(q)} AS ${q}` : q;
  });
  return {
    // A key column is NOT NULL in the portable shape whatever the catalog says: NULL keys fail the diff.
    schema: { columns: columns.map((c) => ({ ...c.spec, nullable: key.includes(c.spec.name) ? false : c.spec.nullable })), key: [...key] },
    select: `SELECT ${list.join(', ')} FROM ${from}`,
    from,
    items: list,
    natives: all,
  };
}

export async function introspectSource(sourceDb: Db, tenant: string, source: SourceConfig): Promise<SourceSchema> {
  return (await describeSource(sourceDb, tenant, source)).schema;
}
