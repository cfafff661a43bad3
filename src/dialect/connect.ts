/** Open a pooled connection for a configured database, in whichever dialect it speaks. */
import type { ConnectionConfig } from '../config/schema.ts';
import { MssqlDb } from './mssql.ts';
import { PostgresDb } from './postgres.ts';
import type { Db } from './types.ts';

export async function connect(config: ConnectionConfig): Promise<Db> {
  if (config.dialect === 'postgres') {
    const db = new PostgresDb(config);
    await db.query('SELECT 1');
    return db;
  }
  return MssqlDb.connect(config);
}
