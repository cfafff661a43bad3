/**
 * The delete guardrail: a source that suddenly returns an empty table (the classic outage) must not empty
 * the receiver. The run stops after the diff, before pushing, with a message that says how many and why;
 * staging is untouched, so `sync --allow-mass-delete` then pushes exactly those deletes.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { allOk, Estate } from '../support/estate.ts';

let estate: Estate | undefined;
afterEach(async () => {
  await estate?.close();
  estate = undefined;
});

describe('delete guardrail [postgres → postgres]', () => {
  it('an emptied source is stopped before pushing; the receiver keeps its rows; sync --allow-mass-delete confirms and converges', async () => {
    estate = await Estate.create({ label: 'guard', tenants: ['acme'], rows: 1500, sources: [{ id: 'customers', table: 'public.customers' }] });
    await estate.startAgent('agent-a');
    expect((await estate.cli(['onboard', '--tenant', 'acme', '--wait', '--timeout', '60'])).code).toBe(0);
    const before = await estate.receiverStats('acme', 'customers');
    const [{ n }] = (await estate.sourceDb('acme').query<{ n: string }>(`SELECT count(*)::text AS n FROM customers`)) as [{ n: string }];
    const held = Number(n);
    expect(before.rowsHeld).toBe(held);

    // a modest wave of deletes (10 %) is ordinary and passes without confirmation
    await estate.sourceDb('acme').execute(`DELETE FROM customers WHERE customer_id % 10 = 0`);
    expect((await estate.cli(['sync', '--tenant', 'acme', '--wait', '--timeout', '60'])).code).toBe(0);
    expect(allOk(await estate.verify('acme'))).toEqual({ customers: 'ok' });
    const remaining = (await estate.receiverStats('acme', 'customers')).rowsHeld!;

    // the outage: the source returns nothing
    await estate.sourceDb('acme').execute(`DELETE FROM customers`);
    const requestsBefore = await estate.receiverDb.db.query(`SELECT count(*)::text AS n FROM rx_requests`);
    const blocked = await estate.cli(['sync', '--tenant', 'acme', '--wait', '--timeout', '60']);
    expect(blocked.code).toBe(1);
    const line = blocked.stderr.split('\n').find((l) => l.startsWith('acme/customers: FAILED'));
    expect(line).toBe(
      'acme/customers: FAILED (dead): [permanent: MassDeleteError] MassDeleteError: Tenant "acme", source "customers": ' +
        `this run would delete ${remaining.toLocaleString('en-US')} of the ${remaining.toLocaleString('en-US')} rows the receiver holds (100%), more than maxDeletePercent (50%). ` +
        'A source that suddenly returns an empty or partial table (an outage, a permissions or filter change) looks like this. Nothing was pushed and staging is unchanged. ' +
        'Check the source; if the deletes are real, confirm them with `cdc-agent sync --tenant acme --source customers --allow-mass-delete` (or raise maxDeletePercent for this source).',
    );
    // nothing was pushed; the receiver still holds every row
    expect(await estate.receiverDb.db.query(`SELECT count(*)::text AS n FROM rx_requests`)).toEqual(requestsBefore);
    expect((await estate.receiverStats('acme', 'customers')).rowsHeld).toBe(remaining);

    const confirmed = await estate.cli(['sync', '--tenant', 'acme', '--source', 'customers', '--allow-mass-delete', '--wait', '--timeout', '60']);
    expect(confirmed.stderr).toMatch(/acme\/customers: deletes above maxDeletePercent \(50%\) confirmed for job \d+/);
    expect(confirmed.code).toBe(0);
    expect((await estate.receiverStats('acme', 'customers')).rowsHeld).toBe(0);
    expect(allOk(await estate.verify('acme'))).toEqual({ customers: 'ok' });
    const events = await estate.control.db.query<{ kind: string }>(`SELECT kind FROM cdc_events WHERE kind LIKE 'mass_delete%' ORDER BY id`);
    expect(events.map((e) => e.kind)).toEqual(['mass_delete_blocked', 'mass_delete_allowed', 'mass_delete_confirmed']);
  });
});
