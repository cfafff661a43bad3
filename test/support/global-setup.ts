/**
 * Starts the real database servers once per test run (STYLE: servers start once per run):
 * - PostgreSQL from CDC_TEST_PG_URL, else an embedded PostgreSQL from node_modules;
 * - SQL Server from CDC_TEST_MSSQL_URL, else testcontainers, else a skip reason that the SQL Server
 *   suites print as their title. CDC_REQUIRE_MSSQL=1 turns that skip into a failure.
 */
import type { TestProject } from 'vitest/node';
import { startEmbeddedPostgres } from '../../src/demo/embedded-postgres.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    pgAdminUrl: string;
    mssqlAdminUrl: string | null;
    mssqlSkipReason: string | null;
    /** The SQL Server is Babelfish for PostgreSQL (its @@VERSION says so): its known gaps are skipped by name. */
    mssqlIsBabelfish: boolean;
  }
}

async function startMssql(): Promise<{ url: string | null; reason: string | null; stop: () => Promise<void> }> {
  const fromEnv = process.env.CDC_TEST_MSSQL_URL;
  if (fromEnv) return { url: fromEnv, reason: null, stop: async () => {} };
  try {
    const { MSSQLServerContainer } = await import('@testcontainers/mssqlserver');
    const container = await new MSSQLServerContainer('mcr.microsoft.com/mssql/server:2022-latest').acceptLicense().start();
    const url = `mssql://${container.getUsername()}:${encodeURIComponent(container.getPassword())}@${container.getHost()}:${container.getPort()}/master?encrypt=true&trustServerCertificate=true`;
    return { url, reason: null, stop: async () => void (await container.stop()) };
  } catch (error) {
    const detail = (error instanceof Error ? error.message : String(error)).split('\n')[0];
    return {
      url: null,
      reason: `no SQL Server: CDC_TEST_MSSQL_URL is not set and testcontainers could not start one (${detail})`,
      stop: async () => {},
    };
  }
}

/** Babelfish answers @@VERSION with "Babelfish for Aurora PostgreSQL …" (or "… for PostgreSQL"). */
async function isBabelfish(url: string): Promise<boolean> {
  const { connect } = await import('../../src/dialect/connect.ts');
  const db = await connect({ dialect: 'mssql', url, encrypt: true, trustServerCertificate: true, poolMax: 1, connectTimeout: 30_000, requestTimeout: 60_000 });
  try {
    const [row] = await db.query<{ v: string }>('SELECT @@VERSION AS v');
    return /babelfish/i.test(String(row?.v));
  } finally {
    await db.close();
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const stops: Array<() => Promise<void>> = [];
  let pgUrl = process.env.CDC_TEST_PG_URL;
  if (!pgUrl) {
    const pg = await startEmbeddedPostgres({
      label: 'test',
      settings: { max_connections: '300', fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off' },
    });
    stops.push(pg.stop);
    pgUrl = pg.url;
  }
  const mssql = await startMssql();
  stops.push(mssql.stop);
  if (mssql.reason) {
    if (process.env.CDC_REQUIRE_MSSQL === '1') throw new Error(`CDC_REQUIRE_MSSQL=1 but ${mssql.reason}`);
    console.warn(`[cdc-test] SQL Server suites are skipped: ${mssql.reason}`);
  }
  project.provide('pgAdminUrl', pgUrl);
  project.provide('mssqlAdminUrl', mssql.url);
  project.provide('mssqlSkipReason', mssql.reason);
  project.provide('mssqlIsBabelfish', mssql.url ? await isBabelfish(mssql.url) : false);
  return async () => {
    for (const stop of stops.reverse()) await stop();
  };
}
