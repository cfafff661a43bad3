import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ColumnType } from '../../src/dialect/types.ts';
import { mapMssqlType } from '../../src/snapshot/introspect-mssql.ts';
import { mapPostgresType } from '../../src/snapshot/introspect-postgres.ts';
import { describeDrift, schemaFingerprint, type SourceSchema } from '../../src/snapshot/schema.ts';
import { heldKeysTable, sourceTables } from '../../src/snapshot/source-tables.ts';
import { migrate } from '../../src/migrations/migrate.ts';
import { babelfishGap, createTestDatabase, itUnless, type TestDatabase } from '../support/databases.ts';
import { acknowledge, describeEachPair, runOnce, sourceConfig } from './pipeline.ts';

const typeOf = (m: ReturnType<typeof mapMssqlType>): ColumnType | string => ('error' in m ? m.error : m.type);

describe('type mapping (docs/type-mapping.md)', () => {
  it.each<[string, ColumnType]>([
    ['bit', { kind: 'boolean' }],
    ['tinyint', { kind: 'int16' }],
    ['int', { kind: 'int32' }],
    ['bigint', { kind: 'int64' }],
    ['money', { kind: 'decimal', precision: 19, scale: 4 }],
    ['smallmoney', { kind: 'decimal', precision: 10, scale: 4 }],
    ['decimal(38,10)', { kind: 'decimal', precision: 38, scale: 10 }],
    ['numeric(5,0)', { kind: 'decimal', precision: 5, scale: 0 }],
    ['float', { kind: 'float64' }],
    ['real', { kind: 'float32' }],
    ['nchar(10)', { kind: 'string', maxLength: 10 }],
    ['char(3)', { kind: 'string', maxLength: 3 }],
    ['varchar(max)', { kind: 'string', maxLength: null }],
    ['nvarchar(4000)', { kind: 'string', maxLength: 4000 }],
    ['ntext', { kind: 'string', maxLength: null }],
    ['text', { kind: 'string', maxLength: null }],
    ['xml', { kind: 'string', maxLength: null }],
    ['image', { kind: 'binary', maxLength: null }],
    ['varbinary(max)', { kind: 'binary', maxLength: null }],
    ['binary(16)', { kind: 'binary', maxLength: 16 }],
    ['timestamp', { kind: 'binary', maxLength: 8 }],
    ['uniqueidentifier', { kind: 'uuid' }],
    ['date', { kind: 'date' }],
    ['time(7)', { kind: 'time', precision: 7 }],
    ['datetime', { kind: 'timestamp', precision: 3 }],
    ['smalldatetime', { kind: 'timestamp', precision: 0 }],
    ['datetime2(7)', { kind: 'timestamp', precision: 7 }],
    ['datetimeoffset(7)', { kind: 'timestamptz', precision: 7 }],
    ['hierarchyid', { kind: 'string', maxLength: 4000 }],
  ])('SQL Server %s', (native, type) => {
    expect(typeOf(mapMssqlType(native))).toEqual(type);
  });

  it.each(['sql_variant', 'geography', 'geometry', 'cursor'])('SQL Server %s is refused with what to do instead', (native) => {
    expect(typeOf(mapMssqlType(native))).toMatch(/query source/);
  });

  it.each<[string, ColumnType, string?]>([
    ['boolean', { kind: 'boolean' }],
    ['smallint', { kind: 'int16' }],
    ['integer', { kind: 'int32' }],
    ['bigint', { kind: 'int64' }],
    ['numeric(38,10)', { kind: 'decimal', precision: 38, scale: 10 }],
    ['real', { kind: 'float32' }],
    ['double precision', { kind: 'float64' }],
    ['text', { kind: 'string', maxLength: null }],
    ['character varying(20)', { kind: 'string', maxLength: 40 }],
    ['character varying', { kind: 'string', maxLength: null }],
    ['character(5)', { kind: 'string', maxLength: 10 }],
    ['json', { kind: 'string', maxLength: null }],
    ['jsonb', { kind: 'string', maxLength: null }],
    ['bytea', { kind: 'binary', maxLength: null }],
    ['uuid', { kind: 'uuid' }],
    ['date', { kind: 'date' }],
    ['time without time zone', { kind: 'time', precision: 6 }],
    ['time(3) without time zone', { kind: 'time', precision: 3 }],
    ['timestamp(3) without time zone', { kind: 'timestamp', precision: 3 }],
    ['timestamp with time zone', { kind: 'timestamptz', precision: 6 }],
    ['mood', { kind: 'string', maxLength: null }, 'e'],
  ])('PostgreSQL %s', (native, type, typtype) => {
    const m = mapPostgresType(native, typtype);
    expect('error' in m ? m.error : m.type).toEqual(type);
  });

  it.each(['numeric', 'numeric(50,2)', 'integer[]', 'interval', 'money', 'point'])('PostgreSQL %s is refused with what to do instead', (native) => {
    const m = mapPostgresType(native);
    expect('error' in m ? m.error : m.type).toMatch(/query source|range/);
  });
});

describe('source table names', () => {
  it('fit 63 bytes, differ per table kind, and do not collide for ambiguous id pairs', () => {
    const long = sourceTables('t'.repeat(63), 's'.repeat(63));
    for (const name of [...Object.values(long), heldKeysTable('t'.repeat(63), 's'.repeat(63))]) expect(Buffer.byteLength(name.name)).toBeLessThanOrEqual(63);
    expect(new Set(Object.values(long).map((n) => n.name)).size).toBe(3);
    expect(sourceTables('a_b', 'c').snapshot).not.toEqual(sourceTables('a', 'b_c').snapshot);
    expect(sourceTables('acme', 'orders').staging.name).toMatch(/^cdc_stg_acme_orders_[0-9a-f]{8}$/);
  });
});

describe('schema fingerprint and drift description', () => {
  const base: SourceSchema = {
    columns: [
      { name: 'id', type: { kind: 'int32' }, nullable: false },
      { name: 'v', type: { kind: 'decimal', precision: 10, scale: 2 }, nullable: true },
    ],
    key: ['id'],
  };
  it('is stable across key order in objects and changes with any shape change', () => {
    const reordered: SourceSchema = { key: ['id'], columns: base.columns.map((c) => ({ nullable: c.nullable, type: c.type, name: c.name })) };
    expect(schemaFingerprint(reordered)).toBe(schemaFingerprint(base));
    const scale: SourceSchema = { ...base, columns: [base.columns[0]!, { ...base.columns[1]!, type: { kind: 'decimal', precision: 10, scale: 3 } }] };
    expect(schemaFingerprint(scale)).not.toBe(schemaFingerprint(base));
    expect(describeDrift(base, scale)).toEqual(['column "v" retyped from decimal(10,2) to decimal(10,3)']);
    expect(describeDrift(base, { ...base, columns: [...base.columns].reverse() })).toEqual(['column order changed']);
    expect(describeDrift(base, { ...base, columns: [base.columns[0]!, { ...base.columns[1]!, nullable: false }] })).toEqual(['column "v" became NOT NULL']);
  });
});

/** Native source types beyond the portable ones, per source dialect, into a PostgreSQL control database. */
describeEachPair('native source types', (sourceDialect, controlDialect) => {
  let source: TestDatabase;
  let control: TestDatabase;
  beforeAll(async () => {
    [source, control] = await Promise.all([createTestDatabase(sourceDialect, 'native_src'), createTestDatabase(controlDialect, 'native_ctl')]);
    await migrate(control.db);
  });
  afterAll(async () => {
    await Promise.all([source?.drop(), control?.drop()]);
  });

  if (sourceDialect === 'postgres') {
    it('PostgreSQL json, jsonb, char(n), enum, domain and timestamp(3) are carried exactly; numeric without scale is refused by name', async () => {
      const db = source.db;
      await db.execute(`CREATE TYPE mood AS ENUM ('ok', 'sad')`);
      await db.execute(`CREATE DOMAIN short_code AS varchar(8)`);
      await db.execute(
        `CREATE TABLE natives (id int PRIMARY KEY, j json, jb jsonb, c char(5), m mood, d short_code, ts timestamp(3), tz timestamptz)`,
      );
      await db.execute(
        `INSERT INTO natives VALUES (1, '{"b": 1,  "a": [1, 2]}', '{"b": 1, "a": "é"}', 'ab', 'sad', 'X1', '2024-01-02 03:04:05.678', '2024-01-02 03:04:05.123456+02')`,
      );
      const run = await runOnce(db, control.db, 'natives', sourceConfig('natives', { table: 'natives' }));
      expect(run.schema.columns.map((c) => [c.name, c.type])).toEqual([
        ['id', { kind: 'int32' }],
        ['j', { kind: 'string', maxLength: null }],
        ['jb', { kind: 'string', maxLength: null }],
        ['c', { kind: 'string', maxLength: 10 }],
        ['m', { kind: 'string', maxLength: null }],
        ['d', { kind: 'string', maxLength: 16 }],
        ['ts', { kind: 'timestamp', precision: 3 }],
        ['tz', { kind: 'timestamptz', precision: 6 }],
      ]);
      expect(run.changes.map((c) => c.row)).toEqual([
        [1, '{"b": 1,  "a": [1, 2]}', '{"a": "é", "b": 1}', 'ab   ', 'sad', 'X1', '2024-01-02T03:04:05.678', '2024-01-02T01:04:05.123456+00:00'],
      ]);
      await acknowledge(control.db, 'natives', 'natives', run.schema);
      expect((await runOnce(db, control.db, 'natives', sourceConfig('natives', { table: 'natives' }))).changes).toEqual([]);

      await db.execute(`CREATE TABLE loose (id int PRIMARY KEY, amount numeric)`);
      await expect(runOnce(db, control.db, 'natives', sourceConfig('loose', { table: 'loose' }))).rejects.toMatchObject({
        retryable: false,
        message: expect.stringMatching(/tenant "natives", source "loose": column "amount": numeric without precision/),
      });
    });

    it('a PostgreSQL varchar(n) full of characters outside the BMP fits: it is carried as string(2n), on SQL Server nvarchar(2n), which n such characters fill', async () => {
      const db = source.db;
      await db.execute(`CREATE TABLE astral (id int PRIMARY KEY, v varchar(4), c char(2))`);
      await db.execute(`INSERT INTO astral VALUES (1, '🦄🦄🦄🦄', '🦄🦄'), (2, 'abcd', 'é')`);
      const run = await runOnce(db, control.db, 'astral', sourceConfig('astral', { table: 'astral' }));
      expect(run.schema.columns.map((c) => [c.name, c.type])).toEqual([
        ['id', { kind: 'int32' }],
        ['v', { kind: 'string', maxLength: 8 }],
        ['c', { kind: 'string', maxLength: 4 }],
      ]);
      expect(run.changes.map((c) => c.row)).toEqual([
        [1, '🦄🦄🦄🦄', '🦄🦄'],
        [2, 'abcd', 'é '],
      ]);
      await acknowledge(control.db, 'astral', 'astral', run.schema);
      expect((await runOnce(db, control.db, 'astral', sourceConfig('astral', { table: 'astral' }))).changes).toEqual([]);
    });

    it('PostgreSQL dates and timestamps: years 0001 and 9999 are carried; infinity, BC and year 10000 fail the run naming the column', async () => {
      const db = source.db;
      await db.execute(`CREATE TABLE spans (id int PRIMARY KEY, d date, ts timestamp, tz timestamptz)`);
      await db.execute(
        `INSERT INTO spans VALUES (1, '0001-01-01', '0001-01-01 00:00:00', '0001-01-01 00:00:00+00'), (2, '9999-12-31', '9999-12-31 23:59:59.999999', '9999-12-31 23:59:59.999999+00'), (3, NULL, NULL, NULL)`,
      );
      const run = await runOnce(db, control.db, 'spans', sourceConfig('spans', { table: 'spans' }));
      expect(run.changes.map((c) => c.row)).toEqual([
        [1, '0001-01-01', '0001-01-01T00:00:00.000000', '0001-01-01T00:00:00.000000+00:00'],
        [2, '9999-12-31', '9999-12-31T23:59:59.999999', '9999-12-31T23:59:59.999999+00:00'],
        [3, null, null, null],
      ]);
      for (const [column, value] of [
        ['d', `'infinity'`],
        ['d', `'0044-03-15 BC'`],
        ['ts', `'-infinity'`],
        ['ts', `'10000-01-01 00:00:00'`],
        ['tz', `'infinity'`],
        ['tz', `'0001-01-01 00:00:00+01'`],
      ] as const) {
        await db.execute(`INSERT INTO spans (id, ${column}) VALUES (4, ${value})`);
        await expect(runOnce(db, control.db, 'spans', sourceConfig('spans', { table: 'spans' }))).rejects.toMatchObject({
          retryable: false,
          message: expect.stringContaining(`column "${column}" holds`),
        });
        await db.execute(`DELETE FROM spans WHERE id = 4`);
      }
    });
  } else {
    itUnless(babelfishGap(sourceDialect, 'rowversion') || babelfishGap(sourceDialect, 'no-hierarchyid'))('SQL Server money, datetime, smalldatetime, datetimeoffset, nchar, ntext, text, image, xml, rowversion and hierarchyid are carried exactly; sql_variant is refused by name', async () => {
      const db = source.db;
      await db.execute(
        `CREATE TABLE dbo.natives (id int PRIMARY KEY, m money, sm smallmoney, dt datetime, sdt smalldatetime, dto datetimeoffset(7),
           nc nchar(5), nt ntext, tx text, img image, x xml, rv rowversion, h hierarchyid)`,
      );
      await db.execute(
        `INSERT INTO dbo.natives (id, m, sm, dt, sdt, dto, nc, nt, tx, img, x, h) VALUES (1, 922337203685477.5807, -214748.3648,
           '2024-01-02T03:04:05.997', '2024-01-02T03:04:00', '2024-01-02T03:04:05.1234567+02:00', N'ab', N'ntext 🦄', 'text', 0x00FF, N'<a b="1"/>', hierarchyid::Parse('/1/2/'))`,
      );
      const cfg = sourceConfig('natives', { table: 'dbo.natives' });
      const run = await runOnce(db, control.db, 'natives', cfg);
      expect(run.schema.columns.map((c) => [c.name, c.type.kind])).toEqual([
        ['id', 'int32'],
        ['m', 'decimal'],
        ['sm', 'decimal'],
        ['dt', 'timestamp'],
        ['sdt', 'timestamp'],
        ['dto', 'timestamptz'],
        ['nc', 'string'],
        ['nt', 'string'],
        ['tx', 'string'],
        ['img', 'binary'],
        ['x', 'string'],
        ['rv', 'binary'],
        ['h', 'string'],
      ]);
      const row = run.changes[0]!.row;
      expect(row.slice(0, 11)).toEqual([
        1, '922337203685477.5807', '-214748.3648', '2024-01-02T03:04:05.997', '2024-01-02T03:04:00', expect.stringMatching(/^2024-01-02T0[13]:04:05\.\d+/),
        'ab   ', 'ntext 🦄', 'text', Buffer.from([0, 255]), '<a b="1"/>',
      ]);
      expect(row[12]).toBe('/1/2/');
      await acknowledge(control.db, 'natives', cfg.id, run.schema);
      expect((await runOnce(db, control.db, 'natives', cfg)).changes).toEqual([]);

      await db.execute(`CREATE TABLE dbo.variant (id int PRIMARY KEY, v sql_variant)`);
      await expect(runOnce(db, control.db, 'natives', sourceConfig('variant', { table: 'dbo.variant' }))).rejects.toMatchObject({
        retryable: false,
        message: expect.stringMatching(/tenant "natives", source "variant": column "v": sql_variant/),
      });
    });
  }
});
