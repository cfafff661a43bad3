/** Schedules: slots agree across replicas, jitter is deterministic, and the database lets one tick per slot through. */
import { afterEach, describe, expect, it } from 'vitest';
import { intervalSlot, slotJitterMs } from '../../src/agent/scheduler.ts';
import { Estate } from '../support/estate.ts';

describe('schedule slots', () => {
  it('aligns interval slots to the epoch, so every replica computes the same slot', () => {
    const every = 15 * 60_000;
    expect(intervalSlot(every, new Date('2026-11-22T10:14:59.999Z')).toISOString()).toBe('2026-11-22T10:00:00.000Z');
    expect(intervalSlot(every, new Date('2026-11-22T10:15:00.000Z')).toISOString()).toBe('2026-11-22T10:15:00.000Z');
  });

  it('gives the same jitter for the same slot everywhere, within the configured bound', () => {
    const a = slotJitterMs('acme', 'orders', 'every:900000:2026-11-22T10:15:00.000Z', 30_000);
    expect(slotJitterMs('acme', 'orders', 'every:900000:2026-11-22T10:15:00.000Z', 30_000)).toBe(a);
    expect(a).toBeGreaterThanOrEqual(0);
    expect(a).toBeLessThanOrEqual(30_000);
    const spread = new Set(['a', 'b', 'c', 'd', 'e', 'f'].map((s) => slotJitterMs('acme', s, 'slot', 30_000)));
    expect(spread.size).toBeGreaterThan(3);
    expect(slotJitterMs('acme', 'orders', 'slot', 0)).toBe(0);
  });
});

let estate: Estate | undefined;
afterEach(async () => {
  await estate?.close();
  estate = undefined;
});

describe('scheduled syncs across replicas [postgres]', () => {
  it('two agents ticking the same 2 s interval enqueue one job per slot, and the syncs keep the receiver equal', async () => {
    estate = await Estate.create({
      label: 'e2e_sched',
      tenants: ['acme'],
      rows: 2000,
      sources: [{ id: 'customers', table: 'public.customers', every: '2s' }],
    });
    const a = await estate.startAgent('sched-a', [], { schedule: true });
    const b = await estate.startAgent('sched-b', [], { schedule: true });
    await new Promise((r) => setTimeout(r, 7_000));
    await estate.sourceDb('acme').execute(`UPDATE customers SET name = name || '!' WHERE customer_id <= 3`);
    await new Promise((r) => setTimeout(r, 4_000));
    a.signal('SIGTERM');
    b.signal('SIGTERM');
    expect(await a.exited).toBe(0);
    expect(await b.exited).toBe(0);

    const jobs = await estate.control.db.query<{ slot_key: string | null; status: string }>(`SELECT slot_key, status FROM cdc_jobs ORDER BY id`);
    const slots = jobs.map((j) => j.slot_key);
    expect(slots.every((s) => s !== null && s.startsWith('every:2000:'))).toBe(true);
    // one job per slot although two replicas ticked each one
    expect(new Set(slots).size).toBe(slots.length);
    expect(jobs.filter((j) => j.status === 'succeeded').length).toBeGreaterThanOrEqual(2);
    const ticks = [...a.messages(), ...b.messages()].filter((m) => m.msg === 'scheduled sync enqueued');
    expect(ticks.length).toBe(slots.length);
    expect((await estate.verify('acme')).customers!.ok).toBe(true);
  });
});
