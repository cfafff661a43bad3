/** PostgreSQL adapter of the dialect port: `pg` pools, pg-cursor streaming, COPY in and out. */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import Cursor from 'pg-cursor';
import copyStreams from 'pg-copy-streams';
import type { PostgresConnectionConfig } from '../config/schema.ts';
import { toCdcError } from '../errors/classify.ts';
import { cellReader } from './cells.ts';
import { BinaryCopyWriter } from './postgres-binary.ts';
import { quotePostgres, quoteQualified } from './identifiers.ts';
import type { Cell, ColumnSpec, ColumnType, Db, DialectCapabilities, QualifiedName, Queryable, Row, StreamOptions } from './types.ts';

const { Pool, types } = pg;

// int8 as bigint; numeric, date and timestamps as the server's text, which is exact.
const TYPE_PARSERS: Record<number, (text: string) => unknown> = {
  20: (text) => BigInt(text),
  1700: (text) => text,
  1082: (text) => text,
  1083: (text) => text,
  1114: (text) => text,
  1184: (text) => text,
  1266: (text) => text,
};

function getTypeParser(oid: number, format?: string): (text: string) => unknown {
  return TYPE_PARSERS[oid] ?? (types.getTypeParser(oid, format as 'text') as (text: string) => unknown);
}

/** `url` with `application_name` set to `name`, unless the URL already names one (sessions told apart in pg_stat_activity). */
export function withApplicationName(url: string, name: string): string {
  const parsed = new URL(url);
  if (!parsed.searchParams.has('application_name')) parsed.searchParams.set('application_name', name);
  return parsed.toString();
}

export interface SessionOptions {
  /**
   * Start every session with `jit = off` (the default). The agent's own statements are bulk moves and joins
   * whose cost estimates cross the JIT thresholds, so PostgreSQL compiled their expressions with LLVM on every
   * run (0.6–1.5 s for the push entry's rendering expression) and never evaluated them long enough to pay that
   * back. Source connections opt out: a startup option naming `jit` is refused by servers before PostgreSQL 11,
   * and a legacy source may be one.
   */
  jitOff?: boolean;
}

export function postgresPoolConfig(config: PostgresConnectionConfig, applicationName = 'cdc-sync-agent', session: SessionOptions = {}): pg.PoolConfig {
  const ssl =
    config.ssl === undefined || config.ssl === false
      ? undefined
      : config.ssl === true
        ? { rejectUnauthorized: true }
        : { rejectUnauthorized: config.ssl.rejectUnauthorized, ...(config.ssl.ca ? { ca: config.ssl.ca } : {}) };
  return {
    ...(config.url !== undefined ? { connectionString: config.url } : {}),
    ...(config.host !== undefined ? { host: config.host } : {}),
    ...(config.port !== undefined ? { port: config.port } : {}),
    ...(config.database !== undefined ? { database: config.database } : {}),
    ...(config.user !== undefined ? { user: config.user } : {}),
    ...(config.password !== undefined ? { password: config.password } : {}),
    ...(ssl !== undefined ? { ssl } : {}),
    ...(config.statementTimeout !== undefined ? { statement_timeout: config.statementTimeout } : {}),
    max: config.poolMax,
    application_name: applicationName,
    ...((session.jitOff ?? true) ? { options: '-c jit=off' } : {}),
    connectionTimeoutMillis: 15_000,
    types: { getTypeParser } as pg.CustomTypesConfig,
  };
}

/** A select-list expression that renders the column exactly (timestamps keep every digit). */
function exactSelect(column: ColumnSpec): string {
  const q = quotePostgres(column.name);
  const t = column.type;
  if (t.kind === 'timestamp' && t.precision <= 6) return `to_char(${q}, 'YYYY-MM-DD"T"HH24:MI:SS.US')`;
  if (t.kind === 'timestamptz' && t.precision <= 6) return `to_char(${q} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')`;
  if (t.kind === 'date') return `to_char(${q}, 'YYYY-MM-DD')`;
  if (t.kind === 'int64' || t.kind === 'decimal' || t.kind === 'uuid' || t.kind === 'time') return `${q}::text`;
  return q;
}

class PgQueryable implements Queryable {
  protected readonly client: pg.Pool | pg.PoolClient;

  constructor(client: pg.Pool | pg.PoolClient) {
    this.client = client;
  }

  async query<R extends Row = Row>(sql: string, params: readonly unknown[] = []): Promise<R[]> {
    try {
      const result = await this.client.query<R>(sql, params as unknown[]);
      return result.rows;
    } catch (error) {
      throw toCdcError(error, 'PostgreSQL query');
    }
  }

  async execute(sql: string, params: readonly unknown[] = []): Promise<number> {
    try {
      const result = await this.client.query(sql, params as unknown[]);
      return result.rowCount ?? 0;
    } catch (error) {
      throw toCdcError(error, 'PostgreSQL statement');
    }
  }
}

export class PostgresDb extends PgQueryable implements Db {
  readonly dialect = 'postgres' as const;
  readonly caps: DialectCapabilities = { rawCopy: true, maxParameters: 65_535, maxIdentifierLength: 63 };
  readonly pool: pg.Pool;

  constructor(config: PostgresConnectionConfig | pg.PoolConfig, session: SessionOptions = {}) {
    const pool = new Pool('dialect' in config ? postgresPoolConfig(config, undefined, session) : config);
    // An idle client that loses its connection must not crash the process; the next query reconnects.
    pool.on('error', () => {});
    super(pool);
    this.pool = pool;
  }

  quote(name: string): string {
    return quotePostgres(name);
  }

  table(name: QualifiedName): string {
    return quoteQualified('postgres', name);
  }

  param(n: number): string {
    return `$${n}`;
  }

  columnTypeSql(type: ColumnType): string {
    switch (type.kind) {
      case 'boolean':
        return 'boolean';
      case 'int16':
        return 'smallint';
      case 'int32':
        return 'integer';
      case 'int64':
        return 'bigint';
      case 'decimal':
        return `numeric(${type.precision},${type.scale})`;
      case 'float32':
        return 'real';
      case 'float64':
        return 'double precision';
      case 'string':
        return type.maxLength === null || type.maxLength > 10_485_760 ? 'text' : `varchar(${type.maxLength})`;
      case 'binary':
        return 'bytea';
      case 'uuid':
        return 'uuid';
      case 'date':
        return 'date';
      // PostgreSQL keeps 6 fractional digits; 7-digit values (datetime2(7)) are kept exactly as canonical text.
      case 'time':
        return type.precision <= 6 ? `time(${type.precision})` : 'text';
      case 'timestamp':
        return type.precision <= 6 ? `timestamp(${type.precision})` : 'text';
      case 'timestamptz':
        return type.precision <= 6 ? `timestamptz(${type.precision})` : 'text';
    }
  }

  primaryKeySql(keyColumns: readonly ColumnSpec[]): string {
    return `PRIMARY KEY (${keyColumns.map((c) => quotePostgres(c.name)).join(', ')})`;
  }

  async *stream<R extends Row = Row>(sql: string, params: readonly unknown[] = [], options: StreamOptions = {}): AsyncIterable<R> {
    const batchSize = options.batchSize ?? 2_000;
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (error) {
      throw toCdcError(error, 'PostgreSQL connect');
    }
    const cursor = client.query(new Cursor<R>(sql, params as unknown[], { types: { getTypeParser } as pg.CustomTypesConfig }));
    let failed = false;
    try {
      for (;;) {
        let rows: R[];
        try {
          rows = await cursor.read(batchSize);
        } catch (error) {
          failed = true;
          throw toCdcError(error, 'PostgreSQL streaming read');
        }
        if (rows.length === 0) break;
        yield* rows;
      }
    } finally {
      await cursor.close().catch(() => {});
      client.release(failed);
    }
  }

  async *readCells(
    from: QualifiedName | { sql: string; params?: readonly unknown[] },
    columns: readonly ColumnSpec[],
    options: StreamOptions & { orderBy?: readonly string[] } = {},
  ): AsyncIterable<Cell[]> {
    const source = 'sql' in from ? `(${from.sql}) AS src` : this.table(from);
    const order = options.orderBy?.length ? ` ORDER BY ${options.orderBy.map((c) => quotePostgres(c)).join(', ')}` : '';
    const select = columns.map((c, i) => `${exactSelect(c)} AS c${i}`).join(', ');
    const readers = columns.map((c) => cellReader(c.type));
    const names = columns.map((_c, i) => `c${i}`);
    for await (const row of this.stream(`SELECT ${select} FROM ${source}${order}`, 'sql' in from ? (from.params ?? []) : [], options)) {
      const cells = new Array<Cell>(readers.length);
      for (let i = 0; i < readers.length; i++) cells[i] = readers[i]!(row[names[i]!]);
      yield cells;
    }
  }

  async bulkWrite(table: QualifiedName, columns: readonly ColumnSpec[], rows: AsyncIterable<Cell[]> | Iterable<Cell[]>): Promise<number> {
    // Binary COPY (src/dialect/postgres-binary.ts), in chunks of a few hundred kilobytes: the server reads each
    // field with its type's binary receive function instead of parsing text, and no text line is built per row.
    const sql = `COPY ${this.table(table)} (${columns.map((c) => quotePostgres(c.name)).join(', ')}) FROM STDIN (FORMAT binary)`;
    const chunks = async function* (): AsyncIterable<Buffer> {
      const writer = new BinaryCopyWriter(columns);
      for await (const row of rows) {
        writer.row(row);
        if (writer.full) yield writer.take();
      }
      writer.end();
      yield writer.take();
    };
    return this.copyIn(sql, Readable.from(chunks(), { objectMode: false }));
  }

  async copyOut(sql: string, settings?: Readonly<Record<string, string>>): Promise<Readable> {
    const client = await this.pool.connect().catch((error: unknown) => {
      throw toCdcError(error, 'PostgreSQL connect');
    });
    const entries = Object.entries(settings ?? {});
    if (entries.length > 0) {
      try {
        // SET LOCAL's values: they end with the transaction, so the pooled session keeps none of them.
        await client.query('BEGIN');
        await client.query(`SELECT ${entries.map((_e, i) => `set_config($${2 * i + 1}, $${2 * i + 2}, true)`).join(', ')}`, entries.flat());
      } catch (error) {
        client.release(true);
        throw toCdcError(error, 'PostgreSQL COPY settings');
      }
    }
    const stream = client.query(copyStreams.to(sql));
    let released = false;
    const release = (error?: unknown) => {
      if (!released) {
        released = true;
        client.release(error instanceof Error);
      }
    };
    stream.on('end', () => {
      if (entries.length === 0) release();
      else client.query('COMMIT').then(() => release(), (error: unknown) => release(error instanceof Error ? error : new Error(String(error))));
    });
    stream.on('error', (error) => release(error));
    // An ended stream is released by its 'end' (after the COMMIT, where there is one); 'close' follows it.
    stream.on('close', () => {
      if (!stream.readableEnded) release(new Error('closed early'));
    });
    return stream;
  }

  async copyIn(sql: string, input: Readable, options: { first?: readonly string[] } = {}): Promise<number> {
    const client = await this.pool.connect().catch((error: unknown) => {
      throw toCdcError(error, 'PostgreSQL connect');
    });
    const first = options.first ?? [];
    let failed = false;
    try {
      // Statements before the COPY in its transaction; on a failure the connection is discarded, which rolls it back.
      if (first.length > 0) {
        await client.query('BEGIN');
        for (const statement of first) await client.query(statement);
      }
      const target = client.query(copyStreams.from(sql));
      await pipeline(input, target);
      if (first.length > 0) await client.query('COMMIT');
      return Number(target.rowCount ?? 0);
    } catch (error) {
      failed = true;
      throw toCdcError(error, 'PostgreSQL COPY');
    } finally {
      client.release(failed);
    }
  }

  async transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
    const client = await this.pool.connect().catch((error: unknown) => {
      throw toCdcError(error, 'PostgreSQL connect');
    });
    let broken = false;
    try {
      await client.query('BEGIN');
      const result = await fn(new PgQueryable(client));
      await client.query('COMMIT');
      return result;
    } catch (error) {
      try {
        await client.query('ROLLBACK');
      } catch {
        broken = true;
      }
      throw toCdcError(error, 'PostgreSQL transaction');
    } finally {
      client.release(broken);
    }
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}
