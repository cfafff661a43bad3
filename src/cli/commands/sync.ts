/** `onboard`, `sync` and `resync`: enqueue jobs for the daemons, optionally following them to the end. */
import type { Command } from 'commander';
import type { Followed } from '../../agent/progress.ts';
import type { Runtime } from '../../agent/runtime.ts';
import { ConfigError } from '../../errors/errors.ts';
import type { JobKind } from '../../queue-table/queue.ts';
import { EXIT } from '../exit-codes.ts';
import { loadFromCli, type CliIo } from '../context.ts';

/** Onboarding runs before scheduled work (DESIGN §4: priority). */
const PRIORITY: Record<JobKind, number> = { initial: 100, resync: 50, incremental: 0 };

interface EnqueueOptions {
  tenant: string;
  source?: string;
  wait?: boolean;
  timeout?: string;
  json?: boolean;
  allowMassDelete?: boolean;
}

async function enqueueAndMaybeWait(command: Command, io: CliIo, kind: JobKind, options: EnqueueOptions): Promise<number> {
  const loaded = await loadFromCli(command, io);
  const tenant = loaded.config.tenants.find((t) => t.id === options.tenant);
  if (!tenant) {
    throw new ConfigError([`--tenant ${options.tenant}: no such tenant (configured: ${loaded.config.tenants.map((t) => t.id).join(', ') || 'none'})`], 'Unknown tenant');
  }
  const sources = options.source ? tenant.sources.filter((s) => s.id === options.source) : tenant.sources;
  if (sources.length === 0) {
    throw new ConfigError([`--source ${options.source}: tenant ${tenant.id} has no such source (configured: ${tenant.sources.map((s) => s.id).join(', ')})`], 'Unknown source');
  }
  const { openRuntime } = await import('../../agent/runtime.ts');
  const { followJobs } = await import('../../agent/progress.ts');
  const { allowMassDelete } = await import('../../agent/delete-guardrail.ts');
  const runtime: Runtime = await openRuntime(loaded, { logLevel: 'warn' });
  try {
    const followed: Followed[] = [];
    for (const source of sources) {
      const result = await runtime.queue.enqueue({ tenant: tenant.id, source: source.id, kind, priority: PRIORITY[kind], maxAttempts: loaded.config.worker.maxAttempts });
      const jobId = result.jobId ?? result.existingJobId ?? null;
      if (result.enqueued) io.err(`${tenant.id}/${source.id}: ${kind} sync enqueued (job ${jobId})`);
      else io.err(`${tenant.id}/${source.id}: a sync is already queued or running (job ${jobId}); not enqueued again`);
      if (jobId && options.allowMassDelete) {
        await allowMassDelete(runtime.controlDb, { tenant: tenant.id, source: source.id, jobId });
        io.err(`${tenant.id}/${source.id}: deletes above maxDeletePercent (${source.maxDeletePercent}%) confirmed for job ${jobId}`);
      }
      if (jobId) followed.push({ tenant: tenant.id, source: source.id, jobId });
    }
    if (!options.wait) {
      if (options.json) io.out(JSON.stringify({ jobs: followed }));
      return EXIT.ok;
    }
    io.err('Waiting for the agent (`cdc-agent run`) to process the jobs…');
    const timeoutMs = options.timeout ? Number(options.timeout) * 1000 : undefined;
    const result = await followJobs(runtime.queue, followed, {
      tty: Boolean(process.stderr.isTTY) && !options.json,
      write: (line) => io.err(line),
      ...(timeoutMs !== undefined ? { timeoutMs } : {}),
    });
    if (options.json) io.out(JSON.stringify(result));
    for (const f of result.failed) io.err(`${f.tenant}/${f.source}: FAILED (${f.status}): ${f.error}`);
    if (result.failed.length === 0) io.err(`All ${result.succeeded.length} source(s) synced.`);
    return result.failed.length === 0 ? EXIT.ok : EXIT.failed;
  } finally {
    await runtime.close();
  }
}

export function registerSync(program: Command, io: CliIo, setExit: (code: number) => void): void {
  program
    .command('onboard')
    .description('enqueue the initial sync of every source of a tenant, at high priority')
    .requiredOption('--tenant <id>', 'tenant to onboard')
    .option('--wait', 'follow the jobs until they finish (progress per source)')
    .option('--timeout <seconds>', 'with --wait: give up after this long')
    .option('--json', 'machine-readable output')
    .action(async (options: EnqueueOptions, command: Command) => setExit(await enqueueAndMaybeWait(command, io, 'initial', options)));

  program
    .command('sync')
    .description('enqueue an incremental sync of a tenant (all sources, or one)')
    .requiredOption('--tenant <id>', 'tenant to sync')
    .option('--source <id>', 'only this source')
    .option('--wait', 'follow the jobs until they finish')
    .option('--timeout <seconds>', 'with --wait: give up after this long')
    .option('--json', 'machine-readable output')
    .option('--allow-mass-delete', 'confirm that this sync may delete more than maxDeletePercent of a dataset (the delete guardrail)')
    .action(async (options: EnqueueOptions, command: Command) => setExit(await enqueueAndMaybeWait(command, io, 'incremental', options)));

  program
    .command('resync')
    .description('re-send every current row of a source (e.g. after the receiver lost data)')
    .requiredOption('--tenant <id>', 'tenant')
    .requiredOption('--source <id>', 'source')
    .option('--wait', 'follow the job until it finishes')
    .option('--timeout <seconds>', 'with --wait: give up after this long')
    .option('--json', 'machine-readable output')
    .action(async (options: EnqueueOptions, command: Command) => setExit(await enqueueAndMaybeWait(command, io, 'resync', options)));
}
