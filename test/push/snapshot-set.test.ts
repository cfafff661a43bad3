/**
 * An onboarding whose change set is its snapshot (src/batching/snapshot-set.ts): the diff writes no change table on
 * PostgreSQL 14+, batches are heap ranges of the snapshot, and each is rendered from it when it is pushed. On a SQL
 * Server control database the onboarding keeps its change table.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { cutBatches, listBatches } from '../../src/batching/batches.ts';
import { computeDiff } from '../../src/cdc/diff.ts';
import { LeaseLostError } from '../../src/errors/errors.ts';
import { pushRun, type Fence } from '../../src/push/push.ts';
import { startReceiver, type ObservedRequest } from '../../src/receiver/server.ts';
import { sourceTables } from '../../src/snapshot/source-tables.ts';
import { createSnapshotSql } from '../../src/snapshot/tables.ts';
import type { Cell } from '../../src/dialect/types.ts';
import { createTestDatabase, describeEachDialect, type TestDatabase } from '../support/databases.ts';
import { asLines, createSourceTables, SCHEMA, setUpControl, sourceConfig, sourceRow, stagingRows, tenantConfig } from './support.ts';


/** A deterministic shuffle, so that the snapshot's heap order is not its key order. */
function shuffled<T>(items: T[], seed: number): T[] {
  const out = [...items];
  let s = seed;
  for (let i = out.length - 1; i > 0; i--) {
    s = (s * 1_103_515_245 + 12_345) % 2 ** 31;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

describeEachDialect('an onboarding whose change set is the snapshot', (dialect) => {
  let control: TestDatabase;
  let receiverDb: TestDatabase;

  beforeAll(async () => {
    control = await createTestDatabase(dialect, 'snapset');
    receiverDb = await createTestDatabase('postgres', 'snapset_rx');
    await setUpControl(control.db);
  });
  afterAll(async () => {
    await control?.drop();
    await receiverDb?.drop();
  });

  /** A source's tables, its snapshot loaded with rows 1..n in a shuffled order, and the initial diff. */
  async function onboardingDiff(tenant: string, n: number, row: (i: number) => Cell[] = (i) => sourceRow(i)) {
    const t = sourceTables(tenant, 'orders');
    await createSourceTables(control.db, tenant, 'orders');
    await control.db.execute(createSnapshotSql(control.db, t.snapshot, SCHEMA));
    const ids = shuffled(Array.from({ length: n }, (_, i) => i + 1), n);
    await control.db.bulkWrite(t.snapshot, SCHEMA.columns, ids.map(row));
    return computeDiff({ controlDb: control.db, tenant, source: sourceConfig('orders'), schema: SCHEMA, everyRow: true });
  }

  const changeRows = async (tenant: string) =>
    Number((await control.db.query<{ n: unknown }>(`SELECT count(*) AS n FROM ${control.db.table(sourceTables(tenant, 'orders').changes)}`))[0]?.n);

  it.skipIf(dialect !== 'mssql')('on SQL Server the onboarding fills its change table as before', async () => {
    const diff = await onboardingDiff('mssql-set', 500);
    expect(diff).toEqual({ upserts: 500, deletes: 0, changeSet: 'table' });
    expect(await changeRows('mssql-set')).toBe(500);
  });

  it.skipIf(dialect !== 'postgres')(
    'writes no change table; batches of heap pages, rendered when pushed, reach the receiver exactly through faults, bodies over maxBytes sent in parts; staging = receiver = snapshot',
    async () => {
      const seen: ObservedRequest[] = [];
      const receiver = await startReceiver({
        port: 0,
        db: receiverDb.db,
        tokens: { acme: 'token-acme' },
        faults: { failRate: 0.1, throttleRate: 0.05, retryAfterSeconds: 0, resetRate: 0.02 },
        seed: 7,
        observe: (r) => r.method === 'POST' && seen.push(r),
      });
      try {
        const total = 1_500;
        // Names of control characters: JSON spells each in 6 bytes, which the cut's estimate counts as 1, so its
        // batches come out over maxBytes when rendered.
        const row = (i: number): Cell[] => {
          const r = sourceRow(i);
          r[1] = `${'\u0001'.repeat(60)} ${i}`;
          return r;
        };
        const diff = await onboardingDiff('acme', total, row);
        expect(diff).toEqual({ upserts: total, deletes: 0, changeSet: 'snapshot', snapshotId: expect.stringMatching(/^\d+$/) });
        expect(await changeRows('acme')).toBe(0);

        // The cut sizes batches by its estimate (≈ 280 bytes a row: ≈ 14 rows in 4 KiB, not 120); rendered they are
        // about twice that, so most go in parts, halved until each fits (the receiver would take the whole batch).
        const cut = await cutBatches({ controlDb: control.db, tenant: 'acme', source: 'orders', runId: 'run-snap', schema: SCHEMA, maxRows: 120, maxBytes: 4 * 1024, changeSet: 'snapshot' });
        expect(cut.upserts).toBe(total);
        expect(cut.deletes).toBe(0);
        const batches = await listBatches(control.db, 'run-snap');
        expect(batches.length).toBe(cut.batches);
        expect(batches.every((b) => b.rows >= 1 && b.rows <= 20)).toBe(true);
        expect(batches.reduce((n, b) => n + b.rows, 0)).toBe(total);

        const tenant = tenantConfig('acme', receiver.url, { maxInFlight: 4 });
        const source = { ...sourceConfig('orders'), batch: { maxRows: 120, maxBytes: 4 * 1024 } };
        const result = await pushRun({
          controlDb: control.db,
          tenant,
          source,
          runId: 'run-snap',
          mode: 'initial',
          schema: SCHEMA,
          sourceRows: total,
          changeSet: 'snapshot',
          fence: (fn) => control.db.transaction(fn),
        });
        expect(result).toMatchObject({ batches: cut.batches, upserts: total, deletes: 0, sourceRows: total, completion: { status: 'reconciled' } });

        const expected = asLines(Array.from({ length: total }, (_, i) => row(i + 1)));
        const response = await fetch(`${receiver.url}/tenants/acme/datasets/orders/rows`, { headers: { authorization: 'Bearer token-acme' } });
        expect((await response.text()).split('\n').filter((l) => l.length > 0)).toEqual(expected);
        expect(asLines(await stagingRows(control.db, 'acme', 'orders'))).toEqual(expected);

        const posts = seen.filter((r) => r.url.endsWith('/batches'));
        const keys = posts.map((r) => String(r.headers['idempotency-key']));
        // Batches rendered over maxBytes went in parts (the body check below: every one within it).
        expect(keys.filter((k) => /^run-snap\.\d+\.[12](\.[12])*$/.test(k)).length).toBeGreaterThan(keys.length / 2);
        // Invariant I3: every resend of a key carried the same body.
        const bodies = new Map<string, string>();
        for (const r of posts) {
          const key = String(r.headers['idempotency-key']);
          const body = JSON.stringify(r.body);
          expect(bodies.get(key) ?? body).toBe(body);
          bodies.set(key, body);
        }
        // Every body kept within maxBytes.
        for (const r of posts) {
          const body = r.body as { changes?: unknown[] };
          if (!body.changes || body.changes.length <= 1) continue;
          const bytes = Buffer.byteLength(JSON.stringify(body.changes), 'utf8') - 2;
          expect(bytes).toBeLessThanOrEqual(4 * 1024);
        }
      } finally {
        await receiver.close();
      }
    },
  );

  it.skipIf(dialect !== 'postgres')('an empty source onboards as a snapshot set of no batches, and its completion reconciles with the receiver', async () => {
    const receiver = await startReceiver({ port: 0, db: receiverDb.db, tokens: { empty: 'token-empty' } });
    try {
      expect(await onboardingDiff('empty', 0)).toMatchObject({ upserts: 0, deletes: 0, changeSet: 'snapshot' });
      expect(await cutBatches({ controlDb: control.db, tenant: 'empty', source: 'orders', runId: 'run-empty', schema: SCHEMA, maxRows: 100, maxBytes: 1024 * 1024, changeSet: 'snapshot' })).toEqual({
        batches: 0,
        upserts: 0,
        deletes: 0,
      });
      const tenant = tenantConfig('empty', receiver.url);
      const result = await pushRun({ controlDb: control.db, tenant, source: sourceConfig('orders'), runId: 'run-empty', mode: 'initial', schema: SCHEMA, sourceRows: 0, changeSet: 'snapshot', fence: (fn) => control.db.transaction(fn) });
      expect(result).toMatchObject({ batches: 0, upserts: 0, deletes: 0, sourceRows: 0, completion: { status: 'reconciled' } });
    } finally {
      await receiver.close();
    }
  });

  it.skipIf(dialect !== 'postgres')('cuts wide rows by their estimated size, not by maxRows alone; a row over maxBytes travels alone', async () => {
    const seen: ObservedRequest[] = [];
    const receiver = await startReceiver({ port: 0, db: receiverDb.db, tokens: { wide: 'token-wide' }, observe: (r) => r.method === 'POST' && seen.push(r) });
    try {
      // Blobs of 2,250 bytes (3,000 in base64), and every tenth row's of 30,000 (40,000; stored out of line: TOAST).
      const row = (i: number): Cell[] => {
        const r = sourceRow(i);
        r[4] = Buffer.alloc(i % 10 === 0 ? 30_000 : 2_250, i % 251);
        return r;
      };
      const total = 200;
      await onboardingDiff('wide', total, row);
      const maxBytes = 16 * 1024;
      const cut = await cutBatches({ controlDb: control.db, tenant: 'wide', source: 'orders', runId: 'run-wide', schema: SCHEMA, maxRows: 1_000, maxBytes, changeSet: 'snapshot' });
      // ≈ 3.3 KB a row by the estimate: at most 5 to a batch, and the 40 KB rows alone.
      expect(cut.batches).toBeGreaterThanOrEqual(total / 5);
      const batches = await listBatches(control.db, 'run-wide');
      expect(batches.every((b) => b.rows <= 5)).toBe(true);
      expect(batches.reduce((n, b) => n + b.rows, 0)).toBe(total);

      const tenant = tenantConfig('wide', receiver.url);
      const source = { ...sourceConfig('orders'), batch: { maxRows: 1_000, maxBytes } };
      const result = await pushRun({ controlDb: control.db, tenant, source, runId: 'run-wide', mode: 'initial', schema: SCHEMA, sourceRows: total, changeSet: 'snapshot', fence: (fn) => control.db.transaction(fn) });
      expect(result.completion.status).toBe('reconciled');
      expect(asLines(await stagingRows(control.db, 'wide', 'orders'))).toEqual(asLines(Array.from({ length: total }, (_, i) => row(i + 1))));
      for (const r of seen.filter((x) => x.url.endsWith('/batches'))) {
        const changes = (r.body as { changes: unknown[] }).changes;
        if (changes.length > 1) expect(Buffer.byteLength(JSON.stringify(changes), 'utf8') - 2).toBeLessThanOrEqual(maxBytes);
      }
    } finally {
      await receiver.close();
    }
  });

  it.skipIf(dialect !== 'postgres')('cuts a page that holds more rows than maxRows by line pointer, and a resumed push re-sends the same bytes (the receiver dedupes)', async () => {
    const receiver = await startReceiver({ port: 0, db: receiverDb.db, tokens: { gamma: 'token-gamma' } });
    try {
      const total = 400;
      const diff = await onboardingDiff('gamma', total);
      expect(diff.changeSet).toBe('snapshot');
      // Holes in the heap's line pointers (rows the snapshot no longer has) are cut around.
      const t = sourceTables('gamma', 'orders');
      await control.db.execute(`DELETE FROM ${control.db.table(t.snapshot)} WHERE id % 17 = 0`);
      const left = total - Math.floor(total / 17);
      const cut = await cutBatches({ controlDb: control.db, tenant: 'gamma', source: 'orders', runId: 'run-pages', schema: SCHEMA, maxRows: 7, maxBytes: 1024 * 1024, changeSet: 'snapshot' });
      expect(cut).toEqual({ batches: expect.any(Number), upserts: left, deletes: 0 });
      const batches = await listBatches(control.db, 'run-pages');
      expect(batches.every((b) => b.rows >= 1 && b.rows <= 7)).toBe(true);
      expect(batches.reduce((n, b) => n + b.rows, 0)).toBe(left);
      // Ranges follow one another in heap order without overlap.
      for (let i = 1; i < batches.length; i++) expect(batches[i]!.firstSeq > batches[i - 1]!.lastSeq).toBe(true);

      const tenant = tenantConfig('gamma', receiver.url, { maxInFlight: 2 });
      const args = { controlDb: control.db, tenant, source: sourceConfig('orders'), runId: 'run-pages', mode: 'initial' as const, schema: SCHEMA, sourceRows: left, changeSet: 'snapshot' as const };
      // The receiver takes every batch, but the worker loses its lease before any acknowledgement is recorded.
      const lostLease: Fence = async () => {
        throw new LeaseLostError('job-1');
      };
      await expect(pushRun({ ...args, fence: lostLease })).rejects.toBeInstanceOf(LeaseLostError);
      expect(await stagingRows(control.db, 'gamma', 'orders')).toEqual([]);
      const result = await pushRun({ ...args, fence: (fn) => control.db.transaction(fn) });
      // A replay is answered `duplicate` only when the bytes match what the receiver holds under its key (else 422).
      expect(result.replays).toBeGreaterThan(0);
      expect(result.completion.status).toBe('reconciled');
      const expected = asLines(Array.from({ length: total }, (_, i) => sourceRow(i + 1)).filter((r) => Number(r[0]) % 17 !== 0));
      expect(asLines(await stagingRows(control.db, 'gamma', 'orders'))).toEqual(expected);
    } finally {
      await receiver.close();
    }
  });
});
