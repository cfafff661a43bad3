/**
 * SQL Server adapter of the dialect port: `mssql` on tedious, TLS on by default, streaming reads with
 * back-pressure, bulk load through tedious' BulkLoad.
 *
 * tedious converts decimal through JavaScript numbers (lossy beyond 15 digits) and rounds datetime2 to
 * milliseconds. So exact types are read as text rendered by SQL Server itself (CONVERT style 121, the
 * ODBC canonical form with every fractional digit), and written by bulk-loading their text into a
 * #landing table and converting on the server in one INSERT … SELECT.
 */
import sql from 'mssql';
import { TDS_PACKET_SIZE, type MssqlConnectionConfig } from '../config/schema.ts';
import { toCdcError } from '../errors/classify.ts';
import { PermanentError } from '../errors/errors.ts';
import { cellReader } from './cells.ts';
import { quoteMssql, quoteQualified } from './identifiers.ts';
import type { Cell, ColumnSpec, ColumnType, Db, DialectCapabilities, QualifiedName, Queryable, Row, StreamOptions } from './types.ts';

/** Rows per BulkLoad call: bounds memory, since mssql's Table holds its rows in an array. */
const BULK_CHUNK_ROWS = 5_000;

/** Bytes a value of this type takes in an index key (fixed types exactly, variable ones at their maximum). */
function keyBytes(type: ColumnType): number | null {
  switch (type.kind) {
    case 'boolean':
      return 1;
    case 'int16':
      return 2;
    case 'int32':
    case 'float32':
      return 4;
    case 'int64':
    case 'float64':
    case 'timestamp':
      return 8;
    case 'decimal':
      return type.precision <= 9 ? 5 : type.precision <= 19 ? 9 : type.precision <= 28 ? 13 : 17;
    case 'uuid':
      return 16;
    case 'date':
      return 3;
    case 'time':
      return 5;
    case 'timestamptz':
      return 10;
    case 'string':
      return type.maxLength !== null && type.maxLength <= 4000 ? 2 * type.maxLength : null;
    case 'binary':
      return type.maxLength !== null && type.maxLength <= 8000 ? type.maxLength : null;
  }
}

/** Index key limits: https://learn.microsoft.com/sql/sql-server/maximum-capacity-specifications-for-sql-server */
const CLUSTERED_KEY_BYTES = 900;
const NONCLUSTERED_KEY_BYTES = 1700;

/** Parse `mssql://user:password@host:port/database?encrypt=true&trustServerCertificate=false&instanceName=X&packetSize=N`. */
export function parseMssqlUrl(url: string): Partial<MssqlConnectionConfig> {
  const u = new URL(url);
  if (u.protocol !== 'mssql:' && u.protocol !== 'sqlserver:') throw new Error(`not an mssql:// URL: ${u.protocol}`);
  const flag = (name: string) => {
    const v = u.searchParams.get(name);
    return v === null ? undefined : v === 'true' || v === '1';
  };
  const out: Partial<MssqlConnectionConfig> = { host: decodeURIComponent(u.hostname) };
  if (u.port) out.port = Number(u.port);
  if (u.username) out.user = decodeURIComponent(u.username);
  if (u.password) out.password = decodeURIComponent(u.password);
  const database = decodeURIComponent(u.pathname.replace(/^\//, ''));
  if (database) out.database = database;
  const encrypt = flag('encrypt');
  if (encrypt !== undefined) out.encrypt = encrypt;
  const trust = flag('trustServerCertificate');
  if (trust !== undefined) out.trustServerCertificate = trust;
  const instance = u.searchParams.get('instanceName');
  if (instance) out.instanceName = instance;
  const packetSize = u.searchParams.get('packetSize');
  if (packetSize !== null) {
    const n = Number(packetSize);
    const { min, max } = TDS_PACKET_SIZE;
    if (!Number.isInteger(n) || n < min || n > max) throw new Error(`packetSize in the mssql:// URL must be a whole number of bytes from ${min} to ${max}, not ${packetSize}`);
    out.packetSize = n;
  }
  return out;
}

/** The connection's `authentication` as tedious takes it (`config.authentication`: type and options). */
export function tediousAuthentication(a: NonNullable<MssqlConnectionConfig['authentication']>): NonNullable<sql.config['authentication']> {
  switch (a.type) {
    case 'ntlm':
      return { type: 'ntlm', options: { domain: a.domain, userName: a.user, password: a.password } };
    case 'azure-active-directory-default':
    case 'azure-active-directory-msi-vm':
      return { type: a.type, options: a.clientId !== undefined ? { clientId: a.clientId } : {} };
    case 'azure-active-directory-service-principal-secret':
      return { type: a.type, options: { clientId: a.clientId, tenantId: a.tenantId, clientSecret: a.clientSecret } };
  }
}

/**
 * TDS packets asked for at login when the configuration names none: tedious' default is 4,096; larger packets mean
 * fewer packet headers and fewer rows split across packets (tedious parses such a row again with the next packet).
 * 16,383 is SQL Server's largest network packet on an encrypted connection
 * (https://learn.microsoft.com/sql/database-engine/configure-windows/configure-the-network-packet-size-server-configuration-option),
 * and the server answers the login with the size it grants (ENVCHANGE), which tedious then uses.
 */
export const DEFAULT_PACKET_SIZE = 16_383;

export function mssqlPoolConfig(input: MssqlConnectionConfig, appName = 'cdc-sync-agent'): sql.config {
  const c = input.url !== undefined ? { ...input, ...parseMssqlUrl(input.url) } : input;
  return {
    server: c.host ?? 'localhost',
    ...(c.port !== undefined ? { port: c.port } : {}),
    ...(c.database !== undefined ? { database: c.database } : {}),
    ...(c.authentication !== undefined ? { authentication: tediousAuthentication(c.authentication) } : {}),
    ...(c.authentication === undefined && c.user !== undefined ? { user: c.user } : {}),
    ...(c.authentication === undefined && c.password !== undefined ? { password: c.password } : {}),
    connectionTimeout: c.connectTimeout,
    requestTimeout: c.requestTimeout,
    pool: { max: c.poolMax, min: 0, idleTimeoutMillis: 30_000 },
    options: {
      encrypt: c.encrypt,
      trustServerCertificate: c.trustServerCertificate,
      ...(c.instanceName !== undefined ? { instanceName: c.instanceName } : {}),
      appName,
      packetSize: c.packetSize ?? DEFAULT_PACKET_SIZE,
      useUTC: true,
      enableArithAbort: true,
    },
  };
}

/** The value to bind for a JavaScript parameter; types are explicit where inference would lose data. */
function bindParam(request: sql.Request, name: string, value: unknown): void {
  if (value === null || value === undefined) request.input(name, sql.NVarChar(1), null);
  else if (typeof value === 'bigint') request.input(name, sql.BigInt, value);
  else if (typeof value === 'number') {
    if (Number.isInteger(value) && Math.abs(value) <= 2_147_483_647) request.input(name, sql.Int, value);
    else if (Number.isSafeInteger(value)) request.input(name, sql.BigInt, value);
    else request.input(name, sql.Float, value);
  } else if (typeof value === 'boolean') request.input(name, sql.Bit, value);
  else if (Buffer.isBuffer(value)) request.input(name, sql.VarBinary(sql.MAX), value);
  else if (value instanceof Date) request.input(name, sql.DateTime2(7), value);
  else {
    const text = String(value);
    request.input(name, text.length <= 4000 ? sql.NVarChar(4000) : sql.NVarChar(sql.MAX), text);
  }
}

/** A select-list expression that renders the column exactly. */
function exactSelect(column: ColumnSpec): string {
  const q = quoteMssql(column.name);
  const t = column.type;
  // Only the types tedious would not return exactly are rendered as text, and as nvarchar: tedious decodes varchar
  // through a code-page conversion, which cost a third more Node CPU than nvarchar for the same digits (issue 20's
  // measurement on 1M rows: 20.4 against 15.2 CPU-s). uniqueidentifier comes back exactly as its text (upper case).
  switch (t.kind) {
    case 'decimal':
      return `CONVERT(nvarchar(50), CAST(${q} AS decimal(${t.precision},${t.scale})))`;
    case 'timestamp':
    case 'timestamptz':
      return `CONVERT(nvarchar(40), ${q}, 121)`;
    case 'time':
      return `CONVERT(nvarchar(20), ${q}, 121)`;
    case 'date':
      return `CONVERT(nchar(10), ${q}, 23)`;
    default:
      return q;
  }
}

/** Types that travel through #landing as text, converted by the server (see the module comment). */
function landsAsText(type: ColumnType): boolean {
  return type.kind === 'decimal' || type.kind === 'date' || type.kind === 'time' || type.kind === 'timestamp' || type.kind === 'timestamptz';
}

function bulkType(type: ColumnType): sql.ISqlType | (() => sql.ISqlType) {
  if (landsAsText(type)) return sql.VarChar(48);
  switch (type.kind) {
    case 'boolean':
      return sql.Bit;
    case 'int16':
      return sql.SmallInt;
    case 'int32':
      return sql.Int;
    case 'int64':
      return sql.BigInt;
    case 'float32':
      return sql.Real;
    case 'float64':
      return sql.Float;
    case 'string':
      return type.maxLength !== null && type.maxLength <= 4000 ? sql.NVarChar(type.maxLength) : sql.NVarChar(sql.MAX);
    case 'binary':
      return type.maxLength !== null && type.maxLength <= 8000 ? sql.VarBinary(type.maxLength) : sql.VarBinary(sql.MAX);
    case 'uuid':
      return sql.UniqueIdentifier;
    default:
      return sql.NVarChar(sql.MAX);
  }
}

/** Convert landed text back to the column type (style 121 / 23: the forms exactSelect reads). */
function fromLanded(column: ColumnSpec, dialectType: string): string {
  const q = quoteMssql(column.name);
  switch (column.type.kind) {
    case 'decimal':
      return `CONVERT(${dialectType}, ${q})`;
    case 'date':
      return `CONVERT(date, ${q}, 23)`;
    case 'time':
    case 'timestamp':
    case 'timestamptz':
      return `CONVERT(${dialectType}, ${q}, 121)`;
    default:
      return q;
  }
}

/** Cell → value tedious writes exactly for the bulk column type chosen above. */
function bulkValue(cell: Cell, type: ColumnType, column: string): unknown {
  if (cell === null) return null;
  // SQL Server's float and real hold no NaN or infinity (a PostgreSQL source can): refused here, by column, before
  // the bulk load, which would otherwise fail without a word about which value (Babelfish drops the connection).
  if (typeof cell === 'number' && !Number.isFinite(cell) && (type.kind === 'float64' || type.kind === 'float32')) {
    throw new PermanentError(
      `column ${JSON.stringify(column)} holds ${String(cell)}, which SQL Server's ${type.kind === 'float64' ? 'float' : 'real'} cannot hold; ` +
        'render it in a query source (e.g. CASE WHEN col = \'NaN\' THEN NULL ELSE col END) or use a PostgreSQL control database.',
    );
  }
  if (landsAsText(type)) {
    const text = String(cell);
    // style 121 wants a space between date and time, and a space before an offset
    return type.kind === 'timestamp' || type.kind === 'timestamptz' ? text.replace('T', ' ').replace(/([+-]\d{2}:\d{2})$/, ' $1') : text;
  }
  return cell;
}

class MssqlQueryable implements Queryable {
  protected readonly requester: () => sql.Request;

  constructor(requester: () => sql.Request) {
    this.requester = requester;
  }

  protected request(params: readonly unknown[]): sql.Request {
    const request = this.requester();
    params.forEach((value, i) => bindParam(request, `p${i + 1}`, value));
    return request;
  }

  async query<R extends Row = Row>(text: string, params: readonly unknown[] = []): Promise<R[]> {
    try {
      const result = await this.request(params).query<R>(text);
      return (result.recordset ?? []) as unknown as R[];
    } catch (error) {
      throw toCdcError(error, 'SQL Server query');
    }
  }

  async execute(text: string, params: readonly unknown[] = []): Promise<number> {
    try {
      const result = await this.request(params).query(text);
      return result.rowsAffected.reduce((a, b) => a + b, 0);
    } catch (error) {
      throw toCdcError(error, 'SQL Server statement');
    }
  }
}

export class MssqlDb extends MssqlQueryable implements Db {
  readonly dialect = 'mssql' as const;
  readonly caps: DialectCapabilities = { rawCopy: false, maxParameters: 2_100, maxIdentifierLength: 128 };
  readonly pool: sql.ConnectionPool;
  private connecting: Promise<sql.ConnectionPool> | undefined;

  private constructor(pool: sql.ConnectionPool) {
    super(() => new sql.Request(pool));
    this.pool = pool;
  }

  static async connect(config: MssqlConnectionConfig | sql.config): Promise<MssqlDb> {
    const db = MssqlDb.lazy(config);
    await db.ensureConnected();
    return db;
  }

  /** A pool that connects on first use (and again after a failed attempt). */
  static lazy(config: MssqlConnectionConfig | sql.config): MssqlDb {
    const pool = new sql.ConnectionPool('dialect' in config ? mssqlPoolConfig(config) : config);
    pool.on('error', () => {});
    return new MssqlDb(pool);
  }

  private async ensureConnected(): Promise<void> {
    if (this.pool.connected) return;
    this.connecting ??= this.pool.connect().finally(() => {
      this.connecting = undefined;
    });
    try {
      await this.connecting;
    } catch (error) {
      throw toCdcError(error, 'SQL Server connect');
    }
  }

  override async query<R extends Row = Row>(text: string, params: readonly unknown[] = []): Promise<R[]> {
    await this.ensureConnected();
    return super.query<R>(text, params);
  }

  override async execute(text: string, params: readonly unknown[] = []): Promise<number> {
    await this.ensureConnected();
    return super.execute(text, params);
  }

  quote(name: string): string {
    return quoteMssql(name);
  }

  table(name: QualifiedName): string {
    return quoteQualified('mssql', name);
  }

  param(n: number): string {
    return `@p${n}`;
  }

  primaryKeySql(keyColumns: readonly ColumnSpec[]): string {
    const names = keyColumns.map((c) => c.name).join(', ');
    const unbounded = keyColumns.filter((c) => keyBytes(c.type) === null);
    if (unbounded.length > 0) {
      throw new PermanentError(
        `Key column(s) ${unbounded.map((c) => c.name).join(', ')} are unbounded text or binary, which SQL Server cannot index. ` +
          'Use a query source that casts the key to a bounded type (e.g. CAST(k AS nvarchar(200))) and name it as the key.',
      );
    }
    const bytes = keyColumns.reduce((sum, c) => sum + (keyBytes(c.type) ?? 0), 0);
    if (bytes > NONCLUSTERED_KEY_BYTES) {
      throw new PermanentError(
        `The key (${names}) can be ${bytes} bytes wide; a SQL Server index key holds at most ${NONCLUSTERED_KEY_BYTES}. ` +
          'Use a query source that casts the key columns to narrower types and name them as the key.',
      );
    }
    const kind = bytes > CLUSTERED_KEY_BYTES ? 'NONCLUSTERED ' : '';
    return `PRIMARY KEY ${kind}(${keyColumns.map((c) => quoteMssql(c.name)).join(', ')})`;
  }

  columnTypeSql(type: ColumnType): string {
    switch (type.kind) {
      case 'boolean':
        return 'bit';
      case 'int16':
        return 'smallint';
      case 'int32':
        return 'int';
      case 'int64':
        return 'bigint';
      case 'decimal':
        return `decimal(${type.precision},${type.scale})`;
      case 'float32':
        return 'real';
      case 'float64':
        return 'float';
      case 'string':
        return type.maxLength !== null && type.maxLength <= 4000 ? `nvarchar(${type.maxLength})` : 'nvarchar(max)';
      case 'binary':
        return type.maxLength !== null && type.maxLength <= 8000 ? `varbinary(${type.maxLength})` : 'varbinary(max)';
      case 'uuid':
        return 'uniqueidentifier';
      case 'date':
        return 'date';
      case 'time':
        return `time(${Math.min(type.precision, 7)})`;
      case 'timestamp':
        return `datetime2(${Math.min(type.precision, 7)})`;
      case 'timestamptz':
        return `datetimeoffset(${Math.min(type.precision, 7)})`;
    }
  }

  async *stream<R extends Row = Row>(text: string, params: readonly unknown[] = [], options: StreamOptions = {}): AsyncIterable<R> {
    yield* this.rows<R>(text, params, options, false);
  }

  /** The rows of a query as they stream in: objects by column name, or (`arrays`) arrays in select-list order. */
  private async *rows<R>(text: string, params: readonly unknown[], options: StreamOptions, arrays: boolean): AsyncIterable<R> {
    await this.ensureConnected();
    const request = this.request(params);
    request.arrayRowMode = arrays;
    const rows = request.toReadableStream({ highWaterMark: options.batchSize ?? 2_000 });
    void request.query(text).catch(() => {});
    try {
      for await (const row of rows) yield row as R;
    } catch (error) {
      throw toCdcError(error, 'SQL Server streaming read');
    } finally {
      if (!rows.readableEnded) {
        request.cancel();
        rows.destroy();
      }
    }
  }

  /** The statement readCells sends for `from` (its columns rendered exactly, c0..cN in order). */
  cellsQuery(from: QualifiedName | { sql: string }, columns: readonly ColumnSpec[], orderBy?: readonly string[]): string {
    const source = 'sql' in from ? `(${from.sql}) AS src` : this.table(from);
    const order = orderBy?.length ? ` ORDER BY ${orderBy.map((c) => quoteMssql(c)).join(', ')}` : '';
    return `SELECT ${columns.map((c, i) => `${exactSelect(c)} AS c${i}`).join(', ')} FROM ${source}${order}`;
  }

  async *readCells(
    from: QualifiedName | { sql: string; params?: readonly unknown[] },
    columns: readonly ColumnSpec[],
    options: StreamOptions & { orderBy?: readonly string[] } = {},
  ): AsyncIterable<Cell[]> {
    const readers = columns.map((c) => cellReader(c.type));
    // Rows as arrays (mssql's arrayRowMode): no object keyed by column name per row, no name lookups per cell.
    for await (const row of this.rows<unknown[]>(this.cellsQuery(from, columns, options.orderBy), 'sql' in from ? (from.params ?? []) : [], options, true)) {
      const cells = new Array<Cell>(readers.length);
      for (let i = 0; i < readers.length; i++) cells[i] = readers[i]!(row[i]);
      yield cells;
    }
  }

  async bulkWrite(table: QualifiedName, columns: readonly ColumnSpec[], rows: AsyncIterable<Cell[]> | Iterable<Cell[]>): Promise<number> {
    const landing = columns.some((c) => landsAsText(c.type));
    await this.ensureConnected();
    const transaction = new sql.Transaction(this.pool);
    await transaction.begin().catch((error: unknown) => {
      throw toCdcError(error, 'SQL Server begin transaction');
    });
    try {
      const target = landing ? '#cdc_landing' : this.table(table);
      if (landing) {
        const defs = columns.map((c) => `${quoteMssql(c.name)} ${landsAsText(c.type) ? 'varchar(48)' : this.columnTypeSql(c.type)} NULL`);
        await new sql.Request(transaction).batch(`IF OBJECT_ID('tempdb..#cdc_landing') IS NOT NULL DROP TABLE #cdc_landing; CREATE TABLE #cdc_landing (${defs.join(', ')})`);
      }
      let written = 0;
      let chunk = this.newBulkTable(target, columns);
      const flush = async () => {
        if (chunk.rows.length === 0) return;
        const result = await new sql.Request(transaction).bulk(chunk, { keepNulls: true, lockTable: !landing } as sql.IBulkOptions);
        written += result.rowsAffected;
        chunk = this.newBulkTable(target, columns);
      };
      for await (const row of rows) {
        chunk.rows.add(...(row.map((cell, i) => bulkValue(cell, columns[i]!.type, columns[i]!.name)) as Parameters<typeof chunk.rows.add>));
        if (chunk.rows.length >= BULK_CHUNK_ROWS) await flush();
      }
      await flush();
      if (landing) {
        const names = columns.map((c) => quoteMssql(c.name)).join(', ');
        const select = columns.map((c) => fromLanded(c, this.columnTypeSql(c.type))).join(', ');
        await new sql.Request(transaction).batch(
          `INSERT INTO ${this.table(table)} WITH (TABLOCK) (${names}) SELECT ${select} FROM #cdc_landing; DROP TABLE #cdc_landing;`,
        );
      }
      await transaction.commit();
      return written;
    } catch (error) {
      await transaction.rollback().catch(() => {});
      throw toCdcError(error, `SQL Server bulk load into ${this.table(table)}`);
    }
  }

  private newBulkTable(target: string, columns: readonly ColumnSpec[]): sql.Table {
    const t = new sql.Table(target);
    t.create = false;
    // tedious writes the name into `insert bulk` between brackets without escaping; mssql rejects a bare ].
    for (const c of columns) t.columns.add(c.name.replaceAll(']', ']]'), bulkType(c.type), { nullable: true });
    return t;
  }

  async transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
    await this.ensureConnected();
    const transaction = new sql.Transaction(this.pool);
    try {
      await transaction.begin();
    } catch (error) {
      throw toCdcError(error, 'SQL Server begin transaction');
    }
    try {
      const result = await fn(new MssqlQueryable(() => new sql.Request(transaction)));
      await transaction.commit();
      return result;
    } catch (error) {
      await transaction.rollback().catch(() => {});
      throw toCdcError(error, 'SQL Server transaction');
    }
  }

  async close(): Promise<void> {
    await this.pool.close();
  }
}
