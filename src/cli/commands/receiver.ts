/** `cdc-agent receiver`: run the reference Data Push API receiver (src/receiver) until interrupted. */
import type { Command } from 'commander';
import { EXIT } from '../exit-codes.ts';
import type { CliIo } from '../context.ts';

function collectToken(value: string, previous: Record<string, string>): Record<string, string> {
  const at = value.indexOf('=');
  if (at <= 0 || at === value.length - 1) throw new Error(`--token takes tenant=TOKEN, got ${JSON.stringify(value.replace(/=.*/, '=…'))}`);
  return { ...previous, [value.slice(0, at)]: value.slice(at + 1) };
}

function rate(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!(n >= 0 && n <= 1)) throw new Error(`${name} is a share between 0 and 1, got ${value}`);
    return n;
  };
}

function count(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 0) throw new Error(`${name} is a whole number, got ${value}`);
    return n;
  };
}

interface ReceiverCliOptions {
  port: number;
  host: string;
  db: string;
  token: Record<string, string>;
  failRate?: number;
  throttleRate?: number;
  retryAfter?: number;
  latencyMs?: number;
  resetRate?: number;
  maxBodyBytes?: number;
  rejectBatch?: number[];
  seed: number;
  digest?: boolean;
}

export function registerReceiver(program: Command, io: CliIo, setExit: (code: number) => void, waitForStop?: () => Promise<void>): void {
  program
    .command('receiver')
    .description('run the reference Data Push API receiver (stores rows in PostgreSQL; optional fault injection)')
    .requiredOption('--port <port>', 'TCP port (0 picks a free one)', count('--port'))
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .requiredOption('--db <url>', 'postgres:// URL of the receiver database')
    .option('--token <tenant=TOKEN>', 'accept TOKEN (Bearer or X-Api-Key) for tenant; repeat per tenant', collectToken, {})
    .option('--fail-rate <share>', 'answer this share of requests with 500', rate('--fail-rate'))
    .option('--throttle-rate <share>', 'answer this share of requests with 429 and Retry-After', rate('--throttle-rate'))
    .option('--retry-after <seconds>', 'Retry-After on throttled answers (default 1)', count('--retry-after'))
    .option('--latency-ms <ms>', 'delay every request', count('--latency-ms'))
    .option('--reset-rate <share>', 'destroy the connection of this share of requests', rate('--reset-rate'))
    .option('--max-body-bytes <n>', 'answer 413 to bodies larger than this (decoded)', count('--max-body-bytes'))
    .option('--reject-batch <n>', 'answer 422 to batch number n (repeatable)', (v: string, prev: number[] = []) => [...prev, count('--reject-batch')(v)])
    .option('--seed <n>', 'seed of the fault generator', count('--seed'), 1)
    .option('--no-digest', 'leave out the optional digest endpoint (a receiver that cannot verify)')
    .action(async (options: ReceiverCliOptions) => {
      if (Object.keys(options.token).length === 0) io.err('warning: no --token given; every request will be refused with 401');
      const { startReceiver } = await import('../../receiver/server.ts');
      const receiver = await startReceiver({
        port: options.port,
        host: options.host,
        db: options.db,
        tokens: options.token,
        seed: options.seed,
        digest: options.digest !== false,
        faults: {
          ...(options.failRate !== undefined ? { failRate: options.failRate } : {}),
          ...(options.throttleRate !== undefined ? { throttleRate: options.throttleRate } : {}),
          ...(options.retryAfter !== undefined ? { retryAfterSeconds: options.retryAfter } : {}),
          ...(options.latencyMs !== undefined ? { latencyMs: options.latencyMs } : {}),
          ...(options.resetRate !== undefined ? { resetRate: options.resetRate } : {}),
          ...(options.maxBodyBytes !== undefined ? { maxBodyBytes: options.maxBodyBytes } : {}),
          ...(options.rejectBatch !== undefined ? { rejectBatches: options.rejectBatch } : {}),
        },
      });
      io.out(`receiver listening on ${receiver.url} for tenants: ${Object.keys(options.token).join(', ') || '(none)'}`);
      await (waitForStop ?? untilSignal)();
      await receiver.close();
      io.err('receiver stopped');
      setExit(EXIT.ok);
    });
}

function untilSignal(): Promise<void> {
  return new Promise((resolve) => {
    const stop = () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}
