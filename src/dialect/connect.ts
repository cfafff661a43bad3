/** Open a pooled connection for a configured database, in whichever dialect it speaks. */
import type { ConnectionConfig } from '../config/schema.ts';
import { PostgresDb, type SessionOptions } from './postgres.ts';
import type { Db } from './types.ts';

/**
 * With `probe` (the default) the server is reached once before returning, so a bad URL or login fails here.
 * Without it the pool connects on first use: the daemon uses that to start, report not-ready and back off
 * while its control database is unreachable, instead of exiting.
 */
export async function connect(config: ConnectionConfig, options: { probe?: boolean } & SessionOptions = {}): Promise<Db> {
  const probe = options.probe ?? true;
  if (config.dialect === 'postgres') {
    const db = new PostgresDb(config, options.jitOff === undefined ? {} : { jitOff: options.jitOff });
    if (probe) await db.query('SELECT 1');
    return db;
  }
  // The SQL Server driver is loaded only when a SQL Server is configured (it costs ~40 MB of memory).
  const { MssqlDb } = await import('./mssql.ts');
  return probe ? MssqlDb.connect(config) : MssqlDb.lazy(config);
}
