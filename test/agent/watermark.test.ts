/**
 * Watermark mode (issue 21, docs/watermark.md) through the CLI, with the agent its own OS process and the reference
 * receiver: runs that read only rows past the watermark, keydiff runs that find deletes, full diffs that prove
 * nothing was missed, and the fallbacks (a watermark gone backwards), on a source of each dialect.
 */
import { afterEach, expect, it } from 'vitest';
import type { StatusReport } from '../../src/agent/status.ts';
import type { Db, DialectName } from '../../src/dialect/types.ts';
import { sourceTables } from '../../src/snapshot/source-tables.ts';
import { babelfishGap, describeEachDialect, itUnless } from '../support/databases.ts';
import { allOk, Estate } from '../support/estate.ts';

let estate: Estate | undefined;
afterEach(async () => {
  await estate?.close();
  estate = undefined;
});

const ROWS = 2000;

/** The source table: a datetime watermark on both dialects, and (SQL Server) a rowversion. */
function tableSql(dialect: DialectName, rowversion: boolean): string {
  return dialect === 'postgres'
    ? 'CREATE TABLE items (id bigint PRIMARY KEY, name text NOT NULL, qty integer, modified_at timestamptz(6) NOT NULL DEFAULT clock_timestamp()); CREATE INDEX items_modified ON items (modified_at)'
    : `CREATE TABLE dbo.items (id bigint NOT NULL PRIMARY KEY, name nvarchar(100) NOT NULL, qty int NULL, modified_at datetime2(6) NOT NULL DEFAULT SYSUTCDATETIME()${rowversion ? ', rv rowversion' : ''}); CREATE INDEX items_modified ON dbo.items (modified_at)`;
}

/** The source's clock, in SQL, `minutes` from now. */
function now(dialect: DialectName, minutes = 0): string {
  if (dialect === 'postgres') return minutes === 0 ? 'clock_timestamp()' : `clock_timestamp() + interval '${minutes} minutes'`;
  return minutes === 0 ? 'SYSUTCDATETIME()' : `DATEADD(minute, ${minutes}, SYSUTCDATETIME())`;
}

/**
 * Rows `from`..`to`, stamped now; seed rows (`seed`) are stamped 10 minutes apart, the last one a day ago, so that
 * an overlap of 5 minutes reaches only the last of them.
 */
async function insertItems(db: Db, dialect: DialectName, from: number, to: number, seed = false): Promise<void> {
  for (let start = from; start <= to; start += 500) {
    const values: string[] = [];
    for (let id = start; id <= Math.min(to, start + 499); id++)
      values.push(`(${id}, '${id % 7 === 0 ? 'Ünïcødé ' : 'item '}${id}', ${id % 10 === 0 ? 'NULL' : id % 10}, ${now(dialect, seed ? -24 * 60 - (to - id) * 10 : 0)})`);
    await db.execute(`INSERT INTO items (id, name, qty, modified_at) VALUES ${values.join(', ')}`);
  }
}

async function createSource(dialect: DialectName, label: string, watermark: Record<string, unknown>, options: { rowversion?: boolean; maxRows?: number; latencyMs?: number } = {}): Promise<Estate> {
  const e = await Estate.create({
    label,
    tenants: ['acme'],
    rows: 0,
    generate: false,
    source: dialect,
    sources: [{ id: 'items', table: dialect === 'postgres' ? 'public.items' : 'dbo.items', watermark }],
    batch: { maxRows: options.maxRows ?? 500 },
    ...(options.latencyMs ? { faults: { latencyMs: options.latencyMs }, worker: { concurrency: 1 } } : {}),
  });
  await e.sourceDb('acme').execute(tableSql(dialect, options.rowversion === true));
  await insertItems(e.sourceDb('acme'), dialect, 1, ROWS, true);
  return e;
}

async function status(e: Estate): Promise<StatusReport['sources'][number]> {
  const r = await e.cli(['status', '--json']);
  expect(r.code, r.stderr).toBe(0);
  return (JSON.parse(r.stdout) as StatusReport).sources.find((s) => s.source === 'items')!;
}

async function sync(e: Estate): Promise<StatusReport['sources'][number]> {
  const r = await e.cli(['sync', '--tenant', 'acme', '--wait', '--timeout', '120']);
  expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
  return status(e);
}

/** Every row of the source is at the receiver, exactly, and nothing else. */
async function converged(e: Estate): Promise<void> {
  expect(allOk(await e.verify('acme'))).toEqual({ items: 'ok' });
}

/** Staging's row count as the control database keeps it (cdc_source_state.staging_rows), and as counted. */
async function stagingCount(e: Estate): Promise<{ kept: number | null; counted: number }> {
  const db = e.control.db;
  const [kept] = await db.query<{ n: unknown }>(`SELECT staging_rows AS n FROM cdc_source_state WHERE tenant_id = 'acme' AND source_id = 'items'`);
  const [counted] = await db.query<{ n: unknown }>(`SELECT count(*) AS n FROM ${db.table(sourceTables('acme', 'items').staging)}`);
  return { kept: kept?.n === null || kept?.n === undefined ? null : Number(kept.n), counted: Number(counted?.n) };
}

let restarts = 0;

/**
 * Change the source's watermark settings as an operator does: edit the file and restart the agent (a rollout).
 * Unchanged settings restart nothing.
 */
async function schedule(e: Estate, every: { keyDiffEvery?: string; fullDiffEvery?: string; overlap?: string; column?: string }): Promise<void> {
  const source = e.raw.tenants[0]!.sources[0]!;
  const before = JSON.stringify(source.watermark);
  const after = { ...(source.watermark as Record<string, unknown>), ...every };
  if (JSON.stringify(after) === before) return;
  await e.rewriteConfig(() => {
    source.watermark = after;
  });
  const running = e.agents.filter((a) => a.child.exitCode === null && a.child.signalCode === null);
  for (const a of running) a.signal('SIGTERM');
  await Promise.all(running.map((a) => a.exited));
  await e.startAgent(`agent-r${++restarts}`);
}

describeEachDialect('watermark mode through the CLI, source', (dialect) => {
  const mark = { column: 'modified_at', keyDiffEvery: '30d', fullDiffEvery: '30d' };

  it('reads only the changed rows, sends a row updated twice once with its last value, finds deletes at the next key diff, and a full diff then finds nothing', async () => {
    estate = await createSource(dialect, 'wm_basic', mark);
    const db = estate.sourceDb('acme');
    await estate.startAgent('agent-a');
    expect((await estate.cli(['onboard', '--tenant', 'acme', '--wait', '--timeout', '120'])).code).toBe(0);
    const first = await status(estate);
    expect(first.lastRun).toMatchObject({ mode: 'initial', runType: 'full', sourceRows: ROWS, upserts: ROWS });
    expect(first.watermark).toMatchObject({ column: 'modified_at', kind: 'time', lastFullDiffFound: null });
    expect(first.watermark!.value).not.toBeNull();
    // The onboarding's finish records what staging holds; the watermark runs keep it from there.
    expect(await stagingCount(estate)).toEqual({ kept: ROWS, counted: ROWS });

    await db.execute(`UPDATE items SET qty = 100, modified_at = ${now(dialect)} WHERE id = 5`);
    await db.execute(`UPDATE items SET qty = 101, modified_at = ${now(dialect)} WHERE id = 5`);
    await db.execute(`UPDATE items SET name = 'renamed', modified_at = ${now(dialect)} WHERE id = 6`);
    await insertItems(db, dialect, ROWS + 1, ROWS + 3);
    await db.execute('DELETE FROM items WHERE id = 7');

    const second = await sync(estate);
    // Only rows past the watermark were read: the five changed ones, and the last seed row, within the overlap of the
    // watermark (unchanged, so not sent); the delete waits for a key diff.
    expect(second.lastRun).toMatchObject({ mode: 'incremental', runType: 'watermark', status: 'succeeded', sourceRows: 6, upserts: 5, deletes: 0 });
    expect(second.lastRun!.runReason).toMatch(/^rows past modified_at /);
    const upserted = await estate.receiverDb.db.query<{ upserts: string }>(`SELECT upserts::text FROM rx_runs WHERE mode = 'incremental'`);
    expect(upserted).toEqual([{ upserts: '5' }]);
    const sent = await estate.receiverDb.db.query<{ row_json: string }>(`SELECT row_json FROM ${await estate.receiverTable('acme', 'items')} WHERE k0 = 5`);
    expect(JSON.parse(sent[0]!.row_json)).toMatchObject({ qty: 101 });
    expect((await estate.receiverStats('acme', 'items')).rowsHeld).toBe(ROWS + 3);
    expect(await stagingCount(estate)).toEqual({ kept: ROWS + 3, counted: ROWS + 3 });

    // Unchanged: a watermark run reads the rows again that the overlap covers, and sends nothing for them.
    const idle = await sync(estate);
    expect(idle.lastRun).toMatchObject({ runType: 'watermark', upserts: 0, deletes: 0 });

    await schedule(estate, { keyDiffEvery: '1s' });
    await new Promise((r) => setTimeout(r, 1100));
    const keyed = await sync(estate);
    expect(keyed.lastRun).toMatchObject({ runType: 'keydiff', upserts: 0, deletes: 1, status: 'succeeded' });
    expect(keyed.lastRun!.runReason).toMatch(/deletes were last looked for .* ago \(keyDiffEvery 1s\)/);
    await converged(estate);

    await schedule(estate, { fullDiffEvery: '1s', keyDiffEvery: '1s' });
    await new Promise((r) => setTimeout(r, 1100));
    const full = await sync(estate);
    expect(full.lastRun).toMatchObject({ mode: 'incremental', runType: 'full', sourceRows: ROWS + 2, upserts: 0, deletes: 0 });
    expect(full.watermark).toMatchObject({ lastFullDiffFound: 0 });
    const text = await estate.cli(['status']);
    expect(text.stdout).toMatch(/incremental\/full succeeded/);
    expect(text.stdout).toMatch(/acme\/items: modified_at read to .*last full diff .*found 0 change\(s\)/);
  }, 240_000);

  it('a transaction in flight during a watermark read, whose rows commit later, is not lost (the overlap)', async () => {
    estate = await createSource(dialect, 'wm_flight', mark);
    const db = estate.sourceDb('acme');
    await estate.startAgent('agent-a');
    expect((await estate.cli(['onboard', '--tenant', 'acme', '--wait', '--timeout', '120'])).code).toBe(0);

    // A long transaction stamps its row when it writes it, and commits only after a watermark run read past it.
    const slow = db.transaction(async (tx) => {
      await tx.execute(`INSERT INTO items (id, name, qty, modified_at) VALUES (9001, 'slow', 1, ${now(dialect)})`);
      await new Promise((r) => setTimeout(r, 200));
      await db.execute(`UPDATE items SET qty = 55, modified_at = ${now(dialect)} WHERE id = 1`);
      const during = await sync(estate!);
      expect(during.lastRun).toMatchObject({ runType: 'watermark', upserts: 1 });
    });
    await slow;
    const after = await sync(estate);
    expect(after.lastRun).toMatchObject({ runType: 'watermark', upserts: 1 });
    await converged(estate);
  }, 240_000);

  it('a datetime watermark catches rows written 2 minutes in the past (default overlap 5m), and a shorter overlap leaves them to the full diff', async () => {
    estate = await createSource(dialect, 'wm_overlap', mark);
    const db = estate.sourceDb('acme');
    await estate.startAgent('agent-a');
    expect((await estate.cli(['onboard', '--tenant', 'acme', '--wait', '--timeout', '120'])).code).toBe(0);

    // Each read starts `overlap` before the greatest stamp read last time: a fresh stamp first, then one 2 minutes older.
    await db.execute(`UPDATE items SET qty = 76, modified_at = ${now(dialect)} WHERE id = 9`);
    expect((await sync(estate)).lastRun).toMatchObject({ runType: 'watermark', upserts: 1 });
    await db.execute(`UPDATE items SET qty = 77, modified_at = ${now(dialect, -2)} WHERE id = 10`);
    expect((await sync(estate)).lastRun).toMatchObject({ runType: 'watermark', upserts: 1 });
    await converged(estate);

    await schedule(estate, { overlap: '1m' });
    await db.execute(`UPDATE items SET qty = 78, modified_at = ${now(dialect)} WHERE id = 12`);
    expect((await sync(estate)).lastRun).toMatchObject({ runType: 'watermark', upserts: 1 });
    await db.execute(`UPDATE items SET qty = 79, modified_at = ${now(dialect, -2)} WHERE id = 11`);
    expect((await sync(estate)).lastRun).toMatchObject({ runType: 'watermark', upserts: 0 });
    await schedule(estate, { fullDiffEvery: '1s', keyDiffEvery: '1s' });
    await new Promise((r) => setTimeout(r, 1100));
    const full = await sync(estate);
    expect(full.lastRun).toMatchObject({ runType: 'full', upserts: 1 });
    expect(full.watermark).toMatchObject({ lastFullDiffFound: 1 });
    expect((await estate.cli(['status'])).stdout).toMatch(/found 1 change\(s\) the watermark runs had missed/);
    await converged(estate);
  }, 240_000);

  it('a watermark that went backwards (a restore) makes the run a full diff, with an event that says why', async () => {
    estate = await createSource(dialect, 'wm_back', mark);
    const db = estate.sourceDb('acme');
    await estate.startAgent('agent-a');
    expect((await estate.cli(['onboard', '--tenant', 'acme', '--wait', '--timeout', '120'])).code).toBe(0);
    await db.execute(`UPDATE items SET qty = 900 + id, modified_at = ${now(dialect)} WHERE id <= 3`);
    expect((await sync(estate)).lastRun).toMatchObject({ runType: 'watermark', upserts: 3 });
    // A restore of a backup from before that update: the three rows are back as they were, stamped a day ago.
    await db.execute(`UPDATE items SET qty = id, modified_at = ${now(dialect, -24 * 60)} WHERE id <= 3`);

    const back = await sync(estate);
    expect(back.lastRun).toMatchObject({ mode: 'incremental', runType: 'full', status: 'succeeded', upserts: 3 });
    expect(back.lastRun!.runReason).toMatch(/the watermark went backwards: modified_at is now at most .* below the .* already read/);
    const events = await estate.control.db.query<{ detail: string }>(`SELECT detail FROM cdc_events WHERE kind = 'watermark_reset'`);
    expect(events).toHaveLength(1);
    expect(JSON.parse(events[0]!.detail)).toMatchObject({ runType: 'full', reason: expect.stringMatching(/went backwards/) });
    // The full diff recorded the restored watermark: the next run reads past it again.
    await db.execute(`UPDATE items SET qty = 5, modified_at = ${now(dialect)} WHERE id = 4`);
    expect((await sync(estate)).lastRun).toMatchObject({ runType: 'watermark', upserts: 1 });
    await converged(estate);
  }, 240_000);

  it('kill -9 in the middle of a watermark run converges', async () => {
    estate = await createSource(dialect, 'wm_kill', mark, { maxRows: 20, latencyMs: 100 });
    const db = estate.sourceDb('acme');
    const a = await estate.startAgent('agent-a');
    expect((await estate.cli(['onboard', '--tenant', 'acme', '--wait', '--timeout', '120'])).code).toBe(0);
    await db.execute(`UPDATE items SET qty = 1000 + id, modified_at = ${now(dialect)} WHERE id <= 1500`);
    await insertItems(db, dialect, ROWS + 1, ROWS + 200);

    const [jobId] = await estate.enqueue('acme');
    await estate.waitForPhase(jobId!, 'push');
    a.signal('SIGKILL');
    await a.exited;
    await estate.startAgent('agent-b');
    await estate.waitForJobs([jobId!], 180_000);
    await converged(estate);
    const after = await status(estate);
    expect(after.lastRun).toMatchObject({ runType: 'watermark', status: 'succeeded' });
    // Each acknowledgement counted its rows once, in its own transaction, whichever agent made it.
    expect(await stagingCount(estate)).toEqual({ kept: ROWS + 200, counted: ROWS + 200 });
    // The watermark moved with the finished run only: the next run reads nothing new and sends nothing.
    expect((await sync(estate)).lastRun).toMatchObject({ runType: 'watermark', upserts: 0, deletes: 0 });
  }, 240_000);

  it('a full diff after 20 random watermark and key-diff runs with random changes finds nothing', async () => {
    estate = await createSource(dialect, 'wm_random', mark);
    const db = estate.sourceDb('acme');
    await estate.startAgent('agent-a');
    expect((await estate.cli(['onboard', '--tenant', 'acme', '--wait', '--timeout', '120'])).code).toBe(0);
    let seed = 21;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    let nextId = ROWS + 1;
    const types: string[] = [];
    for (let run = 1; run <= 20; run++) {
      const updates = 1 + Math.floor(random() * 30);
      for (let i = 0; i < updates; i++) {
        const id = 1 + Math.floor(random() * (nextId - 1));
        await db.execute(`UPDATE items SET qty = ${run * 100 + i}, name = 'run ${run}', modified_at = ${now(dialect)} WHERE id = ${id}`);
      }
      const inserts = Math.floor(random() * 10);
      if (inserts > 0) await insertItems(db, dialect, nextId, nextId + inserts - 1);
      nextId += inserts;
      const deletes = Math.floor(random() * 5);
      for (let i = 0; i < deletes; i++) await db.execute(`DELETE FROM items WHERE id = ${1 + Math.floor(random() * (nextId - 1))}`);
      // the last run before the full diff looks for deletes
      const keyDiff = run === 20 || random() < 0.3;
      await schedule(estate, { keyDiffEvery: keyDiff ? '1ms' : '30d' });
      const after = await sync(estate);
      // Reconciled, and staging's row count, kept by the acknowledgements rather than counted, is what it holds.
      expect(after.lastRun).toMatchObject({ status: 'succeeded' });
      const held = (await estate.receiverStats('acme', 'items')).rowsHeld;
      expect(await stagingCount(estate)).toEqual({ kept: held, counted: held });
      types.push(String(after.lastRun!.runType));
    }
    expect(new Set(types)).toEqual(new Set(['watermark', 'keydiff']));
    await schedule(estate, { fullDiffEvery: '1ms', keyDiffEvery: '1ms' });
    const full = await sync(estate);
    expect(full.lastRun).toMatchObject({ runType: 'full', upserts: 0, deletes: 0 });
    expect(full.watermark).toMatchObject({ lastFullDiffFound: 0 });
    await converged(estate);
  }, 400_000);

  it('config check --sources refuses a watermark column that is missing, of the wrong type or nullable without a NULL policy; a run then falls back to a full diff and says why', async () => {
    estate = await createSource(dialect, 'wm_check', mark);
    const db = estate.sourceDb('acme');
    await db.execute(dialect === 'postgres' ? 'ALTER TABLE items ADD COLUMN touched timestamptz NULL' : 'ALTER TABLE dbo.items ADD touched datetime2(3) NULL');
    const check = async (watermark: Record<string, unknown>) => {
      await estate!.rewriteConfig(
        (raw) => {
          raw.tenants[0]!.sources[0]!.watermark = watermark;
        },
        { invalid: true },
      );
      return estate!.cli(['config', 'check', '--sources']);
    };
    const good = await check(mark);
    expect(good.code, good.stderr).toBe(0);
    expect(good.stderr).toMatch(/acme\/items: ok: \d+ columns, key \(id\), watermark modified_at \(time, .*overlap 5m\)/);

    const missing = await check({ column: 'modifed_at' });
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/tenant "acme", source "items": watermark column "modifed_at" does not exist at the source \(its columns: id, name, qty, modified_at, touched\)/);
    const wrongType = await check({ column: 'name' });
    expect(wrongType.code).toBe(2);
    expect(wrongType.stderr).toMatch(/watermark column "name" is .*; a watermark must be /);
    const nullable = await check({ column: 'touched' });
    expect(nullable.code).toBe(2);
    expect(nullable.stderr).toMatch(/watermark column "touched" is nullable; say how its NULLs are treated with watermark.nulls: read .* or fullDiffOnly/);
    expect((await check({ column: 'touched', nulls: 'read' })).code).toBe(0);
    const overlapOnNumber = await check({ column: 'qty', overlap: '1m', nulls: 'read' });
    expect(overlapOnNumber.stderr).toMatch(/watermark.overlap applies to datetime watermarks only/);
    // Statically wrong settings are refused without connecting.
    const longer = await check({ column: 'modified_at', keyDiffEvery: '2d', fullDiffEvery: '1d' });
    expect(longer.code).toBe(2);
    expect(longer.stderr).toContain('tenants[0].sources[0].watermark.keyDiffEvery: must not be longer than fullDiffEvery');

    // A run with a watermark it cannot use reads every row, and says why in status and as an event.
    await estate.rewriteConfig((raw) => {
      raw.tenants[0]!.sources[0]!.watermark = mark;
    });
    await estate.startAgent('agent-a');
    expect((await estate.cli(['onboard', '--tenant', 'acme', '--wait', '--timeout', '120'])).code).toBe(0);
    await schedule(estate, { column: 'modifed_at' });
    const fallback = await sync(estate);
    expect(fallback.lastRun).toMatchObject({ mode: 'incremental', runType: 'full', upserts: 0 });
    expect(fallback.lastRun!.runReason).toMatch(/watermark column "modifed_at" does not exist at the source.*; a full diff instead/);
    const events = await estate.control.db.query<{ detail: string }>(`SELECT detail FROM cdc_events WHERE kind = 'watermark_reset'`);
    expect(events.map((e) => (JSON.parse(e.detail) as { reason: string }).reason)).toEqual([expect.stringMatching(/"modifed_at" does not exist/)]);
  }, 240_000);

  if (dialect === 'mssql') {
    itUnless(babelfishGap(dialect, 'rowversion'))('rowversion: a transaction in flight is bounded by MIN_ACTIVE_ROWVERSION() and read once it commits', async () => {
      estate = await createSource(dialect, 'wm_rowver', { column: 'rv', keyDiffEvery: '30d', fullDiffEvery: '30d' }, { rowversion: true });
      const db = estate.sourceDb('acme');
      await estate.startAgent('agent-a');
      expect((await estate.cli(['onboard', '--tenant', 'acme', '--wait', '--timeout', '120'])).code).toBe(0);
      expect((await status(estate)).watermark).toMatchObject({ column: 'rv', kind: 'rowversion', value: expect.stringMatching(/^0x[0-9A-F]{16}$/) });
      const slow = db.transaction(async (tx) => {
        await tx.execute(`INSERT INTO items (id, name, qty) VALUES (9001, N'slow', 1)`);
        await db.execute('UPDATE items SET qty = 55 WHERE id = 1');
        const during = await sync(estate!);
        expect(during.lastRun).toMatchObject({ runType: 'watermark', upserts: 1 });
      });
      await slow;
      expect((await sync(estate)).lastRun).toMatchObject({ runType: 'watermark', upserts: 1 });
      await converged(estate);
    }, 240_000);
  }
});
