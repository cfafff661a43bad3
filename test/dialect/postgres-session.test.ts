/**
 * PostgreSQL session settings: the agent's own connections start with `jit = off` (see SessionOptions in
 * src/dialect/postgres.ts); source connections do not send that startup option, which a server before
 * PostgreSQL 11 would refuse. A COPY given settings (a watermark run's delta read) sees them, and the pooled
 * session keeps none of them afterwards.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { binaryTuples } from '../../src/batching/copy-binary.ts';
import { connect } from '../../src/dialect/connect.ts';
import { createTestDatabase, type TestDatabase } from '../support/databases.ts';

describe('PostgreSQL session options [postgres]', () => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await createTestDatabase('postgres', 'session');
  });
  afterAll(async () => {
    await t?.drop();
  });

  const jit = async (options: { jitOff?: boolean }) => {
    const db = await connect(t.config, options);
    try {
      const [row] = await db.query<{ setting: string; source: string }>(`SELECT setting, source FROM pg_settings WHERE name = 'jit'`);
      return row;
    } finally {
      await db.close();
    }
  };

  it('control connections start with jit off, set by the client; source connections leave the server default', async () => {
    expect(await jit({})).toEqual({ setting: 'off', source: 'client' });
    expect((await jit({ jitOff: false }))?.source).not.toBe('client');
  });

  it('a COPY given settings reads them (bound as parameters, quotes and all), and the pooled session keeps none of them', async () => {
    const db = await connect({ ...t.config, poolMax: 1 });
    try {
      const [before] = await db.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      const read = async (settings?: Record<string, string>) => {
        const out: string[] = [];
        const sql = `COPY (SELECT g FROM generate_series(1, 10) AS g WHERE g > current_setting('cdc_sync.v1')::int AND g <= current_setting('cdc_sync.v2')::int AND current_setting('cdc_sync.v3') = 'it''s') TO STDOUT (FORMAT binary)`;
        for await (const tuple of binaryTuples(await db.copyOut!(sql, settings))) out.push(String(tuple[0]!.readInt32BE(0)));
        return out;
      };
      expect(await read({ 'cdc_sync.v1': '3', 'cdc_sync.v2': '6', 'cdc_sync.v3': "it's" })).toEqual(['4', '5', '6']);
      // The same pooled session, and the settings ended with the COPY's transaction.
      const [after] = await db.query<{ pid: number; v1: string | null; open: string }>(
        `SELECT pg_backend_pid() AS pid, current_setting('cdc_sync.v1', true) AS v1, (SELECT state FROM pg_stat_activity WHERE pid = pg_backend_pid()) AS open`,
      );
      expect(after!.pid).toBe(before!.pid);
      expect(after!.v1 ?? '').toBe('');
      expect(after!.open).toBe('active');
      await expect(read()).rejects.toThrow();
    } finally {
      await db.close();
    }
  });
});
