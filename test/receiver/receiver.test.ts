import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { frameBatch, wireSchema } from '../../src/contract/wire.ts';
import { startReceiver, type Receiver } from '../../src/receiver/server.ts';
import type { SourceSchema } from '../../src/snapshot/schema.ts';
import { createTestDatabase, type TestDatabase } from '../support/databases.ts';

const SCHEMA: SourceSchema = {
  columns: [
    { name: 'id', type: { kind: 'int64' }, nullable: false },
    { name: 'label', type: { kind: 'string', maxLength: 5 }, nullable: true },
    { name: 'at', type: { kind: 'timestamp', precision: 7 }, nullable: true },
  ],
  key: ['id'],
};
const SCHEMA_JSON = JSON.stringify(wireSchema(SCHEMA));
const AUTH = { authorization: 'Bearer s3cret', 'content-type': 'application/json' };

function body(batch: number, entries: string[], runId = 'run-1'): string {
  return frameBatch({ runId, mode: 'initial', batch, schemaJson: SCHEMA_JSON }, entries);
}
const row = (id: number, label: string | null = 'a', at: string | null = '2024-01-01T00:00:00.1234567') => JSON.stringify({ op: 'upsert', row: { id: String(id), label, at } });

describe('reference receiver', () => {
  let rxDb: TestDatabase;
  let rx: Receiver;
  const post = (path: string, payload: string | Buffer, headers: Record<string, string> = {}) =>
    fetch(`${rx.url}${path}`, { method: 'POST', body: payload, headers: { ...AUTH, ...headers } });
  const batches = '/tenants/acme/datasets/orders/batches';

  beforeAll(async () => {
    rxDb = await createTestDatabase('postgres', 'receiver');
    rx = await startReceiver({ port: 0, db: rxDb.url, tokens: { acme: 's3cret' }, faults: { maxBodyBytes: 4_096 } });
  });
  afterAll(async () => {
    await rx?.close();
    await rxDb?.drop();
  });

  it('refuses a wrong token with 401 and an unknown tenant alike', async () => {
    expect((await post(batches, body(1, [row(1)]), { authorization: 'Bearer nope', 'idempotency-key': 'run-1.1' })).status).toBe(401);
    expect((await post('/tenants/other/datasets/orders/batches', body(1, [row(1)]), { 'idempotency-key': 'run-1.1' })).status).toBe(401);
  });

  it.each([
    ['a missing Idempotency-Key', body(1, [row(1)]), {}, /Idempotency-Key must be run-1\.1/],
    ['a key that does not match the body', body(1, [row(1)]), { 'idempotency-key': 'run-1.2' }, /Idempotency-Key/],
    ['int64 sent as a number', body(1, [JSON.stringify({ op: 'upsert', row: { id: 1, label: 'a', at: null } })]), { 'idempotency-key': 'run-1.1' }, /id must be a string of decimal digits/],
    ['a string longer than its column', body(1, [row(1, 'toolong')]), { 'idempotency-key': 'run-1.1' }, /label is 7 characters; the column holds 5/],
    ['a timestamp missing fractional digits', body(1, [row(1, 'a', '2024-01-01T00:00:00.123')]), { 'idempotency-key': 'run-1.1' }, /exactly 7 fractional digits/],
    ['an unknown column', body(1, [JSON.stringify({ op: 'upsert', row: { id: '1', label: null, at: null, extra: 1 } })]), { 'idempotency-key': 'run-1.1' }, /unexpected column "extra"/],
    ['a key twice in one batch', body(1, [row(1), JSON.stringify({ op: 'delete', key: { id: '1' } })]), { 'idempotency-key': 'run-1.1' }, /appears more than once/],
    ['a prototype-poisoning property', body(1, [row(1)]).replace('"mode"', '"__proto__":{"x":1},"mode"'), { 'idempotency-key': 'run-1.1' }, /not valid JSON/],
    ['a prototype-poisoning property spelt with escapes', body(1, [row(1)]).replace('"mode"', '"\\u005f_proto__":{"x":1},"mode"'), { 'idempotency-key': 'run-1.1' }, /not valid JSON/],
    ['an unknown property', body(1, [row(1)]).replace('"mode"', '"extra":1,"mode"'), { 'idempotency-key': 'run-1.1' }, /additional properties/],
  ])('answers 400 with the reason for %s', async (_what, payload, headers, reason) => {
    const response = await post(batches, payload, headers as Record<string, string>);
    expect(response.status).toBe(400);
    expect(((await response.json()) as { message: string }).message).toMatch(reason);
  });

  it('applies a batch once, dedupes its replay, and refuses the key with another body', async () => {
    const first = await post(batches, body(1, [row(2), row(1)]), { 'idempotency-key': 'run-1.1' });
    expect(first.status).toBe(201);
    const replay = await post(batches, gzipSync(body(1, [row(2), row(1)])), { 'idempotency-key': 'run-1.1', 'content-encoding': 'gzip' });
    expect(replay.status).toBe(200);
    expect(await replay.json()).toMatchObject({ status: 'duplicate' });
    const other = await post(batches, body(1, [row(3)]), { 'idempotency-key': 'run-1.1' });
    expect(other.status).toBe(422);
    const del = await post(batches, body(2, [JSON.stringify({ op: 'delete', key: { id: '2' } }), row(10)]), { 'idempotency-key': 'run-1.2' });
    expect(del.status).toBe(201);

    const rows = await (await fetch(`${rx.url}/tenants/acme/datasets/orders/rows`, { headers: AUTH })).text();
    // key order is numeric, not textual: 1 before 10
    expect(rows).toBe(`${[1, 10].map((id) => JSON.stringify({ id: String(id), label: 'a', at: '2024-01-01T00:00:00.1234567' })).join('\n')}\n`);
    const stats = await (await fetch(`${rx.url}/tenants/acme/datasets/orders/stats`, { headers: AUTH })).json();
    expect(stats).toMatchObject({ rowsHeld: 2, batchesApplied: 2, replaysDeduped: 1 });
  });

  it('answers 413 to a body over the limit, also when gzip hides it', async () => {
    const big = body(3, Array.from({ length: 100 }, (_, i) => row(100 + i)));
    expect(Buffer.byteLength(big)).toBeGreaterThan(4_096);
    expect((await post(batches, big, { 'idempotency-key': 'run-1.3' })).status).toBe(413);
    const zipped = gzipSync(big);
    expect(zipped.length).toBeLessThan(4_096);
    expect((await post(batches, zipped, { 'idempotency-key': 'run-1.3', 'content-encoding': 'gzip' })).status).toBe(413);
  });

  it('reconciles a run completion and flags a count mismatch', async () => {
    const complete = (runId: string, counts: { batches: number; upserts: number; deletes: number; sourceRows: number }, mode = 'incremental') =>
      post(`/tenants/acme/datasets/orders/runs/${runId}/complete`, JSON.stringify({ runId, mode, schemaVersion: wireSchema(SCHEMA).version, ...counts }), {
        'idempotency-key': `${runId}.complete`,
      });
    // run-1 was an initial run: a full run's completion removes what it did not send (nothing here)
    const ok = await complete('run-1', { batches: 2, upserts: 3, deletes: 1, sourceRows: 2 }, 'initial');
    expect(await ok.json()).toEqual({ status: 'reconciled', problems: [], removed: 0 });
    const bad = await complete('run-2', { batches: 1, upserts: 5, deletes: 0, sourceRows: 5 });
    const answer = (await bad.json()) as { status: string; problems: string[] };
    expect(answer.status).toBe('mismatch');
    expect(answer.problems.join('\n')).toMatch(/rows: source has 5, receiver holds 2/);
    const stats = await (await fetch(`${rx.url}/tenants/acme/datasets/orders/stats`, { headers: AUTH })).json();
    expect(stats).toMatchObject({ runsCompleted: 2, mismatches: 1 });
  });

  // The contract's answers (docs/data-push-api.md "Questions a receiver's author asks"), as the reference does them.
  describe('answers the contract gives', () => {
    const on = (dataset: string) => `/tenants/acme/datasets/${dataset}/batches`;
    const complete = (dataset: string, runId: string, mode: string, counts: { batches: number; upserts: number; deletes: number; sourceRows: number }) =>
      post(`/tenants/acme/datasets/${dataset}/runs/${runId}/complete`, JSON.stringify({ runId, mode, schemaVersion: wireSchema(SCHEMA).version, ...counts }), {
        'idempotency-key': `${runId}.complete`,
      });
    const held = async (dataset: string) => ((await (await fetch(`${rx.url}/tenants/acme/datasets/${dataset}/stats`, { headers: AUTH })).json()) as { rowsHeld: number }).rowsHeld;

    it('a runId with dots: the key is built from the body, never parsed', async () => {
      const runId = '2026.12.01.run';
      const r = await post(on('dots'), body(7, [row(1)], runId), { 'idempotency-key': `${runId}.7` });
      expect(r.status).toBe(201);
      expect(await r.json()).toEqual({ status: 'applied', upserts: 1, deletes: 0 });
    });

    it('dedupes per tenant and dataset: the same key in another dataset is applied there', async () => {
      expect((await post(on('scope-a'), body(1, [row(1)], 'shared'), { 'idempotency-key': 'shared.1' })).status).toBe(201);
      expect((await post(on('scope-b'), body(1, [row(1)], 'shared'), { 'idempotency-key': 'shared.1' })).status).toBe(201);
    });

    it('a replay that arrives while the first attempt is in flight is answered once that one finished, and applied once', async () => {
      const payload = body(1, Array.from({ length: 20 }, (_, i) => row(i + 1)), 'race');
      const answers = await Promise.all(Array.from({ length: 4 }, () => post(on('race'), payload, { 'idempotency-key': 'race.1' })));
      expect(answers.map((a) => a.status).sort()).toEqual([200, 200, 200, 201]);
      expect(await held('race')).toBe(20);
    });

    it('a delete of a key it does not hold is accepted and changes nothing', async () => {
      const r = await post(on('ghost'), body(1, [JSON.stringify({ op: 'delete', key: { id: '404' } })], 'ghost'), { 'idempotency-key': 'ghost.1' });
      expect(r.status).toBe(201);
      expect(await held('ghost')).toBe(0);
    });

    it('keys are exact: case and trailing spaces make different keys', async () => {
      const text: SourceSchema = { columns: [{ name: 'code', type: { kind: 'string', maxLength: 10 }, nullable: false }], key: ['code'] };
      const framed = frameBatch({ runId: 'exact', mode: 'initial', batch: 1, schemaJson: JSON.stringify(wireSchema(text)) }, ['a', 'A', 'a '].map((code) => JSON.stringify({ op: 'upsert', row: { code } })));
      expect((await post(on('exact'), framed, { 'idempotency-key': 'exact.1' })).status).toBe(201);
      expect(await held('exact')).toBe(3);
    });

    it('maxLength counts UTF-16 code units: a character outside the BMP takes two', async () => {
      expect((await post(on('units'), body(1, [row(1, '🦄🦄a')], 'units'), { 'idempotency-key': 'units.1' })).status).toBe(201);
      const over = await post(on('units'), body(2, [row(2, '🦄🦄🦄')], 'units'), { 'idempotency-key': 'units.2' });
      expect(over.status).toBe(400);
      expect(((await over.json()) as { message: string }).message).toMatch(/label is 6 characters; the column holds 5/);
    });

    it('415 for a body that is not JSON in UTF-8, or an unknown Content-Encoding; error bodies are {error, message}', async () => {
      const refused: Array<Record<string, string>> = [{ 'content-type': 'application/json; charset=iso-8859-1' }, { 'content-type': 'text/plain' }, { 'content-encoding': 'br' }];
      for (const headers of refused) {
        const r = await post(on('media'), body(1, [row(1)], 'media'), { 'idempotency-key': 'media.1', ...headers });
        expect(r.status).toBe(415);
        expect(Object.keys((await r.json()) as object).sort()).toEqual(['error', 'message']);
      }
      expect((await post(on('media'), body(1, [row(1)], 'media'), { 'idempotency-key': 'media.1', 'content-type': 'application/json; charset=UTF-8' })).status).toBe(201);
    });

    it('a run with no batches still completes; a full run removes at completion every row it did not send', async () => {
      expect((await post(on('full'), body(1, [row(1), row(2), row(3)], 'first'), { 'idempotency-key': 'first.1' })).status).toBe(201);
      expect(await (await complete('full', 'first', 'initial', { batches: 1, upserts: 3, deletes: 0, sourceRows: 3 })).json()).toEqual({ status: 'reconciled', problems: [], removed: 0 });
      // an incremental run of nothing changed: 0 batches, reconciled, nothing removed
      expect(await (await complete('full', 'quiet', 'incremental', { batches: 0, upserts: 0, deletes: 0, sourceRows: 3 })).json()).toEqual({ status: 'reconciled', problems: [] });
      // a resync re-sends rows 1 and 3 only: row 2 is gone at completion
      const resync = frameBatch({ runId: 'again', mode: 'resync', batch: 1, schemaJson: SCHEMA_JSON }, [row(1), row(3)]);
      expect((await post(on('full'), resync, { 'idempotency-key': 'again.1' })).status).toBe(201);
      expect(await (await complete('full', 'again', 'resync', { batches: 1, upserts: 2, deletes: 0, sourceRows: 2 })).json()).toEqual({ status: 'reconciled', problems: [], removed: 1 });
      expect(await held('full')).toBe(2);
      // a replayed completion answers duplicate with what it found the first time
      expect(await (await complete('full', 'again', 'resync', { batches: 1, upserts: 2, deletes: 0, sourceRows: 2 })).json()).toEqual({ status: 'duplicate', problems: [] });
    });
  });
});
