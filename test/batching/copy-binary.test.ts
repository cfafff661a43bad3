/**
 * The binary COPY reader every change-table read goes through (src/batching/copy-binary.ts): it decodes what the
 * server sends, refuses a damaged stream, and reads each COPY to its end, so the pooled connection is reused
 * rather than discarded (a push used to open one new server backend per batch).
 */
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { binaryTuples } from '../../src/batching/copy-binary.ts';
import { connect } from '../../src/dialect/connect.ts';
import type { Db } from '../../src/dialect/types.ts';
import { createTestDatabase, type TestDatabase } from '../support/databases.ts';

async function all(input: Readable): Promise<Array<Array<string | null>>> {
  const out: Array<Array<string | null>> = [];
  for await (const t of binaryTuples(input)) out.push(t.map((f) => (f === null ? null : f.toString('utf8'))));
  return out;
}

describe('binary COPY reader [postgres]', () => {
  let t: TestDatabase;
  let db: Db;
  beforeAll(async () => {
    t = await createTestDatabase('postgres', 'copybin');
    db = await connect({ ...t.config, poolMax: 1 });
  });
  afterAll(async () => {
    await db?.close();
    await t?.drop();
  });

  const pid = async () => (await db.query<{ pid: number }>('SELECT pg_backend_pid() AS pid'))[0]!.pid;
  const copy = (sql: string) => db.copyOut!(`COPY (${sql}) TO STDOUT (FORMAT binary)`);

  it('decodes tuples, NULLs included, and leaves the connection to the pool for the next statement', async () => {
    const before = await pid();
    for (let i = 0; i < 3; i++) {
      const rows = await all(await copy(`SELECT g::text, CASE WHEN g % 2 = 0 THEN NULL ELSE repeat('x', g) END FROM generate_series(1, 5000) AS g`));
      expect(rows).toHaveLength(5000);
      expect(rows[0]).toEqual(['1', 'x']);
      expect(rows[1]).toEqual(['2', null]);
      expect(rows[4998]).toEqual(['4999', 'x'.repeat(4999)]);
    }
    expect(await all(await copy('SELECT 1 WHERE false'))).toEqual([]);
    // One connection in the pool: the same server backend served every COPY and this query.
    expect(await pid()).toBe(before);
  });

  it('a reader that stops early gives its connection up, and the pool carries on with a fresh one', async () => {
    const before = await pid();
    for await (const tuple of binaryTuples(await copy('SELECT g FROM generate_series(1, 100000) AS g'))) {
      expect(tuple).toHaveLength(1);
      break;
    }
    const after = await pid();
    expect(after).not.toBe(before);
    expect(await all(await copy('SELECT 7'))).toHaveLength(1);
  });
});

describe('binary COPY reader on damaged input', () => {
  const header = Buffer.concat([Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1'), Buffer.alloc(8)]);
  const tuple = Buffer.from([0, 1, 0, 0, 0, 1, 0x41]); // one field, "A"
  const trailer = Buffer.from([0xff, 0xff]);

  it('reads a stream split at every byte', async () => {
    const bytes = Buffer.concat([header, tuple, tuple, trailer]);
    const chunks = Array.from(bytes, (b) => Buffer.from([b]));
    expect(await all(Readable.from(chunks))).toEqual([['A'], ['A']]);
  });

  it('assembles a tuple of several MB that arrives in many small chunks, and its neighbours around it', async () => {
    const big = Buffer.alloc(3_000_000, 0x61);
    const field = (b: Buffer) => Buffer.concat([Buffer.from([0, 1]), Buffer.from([(b.length >>> 24) & 255, (b.length >>> 16) & 255, (b.length >>> 8) & 255, b.length & 255]), b]);
    const bytes = Buffer.concat([header, tuple, field(big), tuple, trailer]);
    const chunks: Buffer[] = [];
    for (let i = 0; i < bytes.length; i += 997) chunks.push(bytes.subarray(i, i + 997));
    const rows = await all(Readable.from(chunks));
    expect(rows.map((r) => r[0]!.length)).toEqual([1, 3_000_000, 1]);
    expect(rows[1]![0]).toBe('a'.repeat(3_000_000));
  });

  it('refuses a stream without its trailer, with data after it, or without the signature', async () => {
    await expect(all(Readable.from([Buffer.concat([header, tuple])]))).rejects.toThrow('ended without its trailer');
    await expect(all(Readable.from([Buffer.concat([header, tuple, trailer, tuple])]))).rejects.toThrow('data after its trailer');
    await expect(all(Readable.from([Buffer.concat([header, trailer]), tuple]))).rejects.toThrow('data after its trailer');
    await expect(all(Readable.from([Buffer.concat([Buffer.from('NOTCOPY\n\xff\r\n\0', 'latin1'), Buffer.alloc(8), trailer])]))).rejects.toThrow(
      'not a binary COPY stream',
    );
  });
});
