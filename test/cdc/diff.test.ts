import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Cell, ColumnSpec, Db } from '../../src/dialect/types.ts';
import { computeDiff } from '../../src/cdc/diff.ts';
import { PART_SEQ_OFFSET } from '../../src/cdc/diff-sql.ts';
import { migrate } from '../../src/migrations/migrate.ts';
import { sourceTables } from '../../src/snapshot/source-tables.ts';
import { babelfishGap, createTestDatabase, itUnless, type TestDatabase } from '../support/databases.ts';
import { acknowledge, collect, createTable, describeEachPair, readChanges as readChangeCells, runOnce, sourceConfig, stagingRows } from '../snapshot/pipeline.ts';
import { EVERY_TYPE_COLUMNS } from '../support/every-type.ts';
import { readChanges, storedEntrySql } from '../../src/batching/change-set.ts';
import type { SourceSchema } from '../../src/snapshot/schema.ts';

const TENANT = 'acme';

/** Every supported portable type, created natively in the source dialect. */
const COLUMNS: ColumnSpec[] = [...EVERY_TYPE_COLUMNS];
const col = (name: string) => COLUMNS.findIndex((c) => c.name === name);

const BASE: Cell[] = [
  0, true, 0, 9007199254740993n, '0.0000000001', 0.1, Math.fround(0.1), 'base', 'tab\tnew\nline\\back\rslash', Buffer.from([0, 1, 2]),
  'ffffffff-ffff-ffff-ffff-ffffffffffff', '9999-12-31', '2000-01-01T12:00:00.500000', '2000-01-01T12:00:00.5000000', '12:00:00.000001',
  '2000-01-01T12:00:00.000000+00:00',
];
const withId = (id: number, row: Cell[] = BASE): Cell[] => [id, ...row.slice(1)];

const ROWS: Cell[][] = [
  [
    1, true, -32768, 9223372036854775807n, '9999999999999999999999999999.9999999999', 1.7976931348623157e308, Math.fround(3.4028234e38),
    'plain', 'x'.repeat(100_000), Buffer.alloc(70_000, 0xab), '123e4567-e89b-12d3-a456-426614174000', '2024-02-29',
    '2024-02-29T23:59:59.999999', '2024-02-29T23:59:59.9999999', '23:59:59.999999', '2024-02-29T23:59:59.123456+00:00',
  ],
  [
    2, false, 32767, -9223372036854775808n, '-9999999999999999999999999999.9999999999', -4.9e-324, Math.fround(-1.5),
    // 200 UTF-16 units: exactly a string(200), which SQL Server's nvarchar(200) counts in UTF-16 units (🦄 takes two)
    '🦄'.repeat(50) + 'e\u0301'.repeat(50), '  trailing spaces  ', Buffer.alloc(0), '00000000-0000-0000-0000-000000000000', '0001-01-01',
    '1970-01-01T00:00:00.000001', '1900-01-01T00:00:00.0000001', '00:00:00.000000', '1999-12-31T23:59:59.000001+00:00',
  ],
  [3, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null],
  withId(4),
  withId(5),
  withId(6),
  withId(7),
  withId(8, [0, ...BASE.slice(1, col('label')), 'é'.repeat(200), ...BASE.slice(col('label') + 1)]),
  withId(9),
  withId(10),
  withId(12),
];

describeEachPair('snapshot and diff', (sourceDialect, controlDialect) => {
  let source: TestDatabase;
  let control: TestDatabase;
  let src: Db;
  let ctl: Db;
  const t = (name: string) => src.table({ name });

  beforeAll(async () => {
    [source, control] = await Promise.all([createTestDatabase(sourceDialect, 'diff_src'), createTestDatabase(controlDialect, 'diff_ctl')]);
    src = source.db;
    ctl = control.db;
    await migrate(ctl);
  });
  afterAll(async () => {
    await Promise.all([source?.drop(), control?.drop()]);
  });

  /**
   * The push entries of the change table, as the batch and push stages read them (pre-rendered by the diff
   * where the control database renders in SQL), are exactly the Node encoding of its rows.
   */
  async function expectEntriesAsEncoded(sourceId: string, schema: SourceSchema): Promise<void> {
    const { changes } = sourceTables(TENANT, sourceId);
    const node = await collect(readChanges(ctl, changes, schema, undefined, 'node'));
    expect(node.length).toBeGreaterThan(0);
    expect(await collect(readChanges(ctl, changes, schema))).toEqual(node);
    if ((await storedEntrySql(ctl, schema)) !== null) {
      const [missing] = await ctl.query<{ n: unknown }>(`SELECT count(*) AS n FROM ${ctl.table(changes)} WHERE ${ctl.quote('cdc_entry')} IS NULL`);
      expect(Number(missing!.n)).toBe(0);
    }
  }

  async function update(table: string, column: string, value: unknown, id: number): Promise<void> {
    await src.execute(`UPDATE ${t(table)} SET ${src.quote(column)} = ${src.param(1)} WHERE ${src.quote('id')} = ${src.param(2)}`, [value, id]);
  }

  itUnless(babelfishGap(sourceDialect, 'datetime2-7'))('every type with edge values: an initial sync is all upserts, exactly the source rows in key order', async () => {
    await createTable(src, 'all_types', COLUMNS, ['id']);
    await src.bulkWrite({ name: 'all_types' }, COLUMNS, ROWS);
    const cfg = sourceConfig('all_types', { table: 'all_types' });
    const run = await runOnce(src, ctl, TENANT, cfg);
    // PostgreSQL has no 7-digit timestamp: the source column is text there (see docs/type-mapping.md); and its
    // varchar(n) counts characters, which the portable type carries as 2n UTF-16 code units.
    const native = COLUMNS.map((c) =>
      sourceDialect !== 'postgres'
        ? c
        : c.name === 'at7'
          ? { ...c, type: { kind: 'string' as const, maxLength: null } }
          : c.type.kind === 'string' && c.type.maxLength !== null
            ? { ...c, type: { ...c.type, maxLength: 2 * c.type.maxLength } }
            : c,
    );
    expect(run.schema).toEqual({ columns: native, key: ['id'] });
    expect(run.rows).toBe(ROWS.length);
    expect({ upserts: run.upserts, deletes: run.deletes }).toEqual({ upserts: ROWS.length, deletes: 0 });
    expect(run.changes.map((c) => [c.seq, c.op])).toEqual(ROWS.map((_r, i) => [i + 1, 'U']));
    run.changes.forEach((change, r) =>
      change.row.forEach((cell, c) => expect({ row: r, column: COLUMNS[c]!.name, cell }).toEqual({ row: r, column: COLUMNS[c]!.name, cell: ROWS[r]![c] })),
    );
    await expectEntriesAsEncoded(cfg.id, run.schema);
    await acknowledge(ctl, TENANT, cfg.id, run.schema);
    expect(await stagingRows(ctl, TENANT, cfg.id, run.schema)).toEqual(ROWS);

    const again = await runOnce(src, ctl, TENANT, cfg);
    expect(again.changes).toEqual([]);
  });

  itUnless(babelfishGap(sourceDialect, 'datetime2-7'))('then sees exactly: insert, one-column update, case-only, trailing space, NULL→value, value→NULL, one byte, last digit, delete', async () => {
    const cfg = sourceConfig('all_types', { table: 'all_types' });
    const expected = new Map<number, Cell[] | null>();
    const change = async (id: number, column: string, value: Cell) => {
      await update('all_types', column, value, id);
      const row = [...(expected.get(id) ?? ROWS.find((r) => r[0] === id)!)];
      row[col(column)] = value;
      expected.set(id, row);
    };
    await change(1, 'label', 'Plain'); // case only
    await change(2, 'body', '  trailing spaces   '); // one more trailing space
    await change(3, 'label', 'now set'); // NULL → value
    await change(4, 'ratio', 0.2); // one column
    await src.execute(`DELETE FROM ${t('all_types')} WHERE ${src.quote('id')} = ${src.param(1)}`, [5]);
    expected.set(5, null);
    await change(6, 'blob', Buffer.from([0, 1, 3])); // one byte
    await change(7, 'guid', null); // value → NULL
    await change(9, 'amount', '0.0000000002'); // last decimal digit
    await change(10, 'at7', '2000-01-01T12:00:00.5000001'); // 7th fractional digit
    const inserted = withId(11, ROWS[0]!);
    await src.bulkWrite({ name: 'all_types' }, COLUMNS, [inserted]);
    expected.set(11, inserted);

    const run = await runOnce(src, ctl, TENANT, cfg);
    const ids = [...expected.keys()].sort((a, b) => a - b);
    expect(run.changes.map((c) => [c.seq, c.op, c.row[0]])).toEqual(ids.map((id, i) => [i + 1, expected.get(id) ? 'U' : 'D', id]));
    for (const c of run.changes) {
      const want = expected.get(c.row[0] as number);
      expect(c.row).toEqual(want ?? [c.row[0], ...COLUMNS.slice(1).map(() => null)]);
    }
    expect({ upserts: run.upserts, deletes: run.deletes }).toEqual({ upserts: ids.length - 1, deletes: 1 });
    await expectEntriesAsEncoded(cfg.id, run.schema);

    await acknowledge(ctl, TENANT, cfg.id, run.schema);
    expect((await runOnce(src, ctl, TENANT, cfg)).changes).toEqual([]);
  });

  /**
   * A 1,001-row source for the split fills: a composite key (region, n) whose first column repeats, so that a
   * split falls inside a run of equal first values.
   */
  async function splitSource(table: string): Promise<{ columns: ColumnSpec[]; rows: Cell[][]; cfg: ReturnType<typeof sourceConfig> }> {
    const columns: ColumnSpec[] = [
      { name: 'region', type: { kind: 'string', maxLength: 10 }, nullable: false },
      { name: 'n', type: { kind: 'int32' }, nullable: false },
      { name: 'label', type: { kind: 'string', maxLength: 40 }, nullable: true },
    ];
    await createTable(src, table, columns, ['region', 'n']);
    const rows: Cell[][] = Array.from({ length: 1001 }, (_, i) => [i % 3 === 0 ? 'eu' : 'us', 1000 - i, i % 7 === 0 ? null : `row ${i}`]);
    await src.bulkWrite({ name: table }, columns, rows);
    return { columns, rows, cfg: sourceConfig(table, { table }) };
  }

  it('an initial fill split over two connections (where the dialect does) numbers and renders exactly as one fill', async () => {
    const { cfg } = await splitSource('split_fill');
    const first = await runOnce(src, ctl, TENANT, cfg);
    expect(first.upserts).toBe(1001);
    const { changes } = sourceTables(TENANT, cfg.id);
    const whole = { cells: first.changes, entries: await collect(readChanges(ctl, changes, first.schema)) };

    const split = await computeDiff({ controlDb: ctl, tenant: TENANT, source: cfg, schema: first.schema, snapshotSet: false, splitFillRows: 2 });
    expect(split).toEqual({ upserts: 1001, deletes: 0, changeSet: 'table' });
    const again = await runOnceChanges(cfg.id, first.schema);
    expect(again.cells).toEqual(whole.cells);
    expect(again.entries).toEqual(whole.entries);
    expect(again.cells.map((c) => c.seq)).toEqual(Array.from({ length: 1001 }, (_, i) => i + 1));
  });

  it('an incremental fill split into parts (where the dialect does) finds exactly the single fill\'s changes', async () => {
    const table = 'split_changes';
    const { columns, rows, cfg } = await splitSource(table);
    const first = await runOnce(src, ctl, TENANT, cfg);
    await acknowledge(ctl, TENANT, cfg.id, first.schema);

    // Staging's keys in key order. Two parts split at keys[500]; four parts (at most 300 rows each) at keys[250],
    // keys[500] and keys[750]. Change the boundary rows, the rows just before and after them, both ends, and add
    // keys below and above every existing one.
    type Key = readonly [string, number];
    const before = (a: Key, b: Key) => a[0] < b[0] || (a[0] === b[0] && a[1] < b[1]);
    const keys: Key[] = rows.map((r): Key => [r[0] as string, r[1] as number]).sort((a, b) => (before(a, b) ? -1 : 1));
    const q = (n: string) => src.quote(n);
    const byKey = `${q('region')} = ${src.param(2)} AND ${q('n')} = ${src.param(3)}`;
    for (const i of [0, 250, 500, 750, 1000]) await src.execute(`UPDATE ${t(table)} SET ${q('label')} = ${src.param(1)} WHERE ${byKey}`, [`changed ${i}`, ...keys[i]!]);
    for (const i of [249, 499, 501]) await src.execute(`DELETE FROM ${t(table)} WHERE ${q('region')} = ${src.param(1)} AND ${q('n')} = ${src.param(2)}`, [...keys[i]!]);
    await src.bulkWrite({ name: table }, columns, [['aa', 1, 'below all'], ['zz', 1, 'above all']]);

    const single = await runOnce(src, ctl, TENANT, cfg);
    expect({ upserts: single.upserts, deletes: single.deletes }).toEqual({ upserts: 7, deletes: 3 });
    const whole = await runOnceChanges(cfg.id, first.schema);
    const withoutSeq = <T extends { seq: unknown }>(list: T[]) => list.map(({ seq: _seq, ...rest }) => rest);
    // With one connection, a table within one part is one fill, and a larger one is still diffed in parts, one at a time.
    for (const { partRows, connections, boundaries } of [
      { partRows: undefined, connections: 2, boundaries: [500] },
      { partRows: 300, connections: 2, boundaries: [250, 500, 750] },
      { partRows: undefined, connections: 1, boundaries: [] },
      { partRows: 300, connections: 1, boundaries: [250, 500, 750] },
    ]) {
      const split = await computeDiff({ controlDb: ctl, tenant: TENANT, source: cfg, schema: first.schema, snapshotSet: false, splitFillRows: 2, connections, ...(partRows ? { partRows } : {}) });
      expect(split).toEqual({ upserts: 7, deletes: 3, changeSet: 'table', ...(controlDialect === 'postgres' ? { join: expect.any(String) } : {}) });
      const again = await runOnceChanges(cfg.id, first.schema);
      expect(withoutSeq(again.cells)).toEqual(withoutSeq(whole.cells));
      expect(withoutSeq(again.entries)).toEqual(withoutSeq(whole.entries));
      // seq increases in key order; where the fill was split, part i numbers from i × PART_SEQ_OFFSET + 1.
      const partOf = (key: Key) => (controlDialect === 'postgres' ? boundaries.filter((b) => !before(key, keys[b]!)).length : 0);
      const ranks = new Map<number, number>();
      const expected = again.cells.map((c) => {
        const part = partOf([c.row[0] as string, c.row[1] as number]);
        ranks.set(part, (ranks.get(part) ?? 0) + 1);
        return BigInt(part) * BigInt(PART_SEQ_OFFSET) + BigInt(ranks.get(part)!);
      });
      expect(again.cells.map((c) => BigInt(c.seq))).toEqual(expected);
      if (controlDialect === 'postgres') expect(ranks.size).toBe(boundaries.length + 1);
    }
  });

  it('an incremental diff of tables in key order merges over their key indexes, and finds exactly what the hash join finds', async () => {
    // Two sources with the same rows, onboarded alike; in the control database one staging table is then put out of
    // key order (reinserted shuffled), which leaves that diff to the hash join. ≈ 70 pages each, so the sample of
    // pages has something to measure.
    const columns: ColumnSpec[] = [
      { name: 'id', type: { kind: 'int32' }, nullable: false },
      { name: 'v', type: { kind: 'int32' }, nullable: true },
      { name: 'label', type: { kind: 'string', maxLength: 200 }, nullable: true },
    ];
    const rows: Cell[][] = Array.from({ length: 4000 }, (_, i) => [i * 2 + 2, i % 5 === 0 ? null : i, `${'pad '.repeat(20)}${i}`]);
    const shuffled = <T,>(list: T[]) => list.map((x, i) => ({ x, r: (i * 7919) % list.length })).sort((a, b) => a.r - b.r).map(({ x }) => x);
    const q = (n: string) => src.quote(n);
    const results: Record<string, NonNullable<Awaited<ReturnType<typeof runOnce>>>> = {};
    for (const table of ['in_order', 'out_of_order']) {
      await createTable(src, table, columns, ['id']);
      await src.bulkWrite({ name: table }, columns, rows);
      const cfg = sourceConfig(table, { table });
      const first = await runOnce(src, ctl, TENANT, cfg);
      await acknowledge(ctl, TENANT, cfg.id, first.schema);
      const { staging } = sourceTables(TENANT, cfg.id);
      if (table === 'out_of_order') {
        const held = await stagingRows(ctl, TENANT, cfg.id, first.schema);
        await ctl.execute(`DELETE FROM ${ctl.table(staging)}`);
        await ctl.bulkWrite(staging, columns, shuffled(held));
      }
      // The same changes in both: values to and from NULL, a case and a trailing space only, deletes, and keys
      // below, between and above the held ones.
      const set = async (id: number, column: string, value: Cell) => src.execute(`UPDATE ${t(table)} SET ${q(column)} = ${src.param(1)} WHERE ${q('id')} = ${src.param(2)}`, [value, id]);
      await set(2, 'v', 7);
      await set(4, 'v', null);
      await set(4000, 'label', rows[1999]![2]!.toString().toUpperCase());
      await set(8000, 'label', `${rows[3999]![2]!.toString()} `);
      await set(6000, 'v', rows[2999]![1]!);
      for (const id of [10, 4002, 7998]) await src.execute(`DELETE FROM ${t(table)} WHERE ${q('id')} = ${src.param(1)}`, [id]);
      await src.bulkWrite({ name: table }, columns, [[1, 1, 'below'], [3001, null, 'between'], [9001, 9, 'above']]);
      results[table] = await runOnce(src, ctl, TENANT, cfg);
    }
    const expected = [
      ['U', 1, 1, 'below'],
      ['U', 2, 7, rows[0]![2]],
      ['U', 4, null, rows[1]![2]],
      ['D', 10, null, null],
      ['U', 3001, null, 'between'],
      ['U', 4000, 1999, rows[1999]![2]!.toString().toUpperCase()],
      ['D', 4002, null, null],
      ['D', 7998, null, null],
      ['U', 8000, 3999, `${rows[3999]![2]!.toString()} `],
      ['U', 9001, 9, 'above'],
    ];
    for (const result of Object.values(results)) {
      expect(result.changes.map((c) => [c.op, ...c.row])).toEqual(expected);
      expect({ upserts: result.upserts, deletes: result.deletes }).toEqual({ upserts: 7, deletes: 3 });
    }
    // The agent chooses the join only on PostgreSQL; SQL Server's optimizer chooses its own.
    expect([results.in_order!.join, results.out_of_order!.join]).toEqual(controlDialect === 'postgres' ? ['merge', 'hash'] : [undefined, undefined]);

    // Split into parts (two at once), the merge finds the same.
    const cfg = sourceConfig('in_order', { table: 'in_order' });
    const schema = results.in_order!.schema;
    const parts = await computeDiff({ controlDb: ctl, tenant: TENANT, source: cfg, schema, snapshotSet: false, splitFillRows: 2, partRows: 1000 });
    expect(parts).toMatchObject({ upserts: 7, deletes: 3, ...(controlDialect === 'postgres' ? { join: 'merge' } : {}) });
    expect((await readChangeCells(ctl, TENANT, cfg.id, schema)).map((c) => [c.op, ...c.row])).toEqual(expected);
  });

  async function runOnceChanges(sourceId: string, schema: SourceSchema) {
    const { changes } = sourceTables(TENANT, sourceId);
    return { cells: await readChangeCells(ctl, TENANT, sourceId, schema), entries: await collect(readChanges(ctl, changes, schema)) };
  }

  itUnless(babelfishGap([sourceDialect, controlDialect], 'bracket-escape'))('composite key with a hostile column name', async () => {
    const hostile = `we"ird] key'; DROP TABLE x; --`;
    const columns: ColumnSpec[] = [
      { name: hostile, type: { kind: 'string', maxLength: 40 }, nullable: false },
      { name: 'part', type: { kind: 'int32' }, nullable: false },
      { name: 'value', type: { kind: 'string', maxLength: 40 }, nullable: true },
    ];
    await createTable(src, 'composite', columns, [hostile, 'part']);
    await src.bulkWrite({ name: 'composite' }, columns, [
      ['a', 1, 'one'],
      ['a', 2, 'two'],
      ['b', 1, 'three'],
    ]);
    const cfg = sourceConfig('composite', { table: 'composite' });
    const first = await runOnce(src, ctl, TENANT, cfg);
    expect(first.schema.key).toEqual([hostile, 'part']);
    expect(first.changes.map((c) => [c.op, ...c.row])).toEqual([
      ['U', 'a', 1, 'one'],
      ['U', 'a', 2, 'two'],
      ['U', 'b', 1, 'three'],
    ]);
    await acknowledge(ctl, TENANT, cfg.id, first.schema);
    const q = src.quote(hostile);
    await src.execute(`UPDATE ${t('composite')} SET ${src.quote('value')} = ${src.param(1)} WHERE ${q} = ${src.param(2)} AND ${src.quote('part')} = ${src.param(3)}`, ['TWO', 'a', 2]);
    await src.execute(`DELETE FROM ${t('composite')} WHERE ${q} = ${src.param(1)} AND ${src.quote('part')} = ${src.param(2)}`, ['a', 1]);
    await src.bulkWrite({ name: 'composite' }, columns, [['A', 1, 'upper-case key is another key']]);
    const second = await runOnce(src, ctl, TENANT, cfg);
    expect(second.changes.map((c) => [c.op, ...c.row])).toEqual([
      ['U', 'A', 1, 'upper-case key is another key'],
      ['D', 'a', 1, null],
      ['U', 'a', 2, 'TWO'],
    ]);
  });

  // It reads the rows the every-type tests above wrote, so it meets their gap too.
  itUnless(babelfishGap(sourceDialect, 'datetime2-7'))('a view source (key from configuration) and a query source', async () => {
    await src.execute(`CREATE VIEW ${t('labels_v')} AS SELECT ${src.quote('id')}, ${src.quote('label')} FROM ${t('all_types')}`);
    await expect(runOnce(src, ctl, TENANT, sourceConfig('labels_nokey', { table: 'labels_v' }))).rejects.toMatchObject({
      retryable: false,
      message: expect.stringMatching(/tenant "acme", source "labels_nokey".*no primary key/),
    });
    const view = await runOnce(src, ctl, TENANT, sourceConfig('labels', { table: 'labels_v', key: ['id'] }));
    expect(view.schema.columns.map((c) => c.name)).toEqual(['id', 'label']);
    expect(view.changes).toHaveLength(ROWS.length);
    expect(view.changes.find((c) => c.row[0] === 1)?.row).toEqual([1, 'Plain']);

    const query = `SELECT ${src.quote('id')}, ${src.quote('label')} AS ${src.quote('name')} FROM ${t('all_types')} WHERE ${src.quote('id')} < 4`;
    const run = await runOnce(src, ctl, TENANT, sourceConfig('labels_q', { query, key: ['id'] }));
    expect(run.schema).toEqual({
      columns: [
        { name: 'id', type: { kind: 'int32' }, nullable: false },
        { name: 'name', type: { kind: 'string', maxLength: sourceDialect === 'postgres' ? 400 : 200 }, nullable: true },
      ],
      key: ['id'],
    });
    expect(run.changes.map((c) => c.row)).toEqual([
      [1, 'Plain'],
      [2, ROWS[1]![col('label')]],
      [3, 'now set'],
    ]);
  });

  // 'two NULL': a unique index treats NULLs as equal on SQL Server, as distinct on PostgreSQL; either way a NULL key.
  for (const kind of ['duplicate', 'NULL', 'two NULL'] as const) {
    it(`a ${kind} key fails the run naming tenant, source and a sample key; staging and the change list stay as they were`, async () => {
      const table = `bad_${kind.toLowerCase().replace(' ', '_')}`;
      const columns: ColumnSpec[] = [
        { name: 'code', type: { kind: 'string', maxLength: 10 }, nullable: true },
        { name: 'value', type: { kind: 'int32' }, nullable: true },
      ];
      await createTable(src, table, columns, null);
      await src.bulkWrite({ name: table }, columns, [
        ['k1', 1],
        ['k2', 2],
      ]);
      const cfg = sourceConfig(table, { table, key: ['code'] });
      const first = await runOnce(src, ctl, TENANT, cfg);
      await acknowledge(ctl, TENANT, cfg.id, first.schema);
      const before = await stagingRows(ctl, TENANT, cfg.id, first.schema);

      await src.bulkWrite({ name: table }, columns, kind === 'duplicate' ? [['k2', 3]] : kind === 'NULL' ? [[null, 4]] : [[null, 4], [null, 5]]);
      await src.execute(`UPDATE ${t(table)} SET ${src.quote('value')} = 10 WHERE ${src.quote('code')} = 'k1'`);
      const error = await runOnce(src, ctl, TENANT, cfg).then(
        () => null,
        (e: unknown) => e as Error & { retryable: boolean },
      );
      expect(error?.retryable).toBe(false);
      expect(error?.message).toMatch(new RegExp(`tenant "acme", source "${table}".*${kind === 'duplicate' ? 'duplicate key \\(2 rows\\), e\\.g\\. code="k2"' : 'NULL key, e\\.g\\. code=NULL'}`));
      expect(await stagingRows(ctl, TENANT, cfg.id, first.schema)).toEqual(before);
      const changes = await collect(ctl.readCells(sourceTables(TENANT, cfg.id).changes, [{ name: 'seq', type: { kind: 'int64' }, nullable: false }]));
      expect(changes).toEqual([]);
      // computeDiff alone says the same (the agent may resume a run at the diff phase)
      await expect(computeDiff({ controlDb: ctl, tenant: TENANT, source: cfg, schema: first.schema, snapshotSet: false })).rejects.toMatchObject({ retryable: false });
      // and so does a diff split into parts, none of which commits
      await expect(computeDiff({ controlDb: ctl, tenant: TENANT, source: cfg, schema: first.schema, snapshotSet: false, splitFillRows: 2 })).rejects.toMatchObject({ retryable: false });
      expect(await collect(ctl.readCells(sourceTables(TENANT, cfg.id).changes, [{ name: 'seq', type: { kind: 'int64' }, nullable: false }]))).toEqual([]);
    });
  }
});
