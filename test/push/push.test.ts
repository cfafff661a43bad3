import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cutBatches, listBatches } from '../../src/batching/batches.ts';
import type { Cell } from '../../src/dialect/types.ts';
import { LeaseLostError } from '../../src/errors/errors.ts';
import { createPushClient } from '../../src/push/client.ts';
import { pushRun, type Fence } from '../../src/push/push.ts';
import { startReceiver, type ObservedRequest, type Receiver } from '../../src/receiver/server.ts';
import { recordStagedRows } from '../../src/snapshot/staged-rows.ts';
import { createTestDatabase, describeEachDialect, type TestDatabase } from '../support/databases.ts';
import { asLines, contractValidator, createSourceTables, fillChanges, SCHEMA, setUpControl, sourceConfig, sourceRow, stagingRows, tenantConfig } from './support.ts';

const FAST_RETRY = { retries: 30, minBackoffMs: 5, maxBackoffMs: 50 };


async function receiverLines(receiver: Receiver, tenant: string, dataset: string): Promise<string[]> {
  const response = await fetch(`${receiver.url}/tenants/${tenant}/datasets/${dataset}/rows`, { headers: { authorization: `Bearer token-${tenant}` } });
  expect(response.status).toBe(200);
  return (await response.text()).split('\n').filter((l) => l.length > 0);
}

async function receiverStats(receiver: Receiver, tenant: string, dataset: string) {
  return (await (await fetch(`${receiver.url}/tenants/${tenant}/datasets/${dataset}/stats`, { headers: { authorization: `Bearer token-${tenant}` } })).json()) as {
    rowsHeld: number;
    batchesApplied: number;
    replaysDeduped: number;
    runsCompleted: number;
    mismatches: number;
  };
}

describeEachDialect('push to the reference receiver', (dialect) => {
  let control: TestDatabase;
  let receiverDb: TestDatabase;
  const validate = contractValidator();

  beforeAll(async () => {
    control = await createTestDatabase(dialect, 'push');
    receiverDb = await createTestDatabase('postgres', 'push_rx');
    await setUpControl(control.db);
  });
  afterAll(async () => {
    await control?.drop();
    await receiverDb?.drop();
  });

  it('delivers a 50k-row change set completely through 5xx, 429, resets and 413 splits; staging = receiver', async () => {
    const seen: ObservedRequest[] = [];
    const receiver = await startReceiver({
      port: 0,
      db: receiverDb.db,
      tokens: { acme: 'token-acme' },
      faults: { failRate: 0.1, throttleRate: 0.05, retryAfterSeconds: 0, resetRate: 0.02, maxBodyBytes: 100 * 1024 },
      seed: 42,
      observe: (r) => r.method === 'POST' && seen.push(r),
    });
    try {
      const tenant = tenantConfig('acme', receiver.url, { maxInFlight: 4 });
      const source = sourceConfig('orders');
      await createSourceTables(control.db, 'acme', 'orders');
      const total = 50_000;
      await fillChanges(control.db, 'acme', 'orders', Array.from({ length: total }, (_, i) => ({ op: 'U' as const, row: sourceRow(i + 1) })));
      // 1,000 rows of ~200 bytes exceed the receiver's 100 KiB: every batch is split at least once.
      const cut = await cutBatches({ controlDb: control.db, tenant: 'acme', source: 'orders', runId: 'run-faults', schema: SCHEMA, maxRows: 1_000, maxBytes: 1024 * 1024 });
      expect(cut).toEqual({ batches: 50, upserts: total, deletes: 0 });

      const client = createPushClient(tenant, FAST_RETRY);
      const progress: number[] = [];
      const result = await pushRun({
        controlDb: control.db,
        tenant,
        source,
        runId: 'run-faults',
        mode: 'initial',
        schema: SCHEMA,
        sourceRows: total,
        fence: (fn) => control.db.transaction(fn),
        client,
        onProgress: (p) => progress.push(p.batchesAcked),
      });
      client.close();
      expect(result).toMatchObject({ batches: 50, upserts: total, deletes: 0 });
      expect(progress).toHaveLength(50);

      const lines = await receiverLines(receiver, 'acme', 'orders');
      expect(lines).toHaveLength(total);
      expect(lines).toEqual(asLines(await stagingRows(control.db, 'acme', 'orders')));
      expect((await listBatches(control.db, 'run-faults')).every((b) => b.status === 'acked')).toBe(true);

      // Faults happened, and each part was applied exactly once.
      const statuses = seen.filter((r) => r.url.endsWith('/batches'));
      const keys = statuses.map((r) => String(r.headers['idempotency-key']));
      expect(keys.some((k) => /^run-faults\.\d+\.1$/.test(k))).toBe(true);
      const appliedKeys = new Set(keys.filter((k) => /\.\d+\.[12](\.[12])*$/.test(k)));
      const stats = await receiverStats(receiver, 'acme', 'orders');
      expect(stats.rowsHeld).toBe(total);
      expect(stats.runsCompleted).toBe(1);
      expect(stats.mismatches).toBe(0);
      expect(stats.batchesApplied).toBe(appliedKeys.size);
      // Requests refused by the body limit never reach the handler; every accepted one is a split part.
      expect(keys.every((k) => /^run-faults\.\d+\.[12](\.[12])*$/.test(k))).toBe(true);
      expect(statuses.length - appliedKeys.size).toBeGreaterThanOrEqual(10);
      expect(result.replays).toBeLessThanOrEqual(stats.replaysDeduped);

      // Invariant I3: every resend of a key carried the same body.
      const bodies = new Map<string, string>();
      for (const r of statuses) {
        const key = String(r.headers['idempotency-key']);
        const body = JSON.stringify(r.body);
        expect(bodies.get(key) ?? body).toBe(body);
        bodies.set(key, body);
      }
      // Every request the agent sent matches docs/openapi.yaml.
      const problems = seen.flatMap((r) => validate(r).map((p) => `${r.url}: ${p}`));
      expect(problems).toEqual([]);
      expect(seen.some((r) => r.headers['content-encoding'] === 'gzip')).toBe(true);
    } finally {
      await receiver.close();
    }
  });

  it('dead-letters on a 422 with the receiver message, sends no later batch, and staging holds exactly the acked batches', async () => {
    const seen: ObservedRequest[] = [];
    const receiver = await startReceiver({ port: 0, db: receiverDb.db, tokens: { beta: 'token-beta' }, faults: { rejectBatches: [4] }, observe: (r) => r.method === 'POST' && seen.push(r) });
    try {
      const tenant = tenantConfig('beta', receiver.url, { maxInFlight: 1 });
      await createSourceTables(control.db, 'beta', 'orders');
      await fillChanges(control.db, 'beta', 'orders', Array.from({ length: 1_000 }, (_, i) => ({ op: 'U' as const, row: sourceRow(i + 1) })));
      await cutBatches({ controlDb: control.db, tenant: 'beta', source: 'orders', runId: 'run-422', schema: SCHEMA, maxRows: 100, maxBytes: 1024 * 1024 });
      const client = createPushClient(tenant, FAST_RETRY);
      const error = await pushRun({
        controlDb: control.db,
        tenant,
        source: sourceConfig('orders'),
        runId: 'run-422',
        mode: 'initial',
        schema: SCHEMA,
        sourceRows: 1_000,
        fence: (fn) => control.db.transaction(fn),
        client,
      }).catch((e: unknown) => e);
      client.close();
      expect(error).toMatchObject({ retryable: false, status: 422 });
      expect((error as Error).message).toMatch(/422.*batch 4 rejected: the receiver refuses this data/);

      const sent = seen.map((r) => (r.body as { batch?: number }).batch);
      expect(sent).toEqual([1, 2, 3, 4]);
      expect(seen.some((r) => r.url.includes('/complete'))).toBe(false);
      const batches = await listBatches(control.db, 'run-422');
      expect(batches.filter((b) => b.status === 'acked').map((b) => b.batchNo)).toEqual([1, 2, 3]);
      const staged = await stagingRows(control.db, 'beta', 'orders');
      expect(staged.map((r) => r[0])).toEqual(Array.from({ length: 300 }, (_, i) => BigInt(i + 1)));
      expect(asLines(staged)).toEqual(await receiverLines(receiver, 'beta', 'orders'));
    } finally {
      await receiver.close();
    }
  });

  it('applies nothing to staging when the fence reports a lost lease', async () => {
    const receiver = await startReceiver({ port: 0, db: receiverDb.db, tokens: { gamma: 'token-gamma' } });
    try {
      const tenant = tenantConfig('gamma', receiver.url, { maxInFlight: 2 });
      await createSourceTables(control.db, 'gamma', 'orders');
      await fillChanges(control.db, 'gamma', 'orders', Array.from({ length: 500 }, (_, i) => ({ op: 'U' as const, row: sourceRow(i + 1) })));
      await cutBatches({ controlDb: control.db, tenant: 'gamma', source: 'orders', runId: 'run-lease', schema: SCHEMA, maxRows: 100, maxBytes: 1024 * 1024 });
      const lostLease: Fence = async () => {
        throw new LeaseLostError('job-1');
      };
      await expect(
        pushRun({ controlDb: control.db, tenant, source: sourceConfig('orders'), runId: 'run-lease', mode: 'initial', schema: SCHEMA, sourceRows: 500, fence: lostLease }),
      ).rejects.toBeInstanceOf(LeaseLostError);
      expect((await listBatches(control.db, 'run-lease')).every((b) => b.status === 'pending')).toBe(true);
      expect(await stagingRows(control.db, 'gamma', 'orders')).toEqual([]);

      // A later worker holding the lease resumes: the receiver dedupes what it already had.
      const result = await pushRun({
        controlDb: control.db,
        tenant,
        source: sourceConfig('orders'),
        runId: 'run-lease',
        mode: 'initial',
        schema: SCHEMA,
        sourceRows: 500,
        fence: (fn) => control.db.transaction(fn),
      });
      expect(result.batches).toBe(5);
      expect(result.replays).toBeGreaterThan(0);
      expect(asLines(await stagingRows(control.db, 'gamma', 'orders'))).toEqual(await receiverLines(receiver, 'gamma', 'orders'));
    } finally {
      await receiver.close();
    }
  });

  it('applies deletes and upserts of an incremental run to staging and receiver alike', async () => {
    const receiver = await startReceiver({ port: 0, db: receiverDb.db, tokens: { delta: 'token-delta' } });
    try {
      const tenant = tenantConfig('delta', receiver.url);
      const source = sourceConfig('orders');
      await createSourceTables(control.db, 'delta', 'orders');
      const push = async (runId: string, mode: 'initial' | 'incremental', changes: Array<{ op: 'U' | 'D'; row: Cell[] }>, sourceRows: number) => {
        await fillChanges(control.db, 'delta', 'orders', changes);
        await cutBatches({ controlDb: control.db, tenant: 'delta', source: 'orders', runId, schema: SCHEMA, maxRows: 70, maxBytes: 8 * 1024 });
        return pushRun({ controlDb: control.db, tenant, source, runId, mode, schema: SCHEMA, sourceRows, fence: (fn) => control.db.transaction(fn) });
      };
      await push('run-d1', 'initial', Array.from({ length: 300 }, (_, i) => ({ op: 'U', row: sourceRow(i + 1) })), 300);
      const second = await push(
        'run-d2',
        'incremental',
        [
          ...Array.from({ length: 50 }, (_, i) => ({ op: 'D' as const, row: sourceRow(i * 2 + 1) })),
          ...Array.from({ length: 40 }, (_, i) => ({ op: 'U' as const, row: sourceRow(i * 2 + 150, 1) })),
          ...Array.from({ length: 10 }, (_, i) => ({ op: 'U' as const, row: sourceRow(1_000 + i) })),
        ],
        260,
      );
      expect(second).toMatchObject({ upserts: 50, deletes: 50 });
      const staged = await stagingRows(control.db, 'delta', 'orders');
      expect(staged).toHaveLength(260);
      expect(asLines(staged)).toEqual(await receiverLines(receiver, 'delta', 'orders'));
      const stats = await receiverStats(receiver, 'delta', 'orders');
      expect(stats).toMatchObject({ rowsHeld: 260, runsCompleted: 2, mismatches: 0 });
    } finally {
      await receiver.close();
    }
  });

  it('a run that read only changed rows tells the receiver the rows staging holds, a count its acknowledgements keep (or staging counted when unknown)', async () => {
    const receiver = await startReceiver({ port: 0, db: receiverDb.db, tokens: { kept: 'token-kept' } });
    try {
      const tenant = tenantConfig('kept', receiver.url);
      const source = sourceConfig('orders');
      await createSourceTables(control.db, 'kept', 'orders');
      await control.db.execute(`INSERT INTO cdc_source_state (tenant_id, source_id) VALUES ('kept', 'orders')`);
      const kept = async () => (await control.db.query<{ n: unknown }>(`SELECT staging_rows AS n FROM cdc_source_state WHERE tenant_id = 'kept'`))[0]!.n;
      const push = async (runId: string, mode: 'initial' | 'incremental', changes: Array<{ op: 'U' | 'D'; row: Cell[] }>, sourceRows: number | 'staged') => {
        await fillChanges(control.db, 'kept', 'orders', changes);
        await cutBatches({ controlDb: control.db, tenant: 'kept', source: 'orders', runId, schema: SCHEMA, maxRows: 70, maxBytes: 8 * 1024 });
        return pushRun({ controlDb: control.db, tenant, source, runId, mode, schema: SCHEMA, sourceRows, fence: (fn) => control.db.transaction(fn) });
      };
      // A full run's acknowledgements leave the count unknown; the run's finish records it (as run-job does).
      await recordStagedRows(control.db, control.db, 'kept', 'orders', 0);
      const first = await push('run-k1', 'initial', Array.from({ length: 300 }, (_, i) => ({ op: 'U', row: sourceRow(i + 1) })), 300);
      expect(first.sourceRows).toBe(300);
      expect(await kept()).toBeNull();
      await recordStagedRows(control.db, control.db, 'kept', 'orders', 300);

      // 50 deletes, 40 updates of staged keys, 10 new keys: 260 rows, counted by the acknowledgements alone.
      const changes = [
        ...Array.from({ length: 50 }, (_, i) => ({ op: 'D' as const, row: sourceRow(i * 2 + 1) })),
        ...Array.from({ length: 40 }, (_, i) => ({ op: 'U' as const, row: sourceRow(i * 2 + 150, 1) })),
        ...Array.from({ length: 10 }, (_, i) => ({ op: 'U' as const, row: sourceRow(1_000 + i) })),
      ];
      const second = await push('run-k2', 'incremental', changes, 'staged');
      expect(second).toMatchObject({ upserts: 50, deletes: 50, sourceRows: 260, completion: { status: 'reconciled' } });
      expect(Number(await kept())).toBe(260);
      expect(await stagingRows(control.db, 'kept', 'orders')).toHaveLength(260);

      // Unknown (a control database older than the count, or rebuilt tables): staging is counted, and stays unknown.
      await recordStagedRows(control.db, control.db, 'kept', 'orders', null);
      const third = await push('run-k3', 'incremental', [{ op: 'D', row: sourceRow(2) }, { op: 'U', row: sourceRow(2_000) }, { op: 'U', row: sourceRow(2_001) }], 'staged');
      expect(third).toMatchObject({ sourceRows: 261, completion: { status: 'reconciled' } });
      expect(await kept()).toBeNull();
      expect(await receiverStats(receiver, 'kept', 'orders')).toMatchObject({ rowsHeld: 261, runsCompleted: 3, mismatches: 0 });
    } finally {
      await receiver.close();
    }
  });
});

describe('tenant isolation (Invariant I4)', () => {
  let control: TestDatabase;
  let rxA: TestDatabase;
  let rxB: TestDatabase;
  beforeAll(async () => {
    control = await createTestDatabase('postgres', 'push_iso');
    rxA = await createTestDatabase('postgres', 'push_rx_a');
    rxB = await createTestDatabase('postgres', 'push_rx_b');
    await setUpControl(control.db);
  });
  afterAll(async () => {
    await control?.drop();
    await rxA?.drop();
    await rxB?.drop();
  });

  it('never sends tenant A\'s rows or token to tenant B\'s endpoint', async () => {
    const seenA: ObservedRequest[] = [];
    const seenB: ObservedRequest[] = [];
    // Each receiver knows both tokens, so a crossed request would be accepted, not just refused.
    const tokens = { alpha: 'token-alpha', bravo: 'token-bravo' };
    const a = await startReceiver({ port: 0, db: rxA.db, tokens, faults: { failRate: 0.1 }, seed: 7, observe: (r) => seenA.push(r) });
    const b = await startReceiver({ port: 0, db: rxB.db, tokens, faults: { failRate: 0.1 }, seed: 8, observe: (r) => seenB.push(r) });
    try {
      const tenants = { alpha: tenantConfig('alpha', a.url), bravo: tenantConfig('bravo', b.url) };
      await Promise.all(
        (['alpha', 'bravo'] as const).map(async (id, n) => {
          await createSourceTables(control.db, id, 'orders');
          await fillChanges(control.db, id, 'orders', Array.from({ length: 2_000 }, (_, i) => ({ op: 'U' as const, row: sourceRow(i + 1, n) })));
          await cutBatches({ controlDb: control.db, tenant: id, source: 'orders', runId: `run-${id}`, schema: SCHEMA, maxRows: 100, maxBytes: 1024 * 1024 });
        }),
      );
      await Promise.all(
        (['alpha', 'bravo'] as const).map((id) =>
          pushRun({
            controlDb: control.db,
            tenant: tenants[id],
            source: sourceConfig('orders'),
            runId: `run-${id}`,
            mode: 'initial',
            schema: SCHEMA,
            sourceRows: 2_000,
            fence: (fn) => control.db.transaction(fn),
            client: createPushClient(tenants[id], FAST_RETRY),
          }),
        ),
      );
      expect(seenA.length).toBeGreaterThan(20);
      expect(seenB.length).toBeGreaterThan(20);
      for (const r of seenA) {
        expect(r.url).toMatch(/^\/tenants\/alpha\//);
        expect(r.headers.authorization).toBe('Bearer token-alpha');
      }
      for (const r of seenB) {
        expect(r.url).toMatch(/^\/tenants\/bravo\//);
        expect(r.headers.authorization).toBe('Bearer token-bravo');
      }
      expect((await a.store.stats('alpha', 'orders')).rowsHeld).toBe(2_000);
      expect((await b.store.stats('bravo', 'orders')).rowsHeld).toBe(2_000);
      expect((await a.store.stats('bravo', 'orders')).rowsHeld).toBe(0);
      expect((await b.store.stats('alpha', 'orders')).rowsHeld).toBe(0);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('refuses a shared client of another tenant', async () => {
    const client = createPushClient(tenantConfig('alpha', 'http://127.0.0.1:9'));
    await expect(
      pushRun({
        controlDb: control.db,
        tenant: tenantConfig('bravo', 'http://127.0.0.1:9'),
        source: sourceConfig('orders'),
        runId: 'x',
        mode: 'initial',
        schema: SCHEMA,
        sourceRows: 0,
        fence: (fn) => control.db.transaction(fn),
        client,
      }),
    ).rejects.toThrow(/tenant alpha was given a run of tenant bravo/);
    client.close();
  });
});
