/**
 * A lease must not depend on the job's own work getting a connection (docs/failure-semantics.md, leases). A slow
 * source keeps a snapshot's COPY into the control database open for as long as the source trickles; with as many
 * such jobs as the control pool has connections, a heartbeat that queued for that pool would wait past the lease,
 * and another replica would take a job that was never in trouble. Both agents are their own OS processes.
 */
import { afterEach, expect, it, vi } from 'vitest';
import { describeEachDialect } from '../support/databases.ts';
import { allOk, Estate } from '../support/estate.ts';

vi.setConfig({ testTimeout: 240_000 });

let estate: Estate | undefined;
afterEach(async () => {
  await estate?.close();
  estate = undefined;
});

// Each row waits 3 ms at the source: about 9 s for the 3,000 customers, against a lease of 5 s.
const trickle = (table: string) => `SELECT * FROM ${table} WHERE pg_sleep(0.003)::text = ''`;

describeEachDialect('leases under a busy control pool, control database', (control) => {
  it('two slow snapshots holding every connection of the control pool keep their leases; a waiting replica takes nothing', async () => {
    estate = await Estate.create({
      label: 'lease_pool',
      tenants: ['acme'],
      rows: 27_000,
      control,
      sources: [
        { id: 'slow_a', query: trickle('public.customers'), key: ['customer_id'] },
        { id: 'slow_b', query: trickle('public.customers'), key: ['customer_id'] },
      ],
      worker: { concurrency: 2, leaseSeconds: 5 },
    });
    const [rows] = await estate.sourceDb('acme').query<{ n: unknown }>('SELECT count(*) AS n FROM public.customers');
    expect(Number(rows!.n)).toBeGreaterThan(2_500);
    // The control pool has exactly as many connections as the agent has job slots.
    await estate.rewriteConfig((raw) => {
      (raw.control as Record<string, unknown>).poolMax = 2;
    });
    const busy = await estate.startAgent('busy');
    const jobs = await estate.enqueue('acme', 'initial');
    for (const id of jobs) await estate.waitForPhase(id, 'snapshot');
    const replica = await estate.startAgent('replica');
    await estate.waitForJobs(jobs, 180_000);

    const views = await estate.queue.getJobs(jobs);
    expect(views.map((v) => [v.source, v.attempts])).toEqual([
      ['slow_a', 1],
      ['slow_b', 1],
    ]);
    expect(busy.lines.filter((l) => /lease lost|abandoned/.test(l))).toEqual([]);
    expect(replica.lines.filter((l) => /"msg":"job claimed"/.test(l))).toEqual([]);
    expect(allOk(await estate.verify('acme'))).toEqual({ slow_a: 'ok', slow_b: 'ok' });
  });
});
