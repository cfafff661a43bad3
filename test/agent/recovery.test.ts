/**
 * Recovery an operator can trust (issue 17), through the CLI with every agent its own OS process, against the
 * reference receiver: `verify` finds what a receiver lost or changed, `resync` re-sends it, a receiver's
 * mismatch makes the run unreconciled and enqueues one resync, and run modes say what a run is.
 */
import { afterEach, expect, it, vi } from 'vitest';
import type { SourceVerification, VerifyReport } from '../../src/agent/verify.ts';
import { sourceTables } from '../../src/snapshot/source-tables.ts';
import { describeEachDialect } from '../support/databases.ts';
import { allOk, Estate, type EstateOptions } from '../support/estate.ts';

// Each test is a whole operator session of CLI processes; on a SQL Server control database (Babelfish here) the first
// one took 60 s of the default timeout.
vi.setConfig({ testTimeout: 240_000 });

let estate: Estate | undefined;
afterEach(async () => {
  await estate?.close();
  estate = undefined;
});

const THREE = [
  { id: 'customers', table: 'public.customers' },
  { id: 'orders', table: 'public.orders' },
  { id: 'products', table: 'public.products' },
];

function bySource(report: VerifyReport): Record<string, SourceVerification> {
  return Object.fromEntries(report.sources.map((s) => [s.source, s]));
}

async function verifyJson(e: Estate, extra: string[] = []): Promise<{ code: number; report: VerifyReport; stderr: string }> {
  const r = await e.cli(['verify', '--tenant', 'acme', '--json', ...extra]);
  if (r.stdout.trim() === '') throw new Error(`verify printed nothing (exit ${r.code}): ${r.stderr}`);
  return { code: r.code, report: JSON.parse(r.stdout) as VerifyReport, stderr: r.stderr };
}

/** Receiver-side damage: every row whose integer key ends in 0, 1 or 2 is gone (30 %). */
async function loseRows(e: Estate, dataset: string): Promise<number> {
  return e.receiverDb.db.execute(`DELETE FROM ${await e.receiverTable('acme', dataset)} WHERE k0 % 10 < 3`);
}

/** Receiver-side damage: ten rows get another value in one column. */
async function changeRows(e: Estate, dataset: string, column: string, ids: number[]): Promise<void> {
  const table = await e.receiverTable('acme', dataset);
  // jsonb_set keeps the row valid contract JSON; only the value changes (and the text's spelling, which the digest also sees)
  const changed = await e.receiverDb.db.execute(
    `UPDATE ${table} SET row_json = jsonb_set(row_json::jsonb, '{${column}}', '"tampered"')::text WHERE k0 = ANY($1::bigint[])`,
    [ids],
  );
  expect(changed).toBe(ids.length);
}

async function stagingEqualsReceiver(e: Estate, dataset: string): Promise<void> {
  const ctl = e.control.db;
  const [staged] = await ctl.query<{ n: unknown }>(`SELECT count(*) AS n FROM ${ctl.table(sourceTables('acme', dataset).staging)}`);
  const stats = await e.receiverStats('acme', dataset);
  expect(Number(staged!.n)).toBe(stats.rowsHeld);
}

// Sources and the receiver are PostgreSQL; the control database is each dialect in turn.
describeEachDialect('recovery through the CLI, control database', (control) => {
  const create = (options: EstateOptions) => Estate.create({ ...options, control });

  it('verify names the two damaged datasets with the right counts and the third as matching; resync repairs both; verify then matches', async () => {
    estate = await create({ label: 'rec_verify', tenants: ['acme'], rows: 6000, sources: THREE });
    await estate.startAgent('agent-a');
    expect((await estate.cli(['onboard', '--tenant', 'acme', '--wait', '--timeout', '120'])).code).toBe(0);

    const clean = await verifyJson(estate);
    expect(clean.code).toBe(0);
    expect(clean.report.sources.map((s) => s.status)).toEqual(['match', 'match', 'match']);

    const customers = (await estate.receiverStats('acme', 'customers')).rowsHeld!;
    const lost = await loseRows(estate, 'customers');
    expect(lost).toBeGreaterThan(customers * 0.25);
    await changeRows(estate, 'orders', 'status', [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);

    const damaged = await verifyJson(estate);
    expect(damaged.code).toBe(1);
    const found = bySource(damaged.report);
    expect(found.products).toMatchObject({ status: 'match' });
    expect(found.customers).toMatchObject({
      status: 'differs',
      receiverDiffersFromStaging: true,
      stagingDiffersFromSource: false,
      rows: { source: customers, staging: customers, receiver: customers - lost },
    });
    expect(found.customers!.samples.length).toBeGreaterThan(0);
    expect(found.customers!.samples.every((s) => s.problem === 'missing at the receiver' && Number(s.key.customer_id) % 10 < 3)).toBe(true);
    const orders = (await estate.receiverStats('acme', 'orders')).rowsHeld!;
    expect(found.orders).toMatchObject({ status: 'differs', receiverDiffersFromStaging: true, stagingDiffersFromSource: false, rows: { source: orders, staging: orders, receiver: orders } });
    // ten changed rows land in at most ten buckets; each sampled one names its key as changed
    expect(found.orders!.differingBuckets).toBeGreaterThan(0);
    expect(found.orders!.differingBuckets).toBeLessThanOrEqual(10);
    expect(found.orders!.samples.length).toBeGreaterThan(0);
    for (const s of found.orders!.samples) {
      expect(s.problem).toBe('differs at the receiver');
      expect(Number(s.key.order_id)).toBeLessThanOrEqual(10);
    }
    const text = await estate.cli(['verify', '--tenant', 'acme']);
    expect(text.code).toBe(1);
    expect(text.stdout).toMatch(/acme\/customers: DIFFERS: .*receiver ≠ staging.*cdc-agent resync --tenant acme --source customers/);
    expect(text.stdout).toMatch(/acme\/products: matches: /);

    for (const source of ['customers', 'orders']) {
      const resync = await estate.cli(['resync', '--tenant', 'acme', '--source', source, '--wait', '--timeout', '120']);
      expect(resync.stderr).toContain('All 1 source(s) synced.');
      expect(resync.code).toBe(0);
    }
    expect(allOk(await estate.verify('acme'))).toEqual({ customers: 'ok', orders: 'ok', products: 'ok' });
    const after = await verifyJson(estate);
    expect(after.code).toBe(0);
    expect(after.report.sources.map((s) => s.status)).toEqual(['match', 'match', 'match']);
    // the resync runs went out as resync and re-sent every row
    const runs = await estate.receiverDb.db.query<{ dataset: string; mode: string; upserts: string }>(
      `SELECT dataset, mode, upserts::text FROM rx_runs WHERE mode = 'resync' ORDER BY dataset`,
    );
    expect(runs).toEqual([
      { dataset: 'customers', mode: 'resync', upserts: String(customers) },
      { dataset: 'orders', mode: 'resync', upserts: String(orders) },
    ]);
  });

  it('verify --repair enqueues a resync where the receiver differs and a sync where only the source moved', async () => {
    estate = await create({ label: 'rec_repair', tenants: ['acme'], rows: 3000, sources: THREE.slice(0, 2) });
    await estate.startAgent('agent-a');
    expect((await estate.cli(['onboard', '--tenant', 'acme', '--wait', '--timeout', '120'])).code).toBe(0);
    await loseRows(estate, 'customers');
    await estate.sourceDb('acme').execute(`UPDATE orders SET status = 'refunded' WHERE order_id <= 3`);

    const repaired = await verifyJson(estate, ['--repair']);
    expect(repaired.code).toBe(1);
    const found = bySource(repaired.report);
    expect(found.customers).toMatchObject({ status: 'differs', receiverDiffersFromStaging: true, repair: { kind: 'resync', enqueued: true } });
    expect(found.orders).toMatchObject({ status: 'differs', receiverDiffersFromStaging: false, stagingDiffersFromSource: true, repair: { kind: 'incremental', enqueued: true } });
    await estate.waitForJobs([found.customers!.repair!.jobId!, found.orders!.repair!.jobId!]);
    expect((await verifyJson(estate)).code).toBe(0);
  });

  it('a kill -9 in the middle of a resync converges, and staging equals the receiver afterwards', async () => {
    estate = await create({
      label: 'rec_kill',
      tenants: ['acme'],
      rows: 20_000,
      sources: [{ id: 'order_lines', table: 'public.order_lines' }],
      worker: { leaseSeconds: 5, concurrency: 1 },
      batch: { maxRows: 500 },
      faults: { latencyMs: 40 },
    });
    const victim = await estate.startAgent('victim');
    const [initial] = await estate.enqueue('acme', 'initial');
    await estate.waitForJobs([initial!]);
    await estate.receiverDb.db.execute(`DELETE FROM ${await estate.receiverTable('acme', 'order_lines')} WHERE k1 = 1`);

    const [resync] = await estate.enqueue('acme', 'resync');
    await estate.waitForPhase(resync!, 'push');
    victim.signal('SIGKILL');
    expect(await victim.exited).toBeNull();
    await estate.startAgent('rescuer');
    await estate.waitForJobs([resync!], 120_000);

    expect(allOk(await estate.verify('acme'))).toEqual({ order_lines: 'ok' });
    await stagingEqualsReceiver(estate, 'order_lines');
    const verified = await verifyJson(estate);
    expect(verified.report.sources[0]).toMatchObject({ status: 'match', receiverDiffersFromStaging: false });
    expect((await estate.receiverStats('acme', 'order_lines')).mismatches).toBe(0);
  });

  it('a receiver that reports a mismatch: the run is unreconciled in status, the event is recorded, exactly one resync follows and repairs it', async () => {
    estate = await create({ label: 'rec_mismatch', tenants: ['acme'], rows: 3000, sources: [{ id: 'customers', table: 'public.customers' }] });
    const agent = await estate.startAgent('agent-a');
    expect((await estate.cli(['onboard', '--tenant', 'acme', '--wait', '--timeout', '120'])).code).toBe(0);
    const lost = await loseRows(estate, 'customers');

    // An incremental sync sends no rows (the source did not change); the receiver, missing rows, answers mismatch.
    const sync = await estate.cli(['sync', '--tenant', 'acme', '--wait', '--timeout', '120']);
    expect(sync.code).toBe(1);
    expect(sync.stderr).toMatch(/acme\/customers: UNRECONCILED: every batch was acknowledged, but the receiver reports: rows: source has \d+, receiver holds \d+\. A resync is enqueued/);
    expect(sync.stderr).not.toContain('All 1 source(s) synced.');

    const status = JSON.parse((await estate.cli(['status', '--json'])).stdout) as { sources: Array<{ lastRun: { runId: string; mode: string; status: string; problems: string[] | null } }> };
    // the resync may already be running; the unreconciled run is the incremental one in cdc_runs
    const runs = await estate.control.db.query<{ mode: string; status: string; problems: string | null }>(`SELECT mode, status, problems FROM cdc_runs ORDER BY started_at`);
    expect(runs[1]).toMatchObject({ mode: 'incremental', status: 'unreconciled' });
    expect(JSON.parse(runs[1]!.problems!)).toEqual([expect.stringMatching(/^rows: source has \d+, receiver holds \d+$/)]);
    expect(['unreconciled', 'running', 'succeeded']).toContain(status.sources[0]!.lastRun.status);
    const events = await estate.control.db.query<{ kind: string; detail: string }>(`SELECT kind, detail FROM cdc_events WHERE kind = 'run_unreconciled'`);
    expect(events).toHaveLength(1);
    expect(JSON.parse(events[0]!.detail)).toMatchObject({ action: 'resync' });
    await agent.waitFor(/"msg":"job finished unreconciled"/);

    // exactly one resync, enqueued by the agent, and it repairs the receiver
    const deadline = Date.now() + 60_000;
    let resyncs: Array<{ id: string; status: string }>;
    for (;;) {
      resyncs = await estate.control.db.query<{ id: string; status: string }>(`SELECT CAST(id AS varchar(20)) AS id, status FROM cdc_jobs WHERE kind = 'resync'`);
      if (resyncs.length === 1 && resyncs[0]!.status === 'succeeded') break;
      if (Date.now() > deadline) throw new Error(`resync did not finish: ${JSON.stringify(resyncs)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(lost).toBeGreaterThan(0);
    expect(allOk(await estate.verify('acme'))).toEqual({ customers: 'ok' });
    const reconciled = JSON.parse((await estate.cli(['status', '--json'])).stdout) as typeof status;
    expect(reconciled.sources[0]!.lastRun).toMatchObject({ mode: 'resync', status: 'succeeded', problems: null });

    // Damaged again within mismatchResyncEvery: the run is unreconciled, and no second resync is enqueued.
    await loseRows(estate, 'customers');
    const again = await estate.cli(['sync', '--tenant', 'acme', '--wait', '--timeout', '120']);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/No resync was enqueued, since one already ran within mismatchResyncEvery/);
    expect(await estate.control.db.query(`SELECT id FROM cdc_jobs WHERE kind = 'resync'`)).toHaveLength(1);
    const table = (await estate.cli(['status'])).stdout;
    expect(table).toMatch(/incremental unreconciled/);
    expect(table).toMatch(/receiver did not reconcile: rows: source has/);
  });

  it('a receiver without the digest endpoint: verify says it cannot verify and exits 3', async () => {
    estate = await create({ label: 'rec_nodigest', tenants: ['acme'], rows: 1000, sources: THREE.slice(0, 1), digest: false });
    await estate.startAgent('agent-a');
    expect((await estate.cli(['onboard', '--tenant', 'acme', '--wait', '--timeout', '120'])).code).toBe(0);
    const r = await estate.cli(['verify', '--tenant', 'acme']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(3);
    expect(r.stdout).toMatch(/acme\/customers: receiver cannot verify: the receiver of tenant "acme" \(http:\/\/127\.0\.0\.1:\d+\) cannot verify: it answered HTTP 404 to GET \/tenants\/acme\/datasets\/customers\/digest/);
    expect(r.stdout).toContain('Staging and the source agree.');
  });
});

describeEachDialect('run modes tell the truth, control database', (control) => {
  const create = (options: EstateOptions) => Estate.create({ ...options, control });

  it('the first scheduled sync of a never-synced source arrives as initial; onboard then says it is onboarded; a drift re-send arrives as resync', async () => {
    estate = await create({ label: 'rec_modes', tenants: ['acme'], rows: 2000, sources: [{ id: 'customers', table: 'public.customers', every: '1h' }] });
    // the schedule's current slot fires at start for a source that was never synced
    const agent = await estate.startAgent('agent-a', [], { schedule: true });
    const deadline = Date.now() + 60_000;
    while ((await estate.receiverDb.db.query(`SELECT 1 FROM rx_runs`)).length === 0) {
      if (Date.now() > deadline) throw new Error(`no run completed; agent said:\n${agent.lines.slice(-10).join('\n')}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    const first = await estate.receiverDb.db.query<{ mode: string; upserts: string }>(`SELECT mode, upserts::text FROM rx_runs`);
    expect(first).toEqual([{ mode: 'initial', upserts: String((await estate.receiverStats('acme', 'customers')).rowsHeld) }]);
    const batchModes = await estate.control.db.query<{ mode: string; kind: string }>(`SELECT r.mode, j.kind FROM cdc_runs r JOIN cdc_jobs j ON CAST(j.id AS varchar(20)) = r.job_id`);
    expect(batchModes).toEqual([{ mode: 'initial', kind: 'incremental' }]);

    const onboard = await estate.cli(['onboard', '--tenant', 'acme', '--wait', '--timeout', '60']);
    expect(onboard.code).toBe(0);
    expect(onboard.stderr).toContain('acme/customers: already onboarded; nothing enqueued. `cdc-agent sync --tenant acme` pushes its changes; `onboard --force` re-sends every row (a resync).');
    expect(await estate.control.db.query(`SELECT id FROM cdc_jobs WHERE kind = 'initial'`)).toHaveLength(0);

    await estate.sourceDb('acme').execute(`ALTER TABLE customers ADD COLUMN loyalty_tier integer`);
    expect((await estate.cli(['sync', '--tenant', 'acme', '--wait', '--timeout', '60'])).code).toBe(0);
    const modes = await estate.receiverDb.db.query<{ mode: string }>(`SELECT mode FROM rx_runs ORDER BY completed_at`);
    expect(modes.map((m) => m.mode)).toEqual(['initial', 'resync']);
    expect(allOk(await estate.verify('acme'))).toEqual({ customers: 'ok' });

    const forced = await estate.cli(['onboard', '--tenant', 'acme', '--force', '--wait', '--timeout', '60']);
    expect(forced.code).toBe(0);
    expect(forced.stderr).toMatch(/acme\/customers: resync sync enqueued \(job \d+\)/);
    expect((await estate.receiverDb.db.query<{ mode: string }>(`SELECT mode FROM rx_runs ORDER BY completed_at`)).map((m) => m.mode)).toEqual(['initial', 'resync', 'resync']);
  });

  it('onboard run again while the jobs are still there follows them instead of enqueueing more', async () => {
    estate = await create({ label: 'rec_reattach', tenants: ['acme'], rows: 2000, sources: THREE.slice(0, 2) });
    const first = await estate.cli(['onboard', '--tenant', 'acme']);
    expect(first.code).toBe(0);
    const jobs = await estate.control.db.query<{ id: string }>(`SELECT CAST(id AS varchar(20)) AS id FROM cdc_jobs ORDER BY id`);
    expect(jobs).toHaveLength(2);
    // run again while both jobs are still queued (no agent yet); the agent starts once it has attached
    const pending = estate.cli(['onboard', '--tenant', 'acme', '--wait', '--timeout', '120']);
    await new Promise((r) => setTimeout(r, 4000));
    await estate.startAgent('agent-a');
    const again = await pending;
    expect(again.code).toBe(0);
    expect(again.stderr).toMatch(new RegExp(`acme/customers: its initial sync is already (queued|running) \\(job ${jobs[0]!.id}\\); following it`));
    expect(again.stderr).toContain('All 2 source(s) synced.');
    expect(await estate.control.db.query(`SELECT id FROM cdc_jobs`)).toHaveLength(2);
  });
});
