import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bucketOf, DigestBuilder, differingBuckets, hex64, keyText, rowHash } from '../../src/contract/digest.ts';
import { encodeCell, encodeChange, encodeRow, frameBatch, shortestFloat32, wireSchema } from '../../src/contract/wire.ts';
import type { Cell } from '../../src/dialect/types.ts';
import { startReceiver, type Receiver } from '../../src/receiver/server.ts';
import type { SourceSchema } from '../../src/snapshot/schema.ts';
import { createTestDatabase, type TestDatabase } from '../support/databases.ts';
import { EVERY_TYPE_COLUMNS } from '../support/every-type.ts';

describe('float32 on the wire', () => {
  it('travels as the shortest decimal that reads back as the same float32', () => {
    expect(encodeCell(Math.fround(0.1), { kind: 'float32' })).toBe(0.1);
    expect(JSON.stringify(encodeCell(Math.fround(3.4028234e38), { kind: 'float32' }))).toBe('3.4028235e+38');
    expect(encodeCell(Math.fround(-1.5), { kind: 'float32' })).toBe(-1.5);
    // float64 is untouched
    expect(encodeCell(0.10000000149011612, { kind: 'float64' })).toBe(0.10000000149011612);
    let seed = 7;
    const next = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31 - 0.5) * 10 ** ((seed % 40) - 20);
    for (let i = 0; i < 5000; i++) {
      const x = Math.fround(next());
      const y = shortestFloat32(x);
      expect(Math.fround(y)).toBe(x);
      const digits = y === 0 ? 1 : y.toExponential().split('e')[0]!.replace(/[-.]/g, '').length;
      // no shorter form reads back as x
      if (digits > 1) expect(Math.fround(Number(x.toPrecision(digits - 1)))).not.toBe(x);
    }
  });
});

describe('dataset digest', () => {
  const schema: SourceSchema = { columns: [...EVERY_TYPE_COLUMNS], key: ['id'] };
  const base: Cell[] = [
    0, true, -32768, 9223372036854775807n, '-12.5000000000', 1.7976931348623157e308, Math.fround(0.1), '  trailing  ', '🦄 e\u0301 "q" \\ \n', Buffer.from([0, 255]),
    '123e4567-e89b-12d3-a456-426614174000', '2024-02-29', '2024-02-29T23:59:59.999999', '2024-02-29T23:59:59.9999999', '23:59:59.000001', '2024-02-29T23:59:59.123456+00:00',
  ];
  const rows: Cell[][] = [base, ...Array.from({ length: 40 }, (_, i) => [i + 1, ...base.slice(1)]), [100, ...EVERY_TYPE_COLUMNS.slice(1).map(() => null)]];

  it('has fixed values other receivers can test against (documented in docs/data-push-api.md)', () => {
    expect(keyText(['1001'])).toBe('["1001"]');
    const golden = { bucket: bucketOf('["1001"]', 256), hash: hex64(rowHash('{"OrderID":"1001","Amount":"12.5000"}')) };
    expect(golden).toEqual({ bucket: 96, hash: 'eec9fbee2b94a307' });
  });

  it('does not depend on row order, and a changed, missing or extra row moves exactly its bucket', () => {
    const digest = (list: Cell[][]) => {
      const b = new DigestBuilder(64);
      for (const r of list) b.add(keyText([encodeCell(r[0]!, { kind: 'int32' })]), encodeRow(r, schema.columns));
      return b.result();
    };
    const a = digest(rows);
    expect(digest([...rows].reverse())).toEqual(a);
    expect(a.rows).toBe(rows.length);
    expect(a.counts.reduce((x, y) => x + y, 0)).toBe(rows.length);
    const changed = rows.map((r) => (r[0] === 5 ? [5, ...base.slice(1, 7), 'Trailing  ', ...base.slice(8)] : r));
    expect(differingBuckets(digest(changed), a)).toEqual([bucketOf('[5]', 64)]);
    expect(differingBuckets(digest(rows.filter((r) => r[0] !== 7)), a)).toEqual([bucketOf('[7]', 64)]);
    expect(() => differingBuckets(new DigestBuilder(8).result(), a)).toThrow(/cannot be compared/);
  });

  describe('the reference receiver computes the digest the agent computes', () => {
    let rxDb: TestDatabase;
    let rx: Receiver;
    const AUTH = { authorization: 'Bearer t0ken', 'content-type': 'application/json' };
    beforeAll(async () => {
      rxDb = await createTestDatabase('postgres', 'digest_rx');
      rx = await startReceiver({ port: 0, db: rxDb.url, tokens: { acme: 't0ken' } });
    });
    afterAll(async () => {
      await rx?.close();
      await rxDb?.drop();
    });

    it('over every type, for the whole dataset and for one bucket listed by key', async () => {
      const entries = rows.map((r) => encodeChange('U', r, schema.columns, [0]));
      const body = frameBatch({ runId: 'r1', mode: 'initial', batch: 1, schemaJson: JSON.stringify(wireSchema(schema)) }, entries);
      const posted = await fetch(`${rx.url}/tenants/acme/datasets/every/batches`, { method: 'POST', body, headers: { ...AUTH, 'idempotency-key': 'r1.1' } });
      expect(posted.status).toBe(201);

      const agent = new DigestBuilder(32);
      for (const r of rows) agent.add(keyText([encodeCell(r[0]!, { kind: 'int32' })]), encodeRow(r, schema.columns));
      const expected = agent.result();
      const answer = await (await fetch(`${rx.url}/tenants/acme/datasets/every/digest?buckets=32`, { headers: AUTH })).json();
      expect(answer).toEqual(expected);

      const bucket = bucketOf('[3]', 32);
      const listed = (await (await fetch(`${rx.url}/tenants/acme/datasets/every/digest?buckets=32&bucket=${bucket}`, { headers: AUTH })).json()) as { keys: Array<{ key: { id: number }; hash: string }> };
      const inBucket = rows.filter((r) => bucketOf(keyText([r[0] as number]), 32) === bucket);
      expect(listed.keys.map((k) => k.key.id).sort((x, y) => x - y)).toEqual(inBucket.map((r) => r[0]));
      expect(listed.keys.find((k) => k.key.id === 3)!.hash).toBe(hex64(rowHash(encodeRow(rows[3]!, schema.columns))));

      // an unknown dataset is empty; a bad query is a 400 with the reason
      const empty = (await (await fetch(`${rx.url}/tenants/acme/datasets/nothing/digest?buckets=4`, { headers: AUTH })).json()) as { rows: number; counts: number[] };
      expect(empty).toMatchObject({ rows: 0, counts: [0, 0, 0, 0] });
      const bad = await fetch(`${rx.url}/tenants/acme/datasets/every/digest?buckets=4&bucket=4`, { headers: AUTH });
      expect(bad.status).toBe(400);
      expect(((await bad.json()) as { message: string }).message).toMatch(/bucket below buckets/);
      expect((await fetch(`${rx.url}/tenants/acme/datasets/every/digest?buckets=x`, { headers: AUTH })).status).toBe(400);
    });
  });
});
