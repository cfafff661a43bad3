/**
 * End to end (issue 6): real source and control databases, the reference receiver, and every agent a
 * separate OS process. The invariants under test: I1 (staging = acknowledged), I2 (fencing), I7 (convergence).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { mutateEstate } from '../../src/demo/estate.ts';
import { sourceTables } from '../../src/snapshot/source-tables.ts';
import { allOk, Estate } from '../support/estate.ts';

const THREE_SOURCES = [
  { id: 'customers', table: 'public.customers' },
  { id: 'order_lines', table: 'public.order_lines' },
  { id: 'paid_invoices', table: 'public.paid_invoices', key: ['invoice_id'] },
];
const PAID_VIEW = `CREATE VIEW paid_invoices AS SELECT invoice_id, order_id, issued_on, amount, reference FROM invoices WHERE paid`;

let estate: Estate | undefined;
afterEach(async () => {
  await estate?.close();
  estate = undefined;
});

function jsonOf<T>(result: { code: number; stdout: string; stderr: string }): T {
  if (result.code !== 0) throw new Error(`command failed with ${result.code}: ${result.stderr}`);
  return JSON.parse(result.stdout) as T;
}

function everyDatasetEqual(results: Record<string, unknown>, names: string[]): void {
  expect(results).toEqual(Object.fromEntries(names.map((n) => [n, 'ok'])));
}

/** One 20k-row source pushed in 300-row batches to a receiver that answers after 400 ms: a push that lasts. */
function slowPushEstate(label: string): Promise<Estate> {
  return Estate.create({
    label,
    tenants: ['acme'],
    rows: 20_000,
    sources: [{ id: 'order_lines', table: 'public.order_lines' }],
    worker: { leaseSeconds: 10, concurrency: 1, drainGraceSeconds: 1 },
    batch: { maxRows: 300 },
    faults: { latencyMs: 400 },
  });
}

/** An onboarding whose agent was stopped (SIGTERM) in its push: the job is queued again, in phase push. */
async function onboardingStoppedInPush(estate: Estate) {
  const first = await estate.startAgent('first');
  const [jobId] = await estate.enqueue('acme', 'initial');
  await estate.waitForPhase(jobId!, 'push');
  first.signal('SIGTERM');
  expect(await first.exited).toBe(0);
  const [released] = await estate.queue.getJobs([jobId!]);
  expect(released).toMatchObject({ status: 'queued', phase: 'push' });
  return { jobId: jobId!, released: released! };
}

describe('agent end to end [postgres → postgres]', () => {
  it('onboards a tenant (composite key, a view), then syncs inserts, updates and deletes; the receiver equals the source', async () => {
    estate = await Estate.create({ label: 'e2e_basic', tenants: ['acme'], rows: 6000, sources: THREE_SOURCES, setupSql: PAID_VIEW });
    const agent = await estate.startAgent('agent-a');
    const port = Number(agent.messages().find((m) => m.msg === 'agent starting')!.healthPort);
    expect(await (await fetch(`http://127.0.0.1:${port}/healthz`)).json()).toEqual({ ok: true });
    const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ ok: true, state: 'running', pendingMigrations: 0 });

    const onboard = await estate.cli(['onboard', '--tenant', 'acme', '--wait', '--timeout', '120']);
    expect(onboard.stderr).toContain('All 3 source(s) synced.');
    expect(onboard.code).toBe(0);
    everyDatasetEqual(allOk(await estate.verify('acme')), ['customers', 'order_lines', 'paid_invoices']);

    await mutateEstate(estate.sourceDb('acme'), 0.05);
    const sync = await estate.cli(['sync', '--tenant', 'acme', '--wait', '--timeout', '120']);
    expect(sync.code).toBe(0);
    everyDatasetEqual(allOk(await estate.verify('acme')), ['customers', 'order_lines', 'paid_invoices']);

    const status = jsonOf<{ sources: Array<Record<string, unknown>> }>(await estate.cli(['status', '--json']));
    expect(status.sources).toHaveLength(3);
    for (const s of status.sources) {
      expect(s).toMatchObject({ tenant: 'acme', running: null, queued: 0, dead: 0, lastError: null, lastRun: { mode: 'incremental', status: 'succeeded' } });
      expect(s.lastSuccessAt).toEqual(expect.any(String));
    }
    const changed = status.sources.reduce((n, s) => n + Number((s.lastRun as { upserts: number }).upserts) + Number((s.lastRun as { deletes: number }).deletes), 0);
    expect(changed).toBeGreaterThan(0);
  });

  for (const phase of ['snapshot', 'diff', 'push'] as const) {
    it(`converges after kill -9 during ${phase}, with no batch applied twice except as deduped replays`, async () => {
      estate = await Estate.create({
        label: `e2e_kill_${phase}`,
        tenants: ['acme'],
        rows: phase === 'push' ? 20_000 : 150_000,
        sources: [{ id: 'order_lines', table: 'public.order_lines' }],
        worker: { leaseSeconds: 5, concurrency: 1 },
        batch: { maxRows: 500 },
        ...(phase === 'push' ? { faults: { latencyMs: 40 } } : {}),
      });
      const first = await estate.startAgent('victim');
      const [jobId] = await estate.enqueue('acme', 'initial');
      await estate.waitForPhase(jobId!, phase);
      first.signal('SIGKILL');
      expect(await first.exited).toBeNull();

      const status = jsonOf<{ sources: Array<{ running: { owner: string; phase: string } | null }> }>(await estate.cli(['status', '--json']));
      // the dead agent's lease is still held until it expires: status shows the job running under its owner
      expect(status.sources[0]!.running).toMatchObject({ owner: 'victim', phase });

      await estate.startAgent('rescuer');
      await estate.waitForJobs([jobId!], 120_000);
      everyDatasetEqual(allOk(await estate.verify('acme')), ['order_lines']);
      const stats = await estate.receiverStats('acme', 'order_lines');
      expect(stats).toMatchObject({ mismatches: 0 });
      expect(stats.runsCompleted).toBeGreaterThanOrEqual(1);
      // every applied request carried a distinct idempotency key; resends were deduped, not re-applied
      const applied = await estate.receiverDb.db.query<{ n: string; keys: string }>(
        `SELECT count(*)::text AS n, count(DISTINCT idempotency_key)::text AS keys FROM rx_requests WHERE dataset = 'order_lines'`,
      );
      expect(applied[0]!.n).toBe(applied[0]!.keys);
    });
  }

  it('two agent processes share 12 sources of 2 tenants: every run executes once and both do work', async () => {
    const sources = ['customers', 'products', 'orders', 'order_lines', 'invoices'].map((t) => ({ id: t, table: `public.${t}` }));
    sources.push({ id: 'paid_invoices', table: 'public.paid_invoices', key: ['invoice_id'] } as never);
    estate = await Estate.create({ label: 'e2e_two', tenants: ['acme', 'globex'], rows: 20_000, sources, setupSql: PAID_VIEW, worker: { concurrency: 2 } });
    const [a, b] = await Promise.all([estate.startAgent('agent-a'), estate.startAgent('agent-b')]);
    const ids = [...(await estate.enqueue('acme', 'initial')), ...(await estate.enqueue('globex', 'initial'))];
    expect(ids).toHaveLength(12);
    await estate.waitForJobs(ids, 180_000);
    for (const tenant of ['acme', 'globex']) everyDatasetEqual(allOk(await estate.verify(tenant)), sources.map((s) => s.id));

    const runs = await estate.control.db.query<{ source_id: string; tenant_id: string; n: string }>(
      `SELECT tenant_id, source_id, count(*)::text AS n FROM cdc_runs GROUP BY tenant_id, source_id`,
    );
    expect(runs).toHaveLength(12);
    expect(runs.every((r) => r.n === '1')).toBe(true);
    const doneBy = (agent: typeof a) => agent.messages().filter((m) => m.msg === 'job succeeded').length;
    expect(doneBy(a) + doneBy(b)).toBe(12);
    expect(doneBy(a)).toBeGreaterThan(0);
    expect(doneBy(b)).toBeGreaterThan(0);
  });

  it('an agent paused past its lease is taken over; after SIGCONT it writes nothing (fencing) and carries on', async () => {
    estate = await Estate.create({
      label: 'e2e_stop',
      tenants: ['acme'],
      rows: 20_000,
      sources: [{ id: 'order_lines', table: 'public.order_lines' }],
      worker: { leaseSeconds: 5, concurrency: 1 },
      batch: { maxRows: 300 },
      faults: { latencyMs: 30 },
    });
    const sleeper = await estate.startAgent('sleeper');
    const [jobId] = await estate.enqueue('acme', 'initial');
    await estate.waitForPhase(jobId!, 'push');
    sleeper.signal('SIGSTOP');
    const other = await estate.startAgent('other');
    await other.waitFor(/"msg":"job claimed"/, 30_000);
    sleeper.signal('SIGCONT');
    await sleeper.waitFor(/lease lost|after losing its lease/, 30_000);
    await estate.waitForJobs([jobId!], 120_000);
    everyDatasetEqual(allOk(await estate.verify('acme')), ['order_lines']);
    // the job finished under the new owner, and the old one did not record a failure for it
    const [view] = await estate.queue.getJobs([jobId!]);
    expect(view).toMatchObject({ status: 'succeeded' });
    expect(sleeper.messages().filter((m) => m.msg === 'job succeeded' || m.msg === 'job failed; retrying later')).toEqual([]);
    // and it keeps running: still alive, ready for more work
    expect(sleeper.child.exitCode).toBeNull();
  });

  it('SIGTERM during a push drains within the grace period, exits 0, and the job resumes in the other process', async () => {
    estate = await slowPushEstate('e2e_term');
    const leaving = await estate.startAgent('leaving');
    const [jobId] = await estate.enqueue('acme', 'initial');
    await estate.waitForPhase(jobId!, 'push');
    const stopAt = Date.now();
    leaving.signal('SIGTERM');
    expect(await leaving.exited).toBe(0);
    expect(Date.now() - stopAt).toBeLessThan(10_000);
    expect(leaving.messages().some((m) => m.msg === 'job released at shutdown; another replica will resume it')).toBe(true);

    const [released] = await estate.queue.getJobs([jobId!]);
    expect(released).toMatchObject({ status: 'queued', phase: 'push' });
    const staying = await estate.startAgent('staying');
    await estate.waitForJobs([jobId!], 120_000);
    expect(staying.messages().some((m) => m.msg === 'resuming run taken over from another worker')).toBe(true);
    everyDatasetEqual(allOk(await estate.verify('acme')), ['order_lines']);
  });

  it('a run whose change set was emptied mid-push (control database restart: unlogged scratch tables reset) starts afresh and converges', async () => {
    estate = await slowPushEstate('e2e_reset');
    const ctl = estate.control.db;
    const tables = sourceTables('acme', 'order_lines');

    const { jobId, released } = await onboardingStoppedInPush(estate);
    const abandonedRun = released.runId;
    // What PostgreSQL's crash recovery does to UNLOGGED tables: they come back empty.
    await ctl.execute(`TRUNCATE ${ctl.table(tables.snapshot)}, ${ctl.table(tables.changes)}`);

    const second = await estate.startAgent('second');
    await estate.waitForJobs([jobId], 120_000);
    // An onboarding's change set is its snapshot (PostgreSQL 14+): that is what the message names.
    expect(second.messages().some((m) => typeof m.msg === 'string' && m.msg.includes('cannot resume') && m.msg.includes('its snapshot, the change set of this onboarding, was emptied'))).toBe(true);
    const [done] = await estate.queue.getJobs([jobId]);
    expect(done).toMatchObject({ status: 'succeeded' });
    expect(done!.runId).not.toBe(abandonedRun);
    everyDatasetEqual(allOk(await estate.verify('acme')), ['order_lines']);
    const after = await ctl.query<{ relname: string; relpersistence: string }>(
      `SELECT relname, relpersistence FROM pg_class WHERE oid IN (to_regclass($1), to_regclass($2), to_regclass($3)) ORDER BY relname`,
      [ctl.table(tables.snapshot), ctl.table(tables.changes), ctl.table(tables.staging)],
    );
    // Snapshot and changes are scratch (unlogged); staging is what the receiver holds (logged).
    expect(Object.fromEntries(after.map((r) => [r.relname, r.relpersistence]))).toEqual({
      [tables.snapshot.name]: 'u',
      [tables.changes.name]: 'u',
      [tables.staging.name]: 'p',
    });
  });

  it('an onboarding resumed after its snapshot was loaded again (the same rows, in another heap order) starts afresh instead of rendering the new load under its ranges', async () => {
    estate = await slowPushEstate('e2e_reload');
    const ctl = estate.control.db;
    const { snapshot } = sourceTables('acme', 'order_lines');

    const { jobId, released } = await onboardingStoppedInPush(estate);
    // What an interrupted `plan` or a later run would leave: the snapshot truncated and loaded again, same count.
    const held = ctl.table({ name: 'e2e_reload_copy' });
    await ctl.execute(`CREATE TABLE ${held} AS SELECT * FROM ${ctl.table(snapshot)}`);
    await ctl.execute(`TRUNCATE ${ctl.table(snapshot)}`);
    await ctl.execute(`INSERT INTO ${ctl.table(snapshot)} SELECT * FROM ${held} ORDER BY md5(order_id::text || line_no::text)`);
    await ctl.execute(`DROP TABLE ${held}`);

    const second = await estate.startAgent('second');
    await estate.waitForJobs([jobId], 120_000);
    expect(second.messages().some((m) => typeof m.msg === 'string' && m.msg.includes('cannot resume') && m.msg.includes('loaded again'))).toBe(true);
    const [done] = await estate.queue.getJobs([jobId]);
    expect(done).toMatchObject({ status: 'succeeded' });
    expect(done!.runId).not.toBe(released.runId);
    everyDatasetEqual(allOk(await estate.verify('acme')), ['order_lines']);
  });

  it('plan shows what a sync would push without pushing or touching staging; the sync then pushes exactly that', async () => {
    estate = await Estate.create({ label: 'e2e_plan', tenants: ['acme'], rows: 3000, sources: [{ id: 'customers', table: 'public.customers' }] });
    await estate.startAgent('agent-a');
    expect((await estate.cli(['onboard', '--tenant', 'acme', '--wait', '--timeout', '60'])).code).toBe(0);
    await estate.sourceDb('acme').execute(`UPDATE customers SET name = lower(name) WHERE customer_id <= 5; DELETE FROM customers WHERE customer_id IN (6, 7)`);
    const requestsBefore = await estate.receiverDb.db.query<{ n: string }>(`SELECT count(*)::text AS n FROM rx_requests`);

    const plan = jsonOf<{ upserts: number; deletes: number; sample: Array<{ op: string; row: Record<string, unknown> }> }>(
      await estate.cli(['plan', '--tenant', 'acme', '--source', 'customers', '--json', '--sample', '3']),
    );
    expect(plan).toMatchObject({ upserts: 5, deletes: 2 });
    expect(plan.sample).toHaveLength(3);
    expect(plan.sample[0]).toMatchObject({ op: 'upsert', row: { customer_id: 1 } });
    const requestsAfter = await estate.receiverDb.db.query<{ n: string }>(`SELECT count(*)::text AS n FROM rx_requests`);
    expect(requestsAfter).toEqual(requestsBefore);
    // the receiver still has the old rows: staging (what the receiver holds) was not advanced by the plan
    expect((await estate.verify('acme')).customers!.ok).toBe(false);

    expect((await estate.cli(['sync', '--tenant', 'acme', '--wait', '--timeout', '60'])).code).toBe(0);
    const status = jsonOf<{ sources: Array<{ lastRun: { upserts: number; deletes: number } }> }>(await estate.cli(['status', '--json']));
    expect(status.sources[0]!.lastRun).toMatchObject({ upserts: 5, deletes: 2 });
    everyDatasetEqual(allOk(await estate.verify('acme')), ['customers']);
  });

  it('a source whose table is missing is dead-lettered with a message; status says so; retry-dead after the fix syncs it', async () => {
    estate = await Estate.create({
      label: 'e2e_dead',
      tenants: ['acme'],
      rows: 2000,
      sources: [{ id: 'customers', table: 'public.customers' }, { id: 'legacy_notes', table: 'public.legacy_notes' }],
    });
    await estate.startAgent('agent-a');
    const onboard = await estate.cli(['onboard', '--tenant', 'acme', '--wait', '--timeout', '60']);
    expect(onboard.code).toBe(1);
    expect(onboard.stderr).toMatch(/acme\/legacy_notes: FAILED \(dead\): .*legacy_notes/);

    const status = jsonOf<{ sources: Array<{ source: string; dead: number; lastError: string | null; lastSuccessAt: string | null }> }>(await estate.cli(['status', '--json']));
    const notes = status.sources.find((s) => s.source === 'legacy_notes')!;
    expect(notes).toMatchObject({ dead: 1, lastSuccessAt: null });
    expect(notes.lastError).toMatch(/legacy_notes/);
    expect(status.sources.find((s) => s.source === 'customers')).toMatchObject({ dead: 0, lastError: null });

    await estate.sourceDb('acme').execute(`CREATE TABLE legacy_notes (id int PRIMARY KEY, body text); INSERT INTO legacy_notes VALUES (1, 'hello'), (2, NULL)`);
    const retry = await estate.cli(['jobs', 'retry-dead', '--tenant', 'acme']);
    expect(retry.stdout).toContain('1 dead job(s) put back in the queue.');
    const deadline = Date.now() + 60_000;
    for (;;) {
      const s = jsonOf<{ sources: Array<{ source: string; lastSuccessAt: string | null; dead: number }> }>(await estate.cli(['status', '--json']));
      const n = s.sources.find((x) => x.source === 'legacy_notes')!;
      if (n.lastSuccessAt) {
        expect(n.dead).toBe(0);
        break;
      }
      if (Date.now() > deadline) throw new Error('retried job did not succeed');
      await new Promise((r) => setTimeout(r, 300));
    }
    everyDatasetEqual(allOk(await estate.verify('acme')), ['customers', 'legacy_notes']);
  });
});
