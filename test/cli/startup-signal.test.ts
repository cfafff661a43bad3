/**
 * SIGTERM while `cdc-agent run` is still starting (issue 22), as its own OS process: its secrets come from a Key
 * Vault that accepts the connection and never answers. In a container the agent is PID 1, and the kernel does not
 * deliver SIGTERM to PID 1 unless it has a handler, so the handlers must be in place before the configuration loads;
 * otherwise a pod stopped during start-up waits out its whole grace period and is killed. The second case runs the
 * agent as PID 1 of its own PID namespace, signalled from outside it, as `docker stop` and the kubelet do.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BIN, writeConfig } from '../support/cli.ts';

const MESSAGE = 'SIGTERM during start-up: exiting before any job was claimed.';
// Generous: the point is that it exits at all, where it used to wait for SIGKILL.
const EXIT_BOUND_MS = 45_000;

/** A TCP listener that takes every connection and never writes a byte (a TLS handshake to it hangs). */
interface Silent {
  port: number;
  connected: Promise<void>;
  close(): Promise<void>;
}
async function silentServer(): Promise<Silent> {
  const sockets: Socket[] = [];
  let onConnect!: () => void;
  const connected = new Promise<void>((resolve) => (onConnect = resolve));
  const server = createServer((socket) => {
    sockets.push(socket);
    socket.on('error', () => {});
    onConnect();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    connected,
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

let vault: Silent;
beforeEach(async () => {
  vault = await silentServer();
});
afterEach(async () => {
  await vault.close();
});

async function stalledConfig(command: string[] = ['run', '--health-host', '127.0.0.1']): Promise<{ args: string[]; env: Record<string, string> }> {
  const file = await writeConfig({
    control: { dialect: 'postgres', url: 'secret://control-db-url' },
    keyVault: { url: `https://127.0.0.1:${vault.port}/` },
    worker: { healthPort: 0 },
    tenants: [],
  });
  // Should the SDK ask for a token, the managed-identity endpoint is the same silent listener: nothing leaves loopback.
  const env = { IDENTITY_ENDPOINT: `http://127.0.0.1:${vault.port}/msi/token`, IDENTITY_HEADER: 'test' };
  return { args: [BIN, '--config', file, ...command], env };
}

interface Ended {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}
function ended(child: ChildProcess): Promise<Ended> {
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
  return new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal, stderr })));
}

/** Resolves with how it ended, or kills it and rejects when it is still running EXIT_BOUND_MS after the signal. */
async function within(exit: Promise<Ended>, child: ChildProcess): Promise<Ended> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`cdc-agent run was still running ${EXIT_BOUND_MS / 1000} s after SIGTERM (killed)`));
    }, EXIT_BOUND_MS);
  });
  try {
    return await Promise.race([exit, late]);
  } finally {
    clearTimeout(timer);
  }
}

// A new PID namespace: as root directly, otherwise inside a user namespace, where the system allows one.
const UNSHARE = process.getuid?.() === 0 ? ['--pid', '--fork'] : ['--user', '--map-root-user', '--pid', '--fork'];
const pidNamespaces = process.platform === 'linux' && spawnSync('unshare', [...UNSHARE, 'true']).status === 0;

describe('cdc-agent run stopped during start-up', () => {
  it('exits 0 with a message on SIGTERM while Key Vault does not answer', async () => {
    const { args, env } = await stalledConfig();
    const child = spawn(process.execPath, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const exit = ended(child);
    await vault.connected; // it is reading its secrets from the vault now, and waits there
    child.kill('SIGTERM');
    const result = await within(exit, child);
    expect(result.stderr).toContain(MESSAGE);
    expect(result).toMatchObject({ code: 0, signal: null });
  }, 90_000);

  it.skipIf(!pidNamespaces)(
    `exits 0 as PID 1 of its own PID namespace, signalled from outside it (as docker stop does)${pidNamespaces ? '' : ' (skipped: unshare cannot create a PID namespace here)'}`,
    async () => {
      const { args, env } = await stalledConfig();
      const child = spawn('unshare', [...UNSHARE, process.execPath, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
      const exit = ended(child);
      await vault.connected;
      // unshare --fork waits for its one child, the agent: PID 1 inside, this pid outside.
      const agentPid = Number(readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim());
      expect(agentPid).toBeGreaterThan(0);
      process.kill(agentPid, 'SIGTERM');
      const result = await within(exit, child);
      expect(result.stderr).toContain(MESSAGE);
      expect(result).toMatchObject({ code: 0, signal: null });
    },
    90_000,
  );

  it('migrate (the Helm hook) exits 1 with what to do on SIGTERM while Key Vault does not answer', async () => {
    const { args, env } = await stalledConfig(['migrate']);
    const child = spawn(process.execPath, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const exit = ended(child);
    await vault.connected;
    child.kill('SIGTERM');
    const result = await within(exit, child);
    expect(result.stderr).toContain('SIGTERM: migrate stopped; migrations already applied stay, the one in progress (if any) rolls back. Run cdc-agent migrate again.');
    expect(result).toMatchObject({ code: 1, signal: null });
  }, 90_000);
});
