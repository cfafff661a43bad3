import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { frameBatch, wireSchema } from '../../src/contract/wire.ts';
import { startReceiver, type Receiver } from '../../src/receiver/server.ts';
import type { SourceSchema } from '../../src/snapshot/schema.ts';
import { createTestDatabase, type TestDatabase } from '../support/databases.ts';

// The receiver's bulk apply: every batch is COPYed (text format) into a temporary staging table and applied
// from there, so keys and rows with COPY's special characters, composite and binary keys, deletes, replays
// racing each other and failed transactions must all come out exactly as the contract says.

const COMPOSITE: SourceSchema = {
  columns: [
    { name: 'region', type: { kind: 'string', maxLength: 20 }, nullable: false },
    { name: 'n', type: { kind: 'int32' }, nullable: false },
    { name: 'note', type: { kind: 'string', maxLength: null }, nullable: true },
    { name: 'price', type: { kind: 'decimal', precision: 10, scale: 2 }, nullable: true },
  ],
  key: ['region', 'n'],
};
const BINARY: SourceSchema = {
  columns: [
    { name: 'h', type: { kind: 'binary', maxLength: 16 }, nullable: false },
    { name: 'v', type: { kind: 'float64' }, nullable: true },
  ],
  key: ['h'],
};
const DATED: SourceSchema = {
  columns: [
    { name: 'd', type: { kind: 'date' }, nullable: false },
    { name: 'v', type: { kind: 'int64' }, nullable: true },
  ],
  key: ['d'],
};
const AUTH = { authorization: 'Bearer t0ken', 'content-type': 'application/json' };

const upsert = (row: Record<string, unknown>) => JSON.stringify({ op: 'upsert', row });
const del = (key: Record<string, unknown>) => JSON.stringify({ op: 'delete', key });

describe('reference receiver bulk apply', () => {
  let rxDb: TestDatabase;
  let rx: Receiver;

  const send = (dataset: string, schema: SourceSchema, runId: string, batch: number, entries: string[], gzip = false) => {
    const text = frameBatch({ runId, mode: 'initial', batch, schemaJson: JSON.stringify(wireSchema(schema)) }, entries);
    return fetch(`${rx.url}/tenants/acme/datasets/${dataset}/batches`, {
      method: 'POST',
      body: gzip ? gzipSync(text) : text,
      headers: { ...AUTH, 'idempotency-key': `${runId}.${batch}`, ...(gzip ? { 'content-encoding': 'gzip' } : {}) },
    });
  };
  const rows = async (dataset: string) => {
    const text = await (await fetch(`${rx.url}/tenants/acme/datasets/${dataset}/rows`, { headers: AUTH })).text();
    return text === '' ? [] : text.trimEnd().split('\n');
  };
  const stats = async (dataset: string) => (await fetch(`${rx.url}/tenants/acme/datasets/${dataset}/stats`, { headers: AUTH })).json();

  beforeAll(async () => {
    rxDb = await createTestDatabase('postgres', 'receiver_apply');
    rx = await startReceiver({ port: 0, db: rxDb.url, tokens: { acme: 't0ken' } });
  });
  afterAll(async () => {
    await rx?.close();
    await rxDb?.drop();
  });

  it('stores keys and rows holding tabs, newlines, backslashes and quotes exactly, in key order, and deletes them', async () => {
    const tricky = [
      { region: 'a\tb', n: 2, note: 'tab\tnew\nline\r\\N back\\slash "quoted" é 😀', price: '1.50' },
      { region: 'a\\', n: -1, note: '\\', price: null },
      { region: 'a\nb', n: 7, note: null, price: '-0.01' },
      { region: 'a\tb', n: 1, note: '\u0001\u001f', price: '99999999.99' },
      { region: 'Z', n: 0, note: '', price: '0' },
    ];
    const first = await send('tricky', COMPOSITE, 'run-t', 1, tricky.map(upsert));
    expect(first.status).toBe(201);
    expect(await first.json()).toEqual({ status: 'applied', upserts: 5, deletes: 0 });
    // Key order is the database's byte order of the text key ("C" collation), then n as a number.
    const ordered = [...tricky].sort((x, y) => (x.region < y.region ? -1 : x.region > y.region ? 1 : x.n - y.n));
    expect(await rows('tricky')).toEqual(ordered.map((r) => JSON.stringify(r)));

    const second = await send('tricky', COMPOSITE, 'run-t', 2, [del({ region: 'a\tb', n: 2 }), del({ region: 'a\\', n: -1 }), upsert({ ...tricky[2]!, note: 'changed\\t' })]);
    expect(await second.json()).toEqual({ status: 'applied', upserts: 1, deletes: 2 });
    expect(await rows('tricky')).toEqual([tricky[4]!, tricky[3]!, { ...tricky[2]!, note: 'changed\\t' }].map((r) => JSON.stringify(r)));
    expect(await stats('tricky')).toMatchObject({ rowsHeld: 3, batchesApplied: 2 });
  });

  it('stores rows as JSON.stringify spells them, also from pretty-printed bodies and unusual number spellings', async () => {
    const schemaJson = JSON.stringify(wireSchema(BINARY));
    const pretty = JSON.stringify({ runId: 'run-p', mode: 'initial', batch: 1, schema: JSON.parse(schemaJson), changes: [{ op: 'upsert', row: { h: 'AQ==', v: 2.5 } }] }, null, 2);
    const spelt = frameBatch({ runId: 'run-p', mode: 'initial', batch: 2, schemaJson }, ['{"op":"upsert","row":{"h":"Ag==","v":1.50}}', '{"op":"upsert","row":{"h":"Aw==","v":-0}}', '{"op":"upsert","row":{"h":"BA==","v":1E2}}']);
    for (const [batch, text] of [[1, pretty], [2, spelt]] as const) {
      const response = await fetch(`${rx.url}/tenants/acme/datasets/spelling/batches`, { method: 'POST', body: text, headers: { ...AUTH, 'idempotency-key': `run-p.${batch}` } });
      expect(response.status).toBe(201);
    }
    expect(await rows('spelling')).toEqual(['{"h":"AQ==","v":2.5}', '{"h":"Ag==","v":1.5}', '{"h":"Aw==","v":0}', '{"h":"BA==","v":100}']);
  });

  it('keys binary columns by their bytes', async () => {
    const keys = [Buffer.from([0xff]), Buffer.from([0x00, 0x01]), Buffer.from([0x00]), Buffer.from('\t\\\n')];
    const response = await send('blobs', BINARY, 'run-b', 1, keys.map((k, i) => upsert({ h: k.toString('base64'), v: i + 0.5 })));
    expect(response.status).toBe(201);
    const sorted = [...keys].sort(Buffer.compare).map((k) => k.toString('base64'));
    expect((await rows('blobs')).map((r) => (JSON.parse(r) as { h: string }).h)).toEqual(sorted);
    await send('blobs', BINARY, 'run-b', 2, [del({ h: Buffer.from([0x00, 0x01]).toString('base64') })]);
    expect((await rows('blobs')).map((r) => (JSON.parse(r) as { h: string }).h)).toEqual(sorted.filter((h) => h !== 'AAE='));
  });

  it('applies a batch sent several times at once exactly once (the database decides)', async () => {
    const entries = Array.from({ length: 500 }, (_, i) => upsert({ region: 'r', n: i, note: `row ${i}`, price: `${i}.00` }));
    const answers = await Promise.all([0, 1, 2, 3, 4, 5].map((i) => send('race', COMPOSITE, 'run-r', 1, entries, i % 2 === 1)));
    const statuses = answers.map((a) => a.status).sort();
    expect(statuses).toEqual([200, 200, 200, 200, 200, 201]);
    const bodies = (await Promise.all(answers.map((a) => a.json()))) as Array<{ status: string }>;
    expect(bodies.filter((b) => b.status === 'duplicate')).toHaveLength(5);
    expect(await stats('race')).toMatchObject({ rowsHeld: 500, batchesApplied: 1, replaysDeduped: 5 });
  });

  it('a run that began on an empty table is COPYed straight in; a batch meeting a key already there is staged after all, with the same result', async () => {
    const note = (i: number, v: string) => upsert({ region: 'r', n: i, note: `${v} ${i}`, price: `${i}.25` });
    const range = (from: number, to: number, v: string) => Array.from({ length: to - from }, (_, i) => note(from + i, v));
    const complete = async (runId: string, mode: string, counts: { batches: number; upserts: number; sourceRows: number }) => {
      const response = await fetch(`${rx.url}/tenants/acme/datasets/direct/runs/${runId}/complete`, {
        method: 'POST',
        body: JSON.stringify({ runId, mode, schemaVersion: wireSchema(COMPOSITE).version, deletes: 0, ...counts }),
        headers: { ...AUTH, 'idempotency-key': `${runId}.complete` },
      });
      return response.json();
    };
    // Onboarding: batch 1 goes straight in; batch 2 (not something the agent sends) meets keys 5-9, so it is staged and
    // those rows updated; batch 3 comes after the conflict and is staged too.
    for (const [batch, entries] of [[1, range(0, 10, 'first')], [2, range(5, 15, 'second')], [3, range(20, 22, 'third')]] as const) {
      expect((await send('direct', COMPOSITE, 'run-x', batch, [...entries])).status).toBe(201);
    }
    const expected = [...range(0, 5, 'first'), ...range(5, 15, 'second'), ...range(20, 22, 'third')].map((e) => JSON.stringify((JSON.parse(e) as { row: unknown }).row));
    expect(await rows('direct')).toEqual(expected);
    // Every row carries its run, whichever way it went in: the full run's completion removes none of them.
    expect(await complete('run-x', 'initial', { batches: 3, upserts: 22, sourceRows: 17 })).toEqual({ status: 'reconciled', problems: [], removed: 0 });
    // A resync begins on a full table, so it is staged from its first batch, and sweeps what it did not send.
    expect((await send('direct', COMPOSITE, 'run-y', 1, range(0, 3, 'again'))).status).toBe(201);
    expect(await complete('run-y', 'resync', { batches: 1, upserts: 3, sourceRows: 3 })).toEqual({ status: 'reconciled', problems: [], removed: 14 });
    expect(await rows('direct')).toEqual(range(0, 3, 'again').map((e) => JSON.stringify((JSON.parse(e) as { row: unknown }).row)));
  });

  it('rolls a failed batch back entirely (ledger and staging alike) so that its retry applies', async () => {
    // 2024-02-30 has the contract's shape, but PostgreSQL refuses it as a date key: the transaction fails after
    // the staging table was created and loaded on that connection.
    const bad = await send('dated', DATED, 'run-d', 1, [upsert({ d: '2024-01-01', v: '1' }), upsert({ d: '2024-02-30', v: '2' })]);
    expect(bad.status).toBeGreaterThanOrEqual(500);
    expect(await stats('dated')).toMatchObject({ rowsHeld: 0, batchesApplied: 0 });
    for (let i = 0; i < 3; i++) {
      const retry = await send('dated', DATED, 'run-d', 1 + i, [upsert({ d: `2024-01-0${1 + i}`, v: String(i) })]);
      expect(retry.status).toBe(201);
    }
    expect(await rows('dated')).toEqual(['{"d":"2024-01-01","v":"0"}', '{"d":"2024-01-02","v":"1"}', '{"d":"2024-01-03","v":"2"}']);
  });
});
