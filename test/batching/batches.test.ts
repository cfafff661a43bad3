import { afterAll, beforeAll, expect, it } from 'vitest';
import { cutBatches, listBatches } from '../../src/batching/batches.ts';
import { groupedBatches, readChanges, readChangeSizes, storedEntrySql } from '../../src/batching/change-set.ts';
import { cutAll } from '../../src/batching/cut.ts';
import { sourceTables } from '../../src/snapshot/source-tables.ts';
import { createTestDatabase, describeEachDialect, type TestDatabase } from '../support/databases.ts';
import { createSourceTables, fillChanges, SCHEMA, setUpControl, sourceRow } from '../push/support.ts';

describeEachDialect('cutBatches', (dialect) => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await createTestDatabase(dialect, 'batches');
    await setUpControl(t.db);
    await createSourceTables(t.db, 'acme', 'orders');
    await fillChanges(t.db, 'acme', 'orders', [
      ...Array.from({ length: 2_000 }, (_, i) => ({ op: 'U' as const, row: sourceRow(i * 2 + 1) })),
      ...Array.from({ length: 500 }, (_, i) => ({ op: 'D' as const, row: sourceRow(i * 2 + 2) })),
    ]);
  });
  afterAll(async () => {
    await t?.drop();
  });

  it('cuts in seq order within maxRows and maxBytes and records the batches', async () => {
    const result = await cutBatches({ controlDb: t.db, tenant: 'acme', source: 'orders', runId: 'r1', schema: SCHEMA, maxRows: 300, maxBytes: 40_000 });
    expect(result.upserts).toBe(2_000);
    expect(result.deletes).toBe(500);
    const batches = await listBatches(t.db, 'r1');
    expect(batches).toHaveLength(result.batches);
    expect(batches[0]!.firstSeq).toBe(1n);
    expect(batches.at(-1)!.lastSeq).toBe(2_500n);
    for (const [i, b] of batches.entries()) {
      expect(b.batchNo).toBe(i + 1);
      expect(b.rows).toBeLessThanOrEqual(300);
      expect(b.bytes).toBeLessThanOrEqual(40_000);
      expect(b.status).toBe('pending');
      if (i > 0) expect(b.firstSeq).toBe(batches[i - 1]!.lastSeq + 1n);
      // The recorded size is the size of what will be sent.
      let bytes = 0;
      for await (const c of readChanges(t.db, sourceTables('acme', 'orders').changes, SCHEMA, { first: b.firstSeq, last: b.lastSeq })) bytes += Buffer.byteLength(c.entry) + 1;
      expect(bytes).toBe(b.bytes);
    }
    expect(batches.some((b) => b.bytes > 35_000 && b.rows < 300)).toBe(true);
  });

  it('returns the recorded batches unchanged when cut again, even with other limits', async () => {
    const before = await listBatches(t.db, 'r1');
    const again = await cutBatches({ controlDb: t.db, tenant: 'acme', source: 'orders', runId: 'r1', schema: SCHEMA, maxRows: 10, maxBytes: 1_000 });
    expect(again).toEqual({ batches: before.length, upserts: 2_000, deletes: 500 });
    expect(await listBatches(t.db, 'r1')).toEqual(before);
  });

  it("the server's grouped cut gives exactly the change-by-change cut wherever it applies, with seq 1..N or with gaps, and declines when a group would not fit", async () => {
    const { changes } = sourceTables('acme', 'orders');
    const perChange = async (limits: { maxRows: number; maxBytes: number }) => {
      const sizes: Array<{ seq: bigint; bytes: number; op: 'U' | 'D' }> = [];
      for await (const c of readChangeSizes(t.db, changes, SCHEMA)) sizes.push({ ...c, bytes: c.bytes + 1 });
      return cutAll(sizes, limits);
    };
    for (const gaps of [false, true]) {
      // A split incremental fill numbers its parts apart (src/cdc/diff-sql.ts PART_SEQ_OFFSET).
      if (gaps) await t.db.execute(`UPDATE ${t.db.table(changes)} SET ${t.db.quote('seq')} = ${t.db.quote('seq')} + 1000000 WHERE ${t.db.quote('seq')} > 1234`);
      for (const maxRows of [1, 7, 300, 2_500, 10_000]) {
        const limits = { maxRows, maxBytes: 10_000_000 };
        const grouped = await groupedBatches(t.db, changes, SCHEMA, limits);
        if (grouped === null) {
          // Where entries are encoded in Node (SQL Server), every cut goes change by change.
          expect(t.db.dialect).toBe('mssql');
          continue;
        }
        expect(grouped).toEqual(await perChange(limits));
        expect(grouped.reduce((n, b) => n + b.rows, 0)).toBe(2_500);
      }
      // 300 rows of these entries take ≈ 36–38 KB: a group that would not fit is left to the cut change by change.
      if (t.db.dialect === 'postgres') expect(await groupedBatches(t.db, changes, SCHEMA, { maxRows: 300, maxBytes: 30_000 })).toBeNull();
    }
    // The grouped cut reads stored entries' sizes (the diff stores every entry), and renders where one is not stored.
    const stored = await storedEntrySql(t.db, SCHEMA);
    if (stored !== null) {
      const limits = { maxRows: 300, maxBytes: 10_000_000 };
      const rendered = await groupedBatches(t.db, changes, SCHEMA, limits);
      try {
        for (const where of [`${t.db.quote('seq')} % 3 = 0`, 'true']) {
          await t.db.execute(`UPDATE ${t.db.table(changes)} SET ${t.db.quote('cdc_entry')} = ${stored} WHERE ${where}`);
          expect(await groupedBatches(t.db, changes, SCHEMA, limits)).toEqual(rendered);
        }
      } finally {
        await t.db.execute(`UPDATE ${t.db.table(changes)} SET ${t.db.quote('cdc_entry')} = NULL`);
      }
    }
    await t.db.execute(`UPDATE ${t.db.table(changes)} SET ${t.db.quote('seq')} = ${t.db.quote('seq')} - 1000000 WHERE ${t.db.quote('seq')} > 1000000`);
  });

  it('records no batch for an empty change set', async () => {
    await fillChanges(t.db, 'acme', 'orders', []);
    expect(await cutBatches({ controlDb: t.db, tenant: 'acme', source: 'orders', runId: 'r-empty', schema: SCHEMA, maxRows: 10, maxBytes: 1_000 })).toEqual({
      batches: 0,
      upserts: 0,
      deletes: 0,
    });
  });
});
