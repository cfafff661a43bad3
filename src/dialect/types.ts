/**
 * The dialect port: one interface that the stages use, with a PostgreSQL and a SQL Server adapter of the
 * same shape beside it. Differences are capability flags, not dialect checks in stage logic.
 */
import type { Readable } from 'node:stream';

export type DialectName = 'postgres' | 'mssql';

/** Portable column types. Every source type maps onto one of these without losing information. */
export type ColumnType =
  | { kind: 'boolean' }
  | { kind: 'int16' }
  | { kind: 'int32' }
  | { kind: 'int64' }
  | { kind: 'decimal'; precision: number; scale: number }
  | { kind: 'float32' }
  | { kind: 'float64' }
  /**
   * Unicode text; maxLength in UTF-16 code units (SQL Server's nvarchar(n) unit; a character outside the BMP takes
   * two), null for unlimited.
   */
  | { kind: 'string'; maxLength: number | null }
  | { kind: 'binary'; maxLength: number | null }
  | { kind: 'uuid' }
  | { kind: 'date' }
  /** Fractional-second digits 0-7 (PostgreSQL stores at most 6). */
  | { kind: 'time'; precision: number }
  | { kind: 'timestamp'; precision: number }
  | { kind: 'timestamptz'; precision: number };

export interface ColumnSpec {
  name: string;
  type: ColumnType;
  nullable: boolean;
}

/**
 * A value as it travels through the agent, lossless for its column type:
 * boolean; number (int16, int32, float32, float64); bigint (int64); string (decimal as its digits,
 * text, uuid lower-case, date `YYYY-MM-DD`, time `HH:MM:SS.fffffff`, timestamp `YYYY-MM-DDTHH:MM:SS.ffffff`,
 * timestamptz with `+HH:MM`, fractional digits exactly the column's precision); Buffer (binary); null.
 */
export type Cell = null | boolean | number | bigint | string | Buffer;
export type Row = Record<string, unknown>;

export interface QualifiedName {
  schema?: string;
  name: string;
}

export interface DialectCapabilities {
  /** Raw COPY streams in and out (PostgreSQL) for moving rows without materialising them in JS. */
  rawCopy: boolean;
  /** Largest number of bind parameters one statement takes. */
  maxParameters: number;
  /** Longest identifier the server keeps without truncating. */
  maxIdentifierLength: number;
}

export interface StreamOptions {
  /** Rows fetched per round trip; bounds memory. */
  batchSize?: number;
}

/** What a transaction and a pool have in common. */
export interface Queryable {
  query<R extends Row = Row>(sql: string, params?: readonly unknown[]): Promise<R[]>;
  /** Run a statement; returns the number of rows it affected. */
  execute(sql: string, params?: readonly unknown[]): Promise<number>;
}

export interface Db extends Queryable {
  readonly dialect: DialectName;
  readonly caps: DialectCapabilities;
  /** Quote one identifier after validating it. */
  quote(name: string): string;
  /** Quote `schema.name` (schema optional). */
  table(name: QualifiedName): string;
  /** Bind-parameter placeholder for position `n` (1-based): `$1` or `@p1`. */
  param(n: number): string;
  /** The column type in this dialect's DDL. */
  columnTypeSql(type: ColumnType): string;
  /** Stream driver rows in bounded memory. */
  stream<R extends Row = Row>(sql: string, params?: readonly unknown[], options?: StreamOptions): AsyncIterable<R>;
  /** Read columns of a table or subquery (with its bind parameters) as exact cells, in bounded memory. */
  readCells(from: QualifiedName | { sql: string; params?: readonly unknown[] }, columns: readonly ColumnSpec[], options?: StreamOptions & { orderBy?: readonly string[] }): AsyncIterable<Cell[]>;
  /**
   * The PRIMARY KEY clause for these key columns, or a PermanentError naming the columns when the server
   * cannot index them (SQL Server: no max types, at most 1,700 bytes; over 900 bytes the key is nonclustered).
   */
  primaryKeySql(keyColumns: readonly ColumnSpec[]): string;
  /** Bulk-write rows of cells into an existing table (COPY FROM / bulk load). Returns rows written. */
  bulkWrite(table: QualifiedName, columns: readonly ColumnSpec[], rows: AsyncIterable<Cell[]> | Iterable<Cell[]>): Promise<number>;
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /**
   * Raw COPY out, when `caps.rawCopy`. With `settings` (custom setting name → text), the COPY runs in a
   * transaction of its own that sets them first through bind parameters, and its statement reads them with
   * `current_setting`: how values reach a COPY, which takes no bind parameters.
   */
  copyOut?(sql: string, settings?: Readonly<Record<string, string>>): Promise<Readable>;
  /**
   * Raw COPY in, when `caps.rawCopy`; resolves when the server has committed the COPY. With `first`, those
   * statements run before it in one transaction with it (a TRUNCATE there lets the COPY FREEZE its rows).
   */
  copyIn?(sql: string, input: Readable, options?: { first?: readonly string[] }): Promise<number>;
  close(): Promise<void>;
}
