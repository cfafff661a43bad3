/**
 * PostgreSQL session settings: the agent's own connections start with `jit = off` (see SessionOptions in
 * src/dialect/postgres.ts); source connections do not send that startup option, which a server before
 * PostgreSQL 11 would refuse.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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
});
