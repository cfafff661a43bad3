import { afterAll, beforeAll, expect, it } from 'vitest';
import { cutBatches, listBatches } from '../../src/batching/batches.ts';
import { readChanges } from '../../src/batching/change-set.ts';
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

  it('records no batch for an empty change set', async () => {
    await fillChanges(t.db, 'acme', 'orders', []);
    expect(await cutBatches({ controlDb: t.db, tenant: 'acme', source: 'orders', runId: 'r-empty', schema: SCHEMA, maxRows: 10, maxBytes: 1_000 })).toEqual({
      batches: 0,
      upserts: 0,
      deletes: 0,
    });
  });
});
