import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { connect } from '../../src/dialect/connect.ts';
import type { Db } from '../../src/dialect/types.ts';
import { LeaseLostError, PermanentError, TransientError } from '../../src/errors/errors.ts';
import { migrate } from '../../src/migrations/migrate.ts';
import { backoffCeilingMs, createJobQueue, type ClaimedJob, type JobQueue } from '../../src/queue-table/queue.ts';
import { babelfishGap, createTestDatabase, describeEachDialect, itUnless, type TestDatabase } from '../support/databases.ts';

const LEASE = 60_000;

async function claimOne(queue: JobQueue, worker: string, leaseMs = LEASE): Promise<ClaimedJob> {
  const [job] = await queue.claim(worker, 1, leaseMs);
  if (!job) throw new Error(`${worker} found nothing to claim`);
  return job;
}

/** Claim until a job comes back (a lease expiring, a backoff passing): bounded, never a timing assertion. */
async function claimWhenDue(queue: JobQueue, worker: string, leaseMs = LEASE, limitMs = 15_000): Promise<ClaimedJob> {
  const until = Date.now() + limitMs;
  for (;;) {
    const [job] = await queue.claim(worker, 1, leaseMs);
    if (job) return job;
    if (Date.now() > until) throw new Error(`${worker} found nothing to claim within ${limitMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describeEachDialect('queue table', (dialect) => {
  let t: TestDatabase;
  let queue: JobQueue;
  const others: Db[] = [];

  /** A replica: its own connection pool (one connection) and its own queue object. */
  async function replica(): Promise<JobQueue> {
    const db = await connect({ ...t.config, poolMax: 1 });
    others.push(db);
    return createJobQueue(db);
  }

  beforeAll(async () => {
    t = await createTestDatabase(dialect, 'queue');
    await migrate(t.db);
    queue = createJobQueue(t.db);
  });
  afterAll(async () => {
    for (const db of others) await db.close().catch(() => {});
    await t?.drop();
  });
  beforeEach(async () => {
    await t.db.execute(`DELETE FROM ${t.db.table({ name: 'cdc_jobs' })}`);
  });

  describe('enqueue', () => {
    it('coalesces a request for a source that already has an unfinished job, and says so', async () => {
      const first = await queue.enqueue({ tenant: 'acme', source: 'orders', kind: 'incremental' });
      expect(first).toEqual({ enqueued: true, jobId: expect.any(String) });
      const second = await queue.enqueue({ tenant: 'acme', source: 'orders', kind: 'resync' });
      expect(second).toEqual({ enqueued: false, jobId: null, reason: 'coalesced', existingJobId: first.jobId });

      // still coalesced while running; a different source is independent
      const job = await claimOne(queue, 'w1');
      expect(job.id).toBe(first.jobId);
      expect((await queue.enqueue({ tenant: 'acme', source: 'orders', kind: 'incremental' })).reason).toBe('coalesced');
      expect((await queue.enqueue({ tenant: 'acme', source: 'customers', kind: 'incremental' })).enqueued).toBe(true);

      // finished: the next request is a new job
      await queue.complete(job);
      const third = await queue.enqueue({ tenant: 'acme', source: 'orders', kind: 'incremental' });
      expect(third.enqueued).toBe(true);
      expect(third.jobId).not.toBe(first.jobId);
    });

    it('lets 5 replicas ticking the same schedule slot create exactly one job, and a tick while it is unfinished none', async () => {
      const replicas = await Promise.all(Array.from({ length: 5 }, () => replica()));
      const slot = 'cron:2026-11-22T10:15Z';
      const results = await Promise.all(replicas.map((q) => q.enqueue({ tenant: 'acme', source: 'orders', kind: 'incremental', slotKey: slot })));
      const created = results.filter((r) => r.enqueued);
      expect(created).toHaveLength(1);
      const jobId = created[0]!.jobId!;
      for (const r of results.filter((x) => !x.enqueued)) {
        expect(r.existingJobId).toBe(jobId);
        expect(['slot-taken', 'coalesced']).toContain(r.reason);
      }

      // the next slot fires while the job is still queued: coalesced into it
      const next = await replicas[1]!.enqueue({ tenant: 'acme', source: 'orders', kind: 'incremental', slotKey: 'cron:2026-11-22T10:30Z' });
      expect(next).toEqual({ enqueued: false, jobId: null, reason: 'coalesced', existingJobId: jobId });

      // the job finishes; a late replica ticking the old slot still creates nothing
      const job = await claimOne(queue, 'w1');
      await queue.complete(job);
      const late = await replicas[4]!.enqueue({ tenant: 'acme', source: 'orders', kind: 'incremental', slotKey: slot });
      expect(late).toEqual({ enqueued: false, jobId: null, reason: 'slot-taken', existingJobId: jobId });
      const count = await t.db.query<{ n: number }>(`SELECT COUNT(*) AS n FROM ${t.db.table({ name: 'cdc_jobs' })}`);
      expect(Number(count[0]!.n)).toBe(1);

      // a new slot after it finished does create the next job
      expect((await replicas[2]!.enqueue({ tenant: 'acme', source: 'orders', kind: 'incremental', slotKey: 'cron:2026-11-22T10:45Z' })).enqueued).toBe(true);
    });
  });

  describe('claim', () => {
    itUnless(babelfishGap(dialect, 'no-readpast'))('8 concurrent claimers on separate connections claim each of 2,000 jobs exactly once', async () => {
      const total = 2_000;
      const ids: string[] = [];
      for (let i = 0; i < total; i += 100) {
        const batch = await Promise.all(
          Array.from({ length: 100 }, (_, k) => queue.enqueue({ tenant: `t${(i + k) % 10}`, source: `s${i + k}`, kind: 'incremental' })),
        );
        ids.push(...batch.map((r) => r.jobId!));
      }
      expect(new Set(ids).size).toBe(total);

      const claimers = await Promise.all(Array.from({ length: 8 }, () => replica()));
      const claimedBy = new Map<string, string[]>();
      await Promise.all(
        claimers.map(async (q, w) => {
          let empty = 0;
          while (empty < 3) {
            const jobs = await q.claim(`worker-${w}`, 3, LEASE);
            if (jobs.length === 0) {
              empty++;
              continue;
            }
            empty = 0;
            for (const job of jobs) claimedBy.set(job.id, [...(claimedBy.get(job.id) ?? []), `worker-${w}`]);
          }
        }),
      );

      const doubles = [...claimedBy].filter(([, workers]) => workers.length > 1);
      expect(doubles).toEqual([]);
      expect([...claimedBy.keys()].sort()).toEqual([...ids].sort());
      // every claimer took part, and nothing is left behind
      expect(new Set([...claimedBy.values()].flat()).size).toBe(8);
      expect(await queue.claim('late', 10, LEASE)).toEqual([]);
      expect((await queue.stats()).depth).toMatchObject({ queued: 0, running: total });
    });

    itUnless(babelfishGap(dialect, 'slow-claim-backlog'))('claims a single job of another tenant within one round of a 1,000-job backlog', async () => {
      for (let i = 0; i < 1_000; i += 100) {
        await Promise.all(Array.from({ length: 100 }, (_, k) => queue.enqueue({ tenant: 'big', source: `s${i + k}`, kind: 'incremental' })));
      }
      const small = await queue.enqueue({ tenant: 'small', source: 'only', kind: 'incremental' });
      const first = await claimOne(queue, 'w1');
      const second = await claimOne(queue, 'w1');
      expect([first.id, second.id]).toContain(small.jobId);
      // and in a batch claim it is in the first batch
      await t.db.execute(`UPDATE ${t.db.table({ name: 'cdc_jobs' })} SET status = 'queued', lease_token = NULL, lease_until = NULL`);
      const batch = await queue.claim('w2', 2, LEASE);
      expect(batch.map((j) => j.tenant).sort()).toEqual(['big', 'small']);
    });

    it('claims higher priority first: onboarding before the routine schedule', async () => {
      await queue.enqueue({ tenant: 'acme', source: 'a', kind: 'incremental' });
      await queue.enqueue({ tenant: 'acme', source: 'b', kind: 'resync' });
      await queue.enqueue({ tenant: 'newco', source: 'c', kind: 'initial' });
      const order = [await claimOne(queue, 'w'), await claimOne(queue, 'w'), await claimOne(queue, 'w')].map((j) => j.kind);
      expect(order).toEqual(['initial', 'resync', 'incremental']);
    });

    it('does not claim a job before its run_after', async () => {
      await queue.enqueue({ tenant: 'acme', source: 'later', kind: 'incremental', runAfter: new Date(Date.now() + 3_600_000) });
      expect(await queue.claim('w', 5, LEASE)).toEqual([]);
      expect((await queue.stats()).depth.queued).toBe(1);
    });
  });

  describe('what the operator-facing commands rely on', () => {
    it('claims only jobs of the sources it is given (a replica claims only what its configuration has)', async () => {
      await queue.enqueue({ tenant: 'acme', source: 'old', kind: 'incremental' });
      const fresh = await queue.enqueue({ tenant: 'acme', source: 'new', kind: 'initial' });
      expect(await queue.claim('old-replica', 5, LEASE, [{ tenant: 'acme', source: 'old' }])).toEqual([expect.objectContaining({ source: 'old' })]);
      expect(await queue.claim('old-replica', 5, LEASE, [{ tenant: 'acme', source: 'old' }])).toEqual([]);
      expect(await queue.claim('nobody', 5, LEASE, [])).toEqual([]);
      const [view] = await queue.getJobs([fresh.jobId!]);
      expect(view).toMatchObject({ status: 'queued', attempts: 0 });
      expect(await queue.claim('new-replica', 5, LEASE, [{ tenant: 'acme', source: 'new' }])).toEqual([expect.objectContaining({ source: 'new' })]);
      await expect(queue.claim('w', 1, LEASE, [{ tenant: 'acme', source: "x'; --" }])).rejects.toThrow(RangeError);
    });

    it('completes a job and enqueues its follow-up in one transaction, and says how long due jobs wait', async () => {
      const { jobId } = await queue.enqueue({ tenant: 'acme', source: 'orders', kind: 'incremental' });
      const job = await claimOne(queue, 'w');
      const next = await queue.complete(job, { phase: 'done' }, { tenant: 'acme', source: 'orders', kind: 'resync' });
      expect(next).toEqual({ enqueued: true, jobId: expect.any(String) });
      const views = await queue.getJobs([jobId!, next!.jobId!]);
      expect(views.map((v) => [v.kind, v.status])).toEqual([
        ['incremental', 'succeeded'],
        ['resync', 'queued'],
      ]);
      const stats = await queue.stats();
      expect(stats.queuedBySource).toEqual([{ tenant: 'acme', source: 'orders', count: 1, waitingSeconds: expect.any(Number) }]);
      expect(stats.queuedBySource[0]!.waitingSeconds).toBeGreaterThanOrEqual(0);
      // a lost lease completes nothing and enqueues nothing
      await expect(queue.complete({ id: job.id, leaseToken: 'stale' }, {}, { tenant: 'acme', source: 'other', kind: 'resync' })).rejects.toBeInstanceOf(LeaseLostError);
      expect((await queue.stats()).queuedBySource.map((q) => q.source)).toEqual(['orders']);
    });

    it('lists the newest jobs by state and tenant, with the database clock', async () => {
      const a = await queue.enqueue({ tenant: 'acme', source: 'a', kind: 'incremental' });
      const b = await queue.enqueue({ tenant: 'beta', source: 'b', kind: 'initial' });
      await claimOne(queue, 'w');
      const all = await queue.listJobs();
      expect(all.jobs.map((j) => j.id)).toEqual([b.jobId, a.jobId]);
      expect(all.at).toBeInstanceOf(Date);
      expect((await queue.listJobs({ status: 'running' })).jobs.map((j) => j.id)).toEqual([b.jobId]);
      expect((await queue.listJobs({ tenant: 'acme' })).jobs.map((j) => j.id)).toEqual([a.jobId]);
      expect((await queue.listJobs({ limit: 1 })).jobs).toHaveLength(1);
      expect((await queue.listJobs({ status: 'succeeded' })).jobs).toEqual([]);
    });
  });

  describe('leases and fencing', () => {
    it('lets another worker re-claim an expired lease; the first worker then writes nothing', async () => {
      const q1 = await replica();
      const q2 = await replica();
      const { jobId } = await queue.enqueue({ tenant: 'acme', source: 'orders', kind: 'incremental' });
      const first = await claimOne(q1, 'worker-1', 1);
      await q1.setProgress(first, { phase: 'snapshot', runId: 'run-1', stats: { rows: 10 } });

      const second = await claimWhenDue(q2, 'worker-2');
      expect(second.id).toBe(jobId);
      expect(second.leaseToken).not.toBe(first.leaseToken);
      expect(second.attempts).toBe(2);
      // the second worker resumes where the first got to
      expect(second).toMatchObject({ phase: 'snapshot', runId: 'run-1', stats: { rows: 10 } });
      await q2.setProgress(second, { phase: 'diff' });
      const before = (await queue.getJobs([jobId!]))[0]!;

      await expect(q1.heartbeat(first, LEASE)).rejects.toBeInstanceOf(LeaseLostError);
      await expect(q1.setProgress(first, { phase: 'push', runId: 'run-stale' })).rejects.toBeInstanceOf(LeaseLostError);
      // fenced work of the stale worker is rolled back: the fence is checked before the commit
      const probe = t.db.table({ name: 'stale_fenced_probe' });
      await t.db.execute(`CREATE TABLE ${probe} (n int NOT NULL)`);
      await expect(q1.fenced(first, (tx) => tx.execute(`INSERT INTO ${probe} (n) VALUES (1)`))).rejects.toBeInstanceOf(LeaseLostError);
      expect(await t.db.query(`SELECT n FROM ${probe}`)).toEqual([]);
      await expect(q1.complete(first, { stale: true })).rejects.toBeInstanceOf(LeaseLostError);
      await expect(q1.fail(first, new TransientError('stale failure'))).rejects.toBeInstanceOf(LeaseLostError);
      await expect(q1.release(first)).rejects.toBeInstanceOf(LeaseLostError);

      const untouched = (await queue.getJobs([jobId!]))[0]!;
      expect(untouched).toEqual(before);
      expect(untouched).toMatchObject({ status: 'running', owner: 'worker-2', phase: 'diff', runId: 'run-1', lastError: null });

      await q2.heartbeat(second, LEASE);
      await q2.complete(second, { upserts: 3 });
      expect((await queue.getJobs([jobId!]))[0]).toMatchObject({ status: 'succeeded', stats: { upserts: 3 } });
      await expect(q2.complete(second)).rejects.toBeInstanceOf(LeaseLostError);
    });

    it('runs fenced work in one transaction: committed with the lease, rolled back on error', async () => {
      await t.db.execute(`CREATE TABLE ${t.db.table({ name: 'fenced_probe' })} (n int NOT NULL)`);
      await queue.enqueue({ tenant: 'acme', source: 'orders', kind: 'incremental' });
      const job = await claimOne(queue, 'w');
      const insert = `INSERT INTO ${t.db.table({ name: 'fenced_probe' })} (n) VALUES (${t.db.param(1)})`;
      expect(await queue.fenced(job, async (tx) => tx.execute(insert, [1]))).toBe(1);
      await expect(
        queue.fenced(job, async (tx) => {
          await tx.execute(insert, [2]);
          throw new PermanentError('receiver said no');
        }),
      ).rejects.toThrow('receiver said no');
      const rows = await t.db.query<{ n: number }>(`SELECT n FROM ${t.db.table({ name: 'fenced_probe' })}`);
      expect(rows.map((r) => r.n)).toEqual([1]);

      // Two fenced transactions of one job do their work at the same time (a push acknowledges batches in
      // parallel): the job row is locked only to check the fence at the end. Were it locked first, the first
      // would hold it while waiting for the second to start, and this would never finish.
      let enterSecond!: () => void;
      const secondStarted = new Promise<void>((resolve) => (enterSecond = resolve));
      const first = queue.fenced(job, async (tx) => {
        await secondStarted;
        return tx.execute(insert, [3]);
      });
      const second = queue.fenced(job, async (tx) => {
        enterSecond();
        return tx.execute(insert, [4]);
      });
      expect(await Promise.all([first, second])).toEqual([1, 1]);
      const after = await t.db.query<{ n: number }>(`SELECT n FROM ${t.db.table({ name: 'fenced_probe' })} ORDER BY n`);
      expect(after.map((r) => r.n)).toEqual([1, 3, 4]);
    });

    it('release gives the job back without consuming an attempt', async () => {
      const { jobId } = await queue.enqueue({ tenant: 'acme', source: 'orders', kind: 'incremental' });
      const job = await claimOne(queue, 'w1');
      await queue.setProgress(job, { phase: 'push' });
      await queue.release(job);
      expect((await queue.getJobs([jobId!]))[0]).toMatchObject({ status: 'queued', attempts: 0, phase: 'push' });
      const again = await claimOne(queue, 'w2');
      expect(again).toMatchObject({ id: jobId, attempts: 1, phase: 'push' });
    });

    it('dead-letters a job whose lease expired on its last attempt instead of running it again', async () => {
      const { jobId } = await queue.enqueue({ tenant: 'acme', source: 'orders', kind: 'incremental', maxAttempts: 1 });
      await claimOne(queue, 'crashy', 1);
      await new Promise((r) => setTimeout(r, 50));
      expect(await queue.claim('w2', 1, LEASE)).toEqual([]);
      const [view] = await queue.getJobs([jobId!]);
      expect(view).toMatchObject({ status: 'dead', attempts: 1 });
      expect(view!.lastError).toMatch(/crashy.*expired/);
    });

    it('keeps the cause of the attempt before when the last attempt\'s lease expires', async () => {
      const q = createJobQueue(t.db, { backoff: { baseMs: 1, factor: 1, maxMs: 1, jitter: 'none' } });
      const { jobId } = await q.enqueue({ tenant: 'acme', source: 'orders', kind: 'incremental', maxAttempts: 2 });
      const first = await claimOne(q, 'w1');
      await q.fail(first, new TransientError('connect ECONNREFUSED 127.0.0.1:1'));
      await claimWhenDue(q, 'crashy', 1);
      await new Promise((r) => setTimeout(r, 50));
      expect(await q.claim('w2', 1, LEASE)).toEqual([]);
      const [view] = await q.getJobs([jobId!]);
      expect(view).toMatchObject({ status: 'dead', attempts: 2 });
      expect(view!.lastError).toMatch(/^Lease of worker crashy expired during attempt 2 of 2: .* no attempt is left, so the job is dead-lettered\.\nThe attempt before failed with: \[transient: .*\] .*connect ECONNREFUSED 127\.0\.0\.1:1/s);
    });
  });

  describe('failures', () => {
    it('reschedules a transient failure by the backoff table', async () => {
      const q = createJobQueue(t.db, { random: () => 0 });
      const { jobId } = await q.enqueue({ tenant: 'acme', source: 'orders', kind: 'incremental' });
      const job = await claimOne(q, 'w');
      const before = (await q.stats()).at.getTime();
      const outcome = await q.fail(job, new TransientError('receiver returned 503'));
      const after = (await q.stats()).at.getTime();
      expect(outcome.status).toBe('queued');
      // attempt 1 with jitter 0: half of the 5 s ceiling, counted from the database clock
      const delay = backoffCeilingMs(1) / 2;
      expect(outcome.runAfter!.getTime()).toBeGreaterThanOrEqual(before + delay - 2);
      expect(outcome.runAfter!.getTime()).toBeLessThanOrEqual(after + delay + 2);
      const [view] = await q.getJobs([jobId!]);
      expect(view).toMatchObject({ status: 'queued', attempts: 1 });
      expect(view!.lastError).toMatch(/transient.*receiver returned 503/);
      // Not claimable before its run_after (by the database clock: on a slow engine the 2.5 s may already be over).
      const claimed = await q.claim('w', 1, LEASE);
      if (claimed.length > 0) expect((await q.stats()).at.getTime()).toBeGreaterThanOrEqual(outcome.runAfter!.getTime());
    });

    it('dead-letters after max attempts with the last error, and retryDead revives it', async () => {
      const q = createJobQueue(t.db, { backoff: { baseMs: 1, factor: 2, maxMs: 4, jitter: 'none' } });
      const { jobId } = await q.enqueue({ tenant: 'acme', source: 'orders', kind: 'incremental', maxAttempts: 3 });
      const outcomes: string[] = [];
      for (let attempt = 1; attempt <= 3; attempt++) {
        const job = await claimWhenDue(q, 'w');
        expect(job.attempts).toBe(attempt);
        outcomes.push((await q.fail(job, new Error(`connection reset #${attempt}`))).status);
      }
      expect(outcomes).toEqual(['queued', 'queued', 'dead']);
      const [dead] = await q.getJobs([jobId!]);
      expect(dead).toMatchObject({ status: 'dead', attempts: 3 });
      expect(dead!.lastError).toMatch(/connection reset #3/);
      expect(await q.claim('w', 1, LEASE)).toEqual([]);
      expect(await q.retryDead({ tenant: 'acme' })).toBe(1);
      expect((await q.getJobs([jobId!]))[0]).toMatchObject({ status: 'queued', attempts: 0 });
      const revived = await claimOne(q, 'w');
      expect(revived).toMatchObject({ id: jobId, attempts: 1 });
      await q.complete(revived);
    });

    it('dead-letters a permanent error at once', async () => {
      const { jobId } = await queue.enqueue({ tenant: 'acme', source: 'orders', kind: 'incremental' });
      const job = await claimOne(queue, 'w');
      const outcome = await queue.fail(job, new PermanentError('table dbo.Orders does not exist'));
      expect(outcome).toEqual({ status: 'dead' });
      const [view] = await queue.getJobs([jobId!]);
      expect(view).toMatchObject({ status: 'dead', attempts: 1 });
      expect(view!.lastError).toMatch(/permanent.*dbo\.Orders does not exist/);
      // an HTTP 400 from the receiver is permanent too; 503 is not
      await queue.enqueue({ tenant: 'acme', source: 'other', kind: 'incremental' });
      const other = await claimOne(queue, 'w');
      expect((await queue.fail(other, Object.assign(new Error('bad request'), { status: 400 }))).status).toBe('dead');
    });

    it('retryDead revives only matching jobs, never a second unfinished job for a source', async () => {
      for (const source of ['a', 'b']) {
        await queue.enqueue({ tenant: 'acme', source, kind: 'incremental' });
        await queue.fail(await claimOne(queue, 'w'), new PermanentError('nope'));
      }
      // source b gets a new job meanwhile: its dead one must stay dead
      await queue.enqueue({ tenant: 'acme', source: 'b', kind: 'incremental' });
      expect(await queue.retryDead({ tenant: 'other' })).toBe(0);
      expect(await queue.retryDead({ tenant: 'acme' })).toBe(1);
      const stats = await queue.stats();
      expect(stats.depth).toMatchObject({ queued: 2, dead: 1 });
      expect(stats.dead.map((d) => d.source)).toEqual(['b']);
      expect(await queue.retryDead({ jobId: 'not-a-job' })).toBe(0);
    });
  });

  describe('retention and introspection', () => {
    it('prunes succeeded jobs past retention and keeps dead ones', async () => {
      await queue.enqueue({ tenant: 'acme', source: 'done', kind: 'incremental' });
      await queue.complete(await claimOne(queue, 'w'));
      await queue.enqueue({ tenant: 'acme', source: 'broken', kind: 'incremental' });
      await queue.fail(await claimOne(queue, 'w'), new PermanentError('nope'));
      await queue.enqueue({ tenant: 'acme', source: 'waiting', kind: 'incremental' });

      expect(await queue.prune(3_600_000)).toBe(0);
      await new Promise((r) => setTimeout(r, 20));
      expect(await queue.prune(0)).toBe(1);
      expect((await queue.stats()).depth).toEqual({ queued: 1, running: 0, succeeded: 0, dead: 1 });
      // 30 days is more milliseconds than an int holds
      expect(await queue.prune(30 * 24 * 3_600_000)).toBe(0);
    });

    it('reports depth, oldest queued age, running jobs, dead letters and each source’s latest job', async () => {
      await queue.enqueue({ tenant: 'acme', source: 'orders', kind: 'initial' });
      await queue.enqueue({ tenant: 'acme', source: 'customers', kind: 'incremental' });
      await queue.enqueue({ tenant: 'beta', source: 'items', kind: 'incremental' });
      await queue.enqueue({ tenant: 'beta', source: 'later', kind: 'incremental', runAfter: new Date(Date.now() + 3_600_000) });
      const running = await claimOne(queue, 'host-1:123');
      expect(running.source).toBe('orders');
      await queue.setProgress(running, { phase: 'push', runId: 'run-9' });
      // acme is busy with orders, so beta goes next (fairness)
      const failing = await claimOne(queue, 'host-2:456');
      expect(failing.source).toBe('items');
      await queue.fail(failing, new PermanentError('login failed for sync_reader'));

      const stats = await queue.stats();
      expect(stats.depth).toEqual({ queued: 2, running: 1, succeeded: 0, dead: 1 });
      expect(stats.ready).toBe(1);
      expect(stats.oldestQueuedAgeMs).toBeGreaterThanOrEqual(0);
      expect(stats.queuedBySource.map((q) => `${q.tenant}/${q.source}`).sort()).toEqual(['acme/customers', 'beta/later']);
      expect(stats.running).toEqual([
        expect.objectContaining({ id: running.id, tenant: 'acme', source: 'orders', owner: 'host-1:123', phase: 'push', runId: 'run-9', attempts: 1 }),
      ]);
      expect(stats.running[0]!.leaseUntil!.getTime()).toBeGreaterThan(stats.at.getTime());
      expect(stats.dead).toEqual([expect.objectContaining({ id: failing.id, tenant: failing.tenant, source: failing.source, lastError: expect.stringMatching(/login failed/) })]);
      expect(stats.latest.map((l) => `${l.tenant}/${l.source}:${l.status}`)).toEqual([
        'acme/customers:queued',
        'acme/orders:running',
        'beta/items:dead',
        'beta/later:queued',
      ]);

      // and nothing due: no oldest age
      await t.db.execute(`DELETE FROM ${t.db.table({ name: 'cdc_jobs' })} WHERE source_id = ${t.db.param(1)}`, ['customers']);
      expect((await queue.stats()).oldestQueuedAgeMs).toBeNull();
    });
  });
});
