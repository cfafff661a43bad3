import { afterAll, beforeAll, expect, it } from 'vitest';
import { changeEncoder, keyIndexes, readChangeBytes, readChanges, readChangeSizes, readJoinedEntries, storedEntrySql } from '../../src/batching/change-set.ts';
import type { Cell, ColumnSpec } from '../../src/dialect/types.ts';
import { encodeChange, frameBatch } from '../../src/contract/wire.ts';
import { bodyFrame, frameBatchBytes } from '../../src/push/push.ts';
import type { SourceSchema } from '../../src/snapshot/schema.ts';
import { sourceTables } from '../../src/snapshot/source-tables.ts';
import { babelfishGap, createTestDatabase, describeEachDialect, itUnless, type TestDatabase } from '../support/databases.ts';
import { createSourceTables, fillChanges, setUpControl } from '../push/support.ts';
import { EVERY_TYPE_COLUMNS } from '../support/every-type.ts';

/** The shared every-type fixture plus more fractional-second precisions (floats PostgreSQL and JavaScript spell differently are in the rows). */
const shared = (name: string): ColumnSpec => EVERY_TYPE_COLUMNS.find((c) => c.name === name)!;
const COLUMNS: ColumnSpec[] = [
  ...EVERY_TYPE_COLUMNS.slice(0, EVERY_TYPE_COLUMNS.indexOf(shared('at7')) + 1),
  { name: 'at0', type: { kind: 'timestamp', precision: 0 }, nullable: true },
  { name: 'at3', type: { kind: 'timestamp', precision: 3 }, nullable: true },
  shared('clock'),
  { name: 'clock2', type: { kind: 'time', precision: 2 }, nullable: true },
  shared('stamped'),
  { name: 'stamped3', type: { kind: 'timestamptz', precision: 3 }, nullable: true },
];
const SCHEMA: SourceSchema = { columns: COLUMNS, key: ['id'] };
const col = (name: string) => COLUMNS.findIndex((c) => c.name === name);

const BASE: Cell[] = [
  0, true, 0, 9007199254740993n, '0.0000000001', 0.1, Math.fround(0.1), 'base', 'tab\tnew\nline\\back\rslash "quoted" \u0001\u001f\u007f\u2028',
  Buffer.from([0, 1, 2]), 'ffffffff-ffff-ffff-ffff-ffffffffffff', '9999-12-31', '2000-01-01T12:00:00.500000', '2000-01-01T12:00:00.5000000',
  '2000-01-01T12:00:00', '2000-01-01T12:00:00.120', '12:00:00.000001', '12:00:00.10', '2000-01-01T12:00:00.000000+00:00', '2000-01-01T12:00:00.999+00:00',
];
const withId = (id: number, row: Cell[] = BASE): Cell[] => [id, ...row.slice(1)];
const set = (id: number, values: Record<string, Cell>): Cell[] => {
  const row = withId(id);
  for (const [k, v] of Object.entries(values)) row[col(k)] = v;
  return row;
};

const FLOATS = [
  1e21, 1e20, 123456789012345680000, 1e15, 1234567890123456.8, 1e-7, 1.5e-7, 1e-6, 5e-5, 0.0001, 1e-5, -0, 5e-324, 1e300, -2.5e-10, 100, 0.5, Number.MAX_SAFE_INTEGER,
  NaN, Infinity, -Infinity,
  // PostgreSQL's shortest digits are not JavaScript's here: a bound of the interval that reads back from one digit
  // fewer (float8 4.0919270273950384e+16 and 8.650411806769459e+16, float4 1.09064816e+08), and a float4 tie
  // (3516931.25: Ryu takes the even 3516931.2, JavaScript 3516931.3)
  40919270273950384, 86504118067694592, 109064816, 3516931.25,
];

const ALL_ROWS: Cell[][] = [
  [
    1, true, -32768, 9223372036854775807n, '9999999999999999999999999999.9999999999', 1.7976931348623157e308, Math.fround(3.4028234e38),
    'plain', 'x'.repeat(100_000), Buffer.alloc(70_000, 0xab), '123e4567-e89b-12d3-a456-426614174000', '2024-02-29',
    '2024-02-29T23:59:59.999999', '2024-02-29T23:59:59.9999999', '2024-02-29T23:59:59', '2024-02-29T23:59:59.999', '23:59:59.999999', '23:59:59.99',
    '2024-02-29T23:59:59.123456+00:00', '2024-02-29T23:59:59.123+00:00',
  ],
  [
    2, false, 32767, -9223372036854775808n, '-9999999999999999999999999999.9999999999', -4.9e-324, Math.fround(-1.5),
    // 200 UTF-16 units: exactly a string(200), which SQL Server's nvarchar(200) counts in UTF-16 units (🦄 takes two)
    '🦄'.repeat(50) + 'e\u0301'.repeat(50), '  trailing spaces  ', Buffer.alloc(0), '00000000-0000-0000-0000-000000000000', '0001-01-01',
    '1970-01-01T00:00:00.000001', '1900-01-01T00:00:00.0000001', '1970-01-01T00:00:00', '1970-01-01T00:00:00.001', '00:00:00.000000', '00:00:00.00',
    '1999-12-31T23:59:59.000001+00:00', '1999-12-31T23:59:59.001+00:00',
  ],
  [3, ...COLUMNS.slice(1).map(() => null)],
  withId(4),
  set(5, { label: 'é'.repeat(200), blob: Buffer.from(Array.from({ length: 256 }, (_, i) => i)) }),
  ...FLOATS.map((f, i) => set(10 + i, { ratio: f, ratio32: Math.fround(f) })),
];
/** Keys deleted: their rows carry only the key. */
const DELETED = new Set([4, 12]);

/** A float column holding NaN or an infinity, which SQL Server's float and real cannot hold. */
const nonFinite = (row: Cell[]) => [col('ratio'), col('ratio32')].some((i) => typeof row[i] === 'number' && !Number.isFinite(row[i]));

describeEachDialect('change entries rendered in SQL equal the Node encoding', (dialect) => {
  let t: TestDatabase;
  const changes = sourceTables('acme', 'every').changes;
  // A SQL Server control database holds every row but those (their refusal is tested below).
  const ROWS = dialect === 'mssql' ? ALL_ROWS.filter((row) => !nonFinite(row)) : ALL_ROWS;
  beforeAll(async () => {
    t = await createTestDatabase(dialect, 'render');
    await setUpControl(t.db);
    await createSourceTables(t.db, 'acme', 'every', SCHEMA);
    await fillChanges(t.db, 'acme', 'every', ROWS.map((row) => ({ op: DELETED.has(row[0] as number) ? ('D' as const) : ('U' as const), row })), SCHEMA);
  });
  afterAll(async () => {
    await t?.drop();
  });

  /** What encodeChange makes of the fixture itself, in seq (= key) order. */
  function expected(): string[] {
    return [...ROWS]
      .sort((a, b) => (a[0] as number) - (b[0] as number))
      .map((row) => encodeChange(DELETED.has(row[0] as number) ? 'D' : 'U', row, COLUMNS, keyIndexes(SCHEMA)));
  }

  // Babelfish keeps datetime2(7) at 6 digits, so the fixture's 7th digits do not come back there.
  const exact = itUnless(babelfishGap(dialect, 'datetime2-7'));

  exact('readChanges yields exactly the bytes encodeChange gives for the every-type rows (whichever encoder the dialect uses)', async () => {
    const entries: string[] = [];
    for await (const c of readChanges(t.db, changes, SCHEMA)) entries.push(c.entry);
    expect(entries).toEqual(expected());
  });

  it('the SQL rendering, where the dialect has one, is byte-identical to the Node encoding of the same change table', async () => {
    const encoder = await changeEncoder(t.db);
    expect(encoder).toBe(dialect === 'postgres' ? 'sql' : 'node');
    const node: Array<{ seq: bigint; op: string; entry: string }> = [];
    for await (const c of readChanges(t.db, changes, SCHEMA, undefined, 'node')) node.push(c);
    const mine: Array<{ seq: bigint; op: string; entry: string }> = [];
    for await (const c of readChanges(t.db, changes, SCHEMA, undefined, encoder)) mine.push(c);
    expect(mine).toHaveLength(ROWS.length);
    for (const [i, c] of mine.entries()) expect(Buffer.from(c.entry)).toEqual(Buffer.from(node[i]!.entry));
    expect(mine.map((c) => [c.seq, c.op])).toEqual(node.map((c) => [c.seq, c.op]));
  });

  it('a seq range reads only that range, and the sizes the cutter reads are the entries\' byte lengths', async () => {
    const all = expected();
    const part: string[] = [];
    for await (const c of readChanges(t.db, changes, SCHEMA, { first: 3n, last: 7n })) part.push(c.entry);
    expect(part).toEqual(all.slice(2, 7));
    const sizes: number[] = [];
    for await (const s of readChangeSizes(t.db, changes, SCHEMA)) sizes.push(s.bytes);
    expect(sizes).toEqual(all.map((e) => Buffer.byteLength(e, 'utf8')));
  });

  exact('readChangeBytes yields the same entries as UTF-8 bytes (both encoders, a range too), and frameBatchBytes frames them exactly as frameBatch', async () => {
    const all = expected();
    for (const encoder of ['node', await changeEncoder(t.db)] as const) {
      const bytes: Array<{ seq: bigint; op: string; entry: Buffer }> = [];
      for await (const c of readChangeBytes(t.db, changes, SCHEMA, undefined, encoder)) bytes.push(c);
      expect(bytes.map((c) => c.entry)).toEqual(all.map((e) => Buffer.from(e, 'utf8')));
      const ranged: Buffer[] = [];
      for await (const c of readChangeBytes(t.db, changes, SCHEMA, { first: 3n, last: 7n }, encoder)) ranged.push(c.entry);
      expect(ranged).toEqual(all.slice(2, 7).map((e) => Buffer.from(e, 'utf8')));
      const header = { runId: 'r1', mode: 'initial' as const, batch: 3, part: '1.2', schemaJson: '{"version":"x"}' };
      expect(frameBatchBytes(header, bytes.map((c) => c.entry))).toEqual(Buffer.from(frameBatch(header, all), 'utf8'));
      expect(frameBatchBytes(header, ranged.slice(0, 1))).toEqual(Buffer.from(frameBatch(header, all.slice(2, 3)), 'utf8'));
      expect(frameBatchBytes({ ...header, part: undefined }, [])).toEqual(Buffer.from(frameBatch({ runId: 'r1', mode: 'initial', batch: 3, schemaJson: '{"version":"x"}' }, []), 'utf8'));
    }
  });

  exact('readJoinedEntries frames a range into exactly the body frameBatch makes of the same entries, whatever size it was told to expect, whether the diff stored the entries or not', async () => {
    const all = expected();
    const header = { runId: 'r1', mode: 'incremental' as const, batch: 2, schemaJson: '{"version":"x"}' };
    const expectedBody = (entries: string[]) => Buffer.from(frameBatch(header, entries), 'utf8');
    const size = (entries: string[]) => entries.reduce((n, e) => n + Buffer.byteLength(e, 'utf8') + 1, 0) - 1;
    // The fixture's rows carry no stored entry (rendered as they are read); then some, then all, as the diff stores them.
    const stored = await storedEntrySql(t.db, SCHEMA);
    const storing = stored === null ? [null] : [null, `${t.db.quote('seq')} % 2 = 0`, 'true'];
    try {
      for (const where of storing) {
        if (where !== null) await t.db.execute(`UPDATE ${t.db.table(changes)} SET ${t.db.quote('cdc_entry')} = ${stored} WHERE ${where}`);
        for (const [first, last] of [[1n, BigInt(all.length)], [3n, 7n], [4n, 4n]] as const) {
          const entries = all.slice(Number(first) - 1, Number(last));
          // The recorded size (the push passes it), then sizes too small and too large: the body is the same.
          for (const hint of [size(entries), 0, size(entries) * 3]) {
            const got = await readJoinedEntries(t.db, changes, SCHEMA, { first, last }, { ...bodyFrame(header), size: hint });
            expect(got.rows).toBe(entries.length);
            expect(got.body).toEqual(expectedBody(entries));
          }
        }
      }
      if (stored !== null) {
        // What is stored is what is sent: a stored entry is never rendered again.
        await t.db.execute(`UPDATE ${t.db.table(changes)} SET ${t.db.quote('cdc_entry')} = '{"stored":true}' WHERE ${t.db.quote('seq')} = 4`);
        const got = await readJoinedEntries(t.db, changes, SCHEMA, { first: 4n, last: 4n }, { ...bodyFrame(header), size: 0 });
        expect(got.body).toEqual(expectedBody(['{"stored":true}']));
      }
    } finally {
      if (stored !== null) await t.db.execute(`UPDATE ${t.db.table(changes)} SET ${t.db.quote('cdc_entry')} = NULL`);
    }
    const none = await readJoinedEntries(t.db, changes, SCHEMA, { first: 10_000n, last: 10_001n }, { ...bodyFrame(header), size: 0 });
    expect(none).toEqual({ rows: 0, body: expectedBody([]) });
  });

  if (dialect === 'mssql') {
    it('NaN and the infinities, which SQL Server float and real cannot hold, are refused before the bulk load, naming the column', async () => {
      for (const row of ALL_ROWS.filter(nonFinite)) {
        const refused = fillChanges(t.db, 'acme', 'every', [{ op: 'U', row }], SCHEMA);
        await expect(refused).rejects.toThrow(/column "ratio(32)?" holds (NaN|Infinity|-Infinity), which SQL Server's (float|real) cannot hold; render it in a query source/);
      }
      // the connection is still good, and nothing of the refused loads landed (the helper empties the table first)
      const [held] = await t.db.query<{ n: unknown }>(`SELECT count(*) AS n FROM ${t.db.table(changes)}`);
      expect(Number(held!.n)).toBe(0);
    });
  }
});
