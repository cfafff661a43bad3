/** `onboard`, `sync` and `resync`: enqueue jobs for the daemons, optionally following them to the end. */
import type { Command } from 'commander';
import type { Followed } from '../../agent/progress.ts';
import type { Runtime } from '../../agent/runtime.ts';
import { parseDurationMs } from '../../config/duration.ts';
import { ConfigError } from '../../errors/errors.ts';
import type { JobKind } from '../../queue-table/queue.ts';
import { EXIT } from '../exit-codes.ts';
import { loadForTenant, type CliIo } from '../context.ts';

/** Onboarding runs before scheduled work (docs/design.md §4: priority). */
const PRIORITY: Record<JobKind, number> = { initial: 100, resync: 50, incremental: 0 };

/** What the operator reads after an unreconciled run, by the mismatch policy's action (src/agent/run-job.ts). */
const MISMATCH_NEXT: Record<string, string> = {
  resync: 'A resync is enqueued (onMismatch: resync); follow it with `cdc-agent status`.',
  alert: 'Nothing was enqueued (onMismatch: alert): `cdc-agent verify` shows the difference, `cdc-agent resync` repairs it.',
  resync_suppressed: 'No resync was enqueued, since one already ran within mismatchResyncEvery: `cdc-agent verify` shows the difference.',
};

interface EnqueueOptions {
  tenant: string;
  source?: string;
  wait?: boolean;
  timeout?: string;
  json?: boolean;
  allowMassDelete?: boolean;
  force?: boolean;
  /** Seconds without any job claimed before `--wait` says no agent seems to run. */
  unclaimedAfter?: string;
}

async function enqueueAndMaybeWait(command: Command, io: CliIo, kind: JobKind, options: EnqueueOptions): Promise<number> {
  const timeoutMs = options.timeout === undefined ? undefined : parseDurationMs(options.timeout);
  if (timeoutMs === undefined && options.timeout !== undefined) {
    throw new ConfigError([`--timeout ${JSON.stringify(options.timeout)}: give seconds (600) or a duration (10m, 1h)`], 'Invalid option');
  }
  const unclaimedMs = options.unclaimedAfter === undefined ? undefined : parseDurationMs(options.unclaimedAfter);
  if (unclaimedMs === undefined && options.unclaimedAfter !== undefined) {
    throw new ConfigError([`--unclaimed-after ${JSON.stringify(options.unclaimedAfter)}: give seconds (30) or a duration (2m)`], 'Invalid option');
  }
  const { loaded, tenant, sources } = await loadForTenant(command, io, options.tenant, options.source);
  const { openRuntime } = await import('../../agent/runtime.ts');
  const { followJobs } = await import('../../agent/progress.ts');
  const { allowMassDelete } = await import('../../agent/delete-guardrail.ts');
  const { RunLedger } = await import('../../agent/run-ledger.ts');
  const runtime: Runtime = await openRuntime(loaded, { logLevel: 'warn' });
  try {
    const followed: Followed[] = [];
    const ledger = new RunLedger(runtime.controlDb);
    const latest = kind === 'initial' ? (await runtime.queue.stats({ deadLimit: 1 })).latest : [];
    for (const source of sources) {
      let sourceKind = kind;
      if (kind === 'initial') {
        // Onboarding again re-attaches to the jobs already there, and never enqueues an empty initial run.
        const unfinished = latest.find((j) => j.tenant === tenant.id && j.source === source.id && (j.status === 'queued' || j.status === 'running'));
        if (unfinished) {
          io.err(`${tenant.id}/${source.id}: its ${unfinished.kind} sync is already ${unfinished.status} (job ${unfinished.id}); following it`);
          followed.push({ tenant: tenant.id, source: source.id, jobId: unfinished.id });
          continue;
        }
        if (await ledger.everSynced(tenant.id, source.id)) {
          if (!options.force) {
            io.err(
              `${tenant.id}/${source.id}: already onboarded; nothing enqueued. \`cdc-agent sync --tenant ${tenant.id}\` pushes its changes; ` +
                `\`onboard --force\` re-sends every row (a resync).`,
            );
            continue;
          }
          sourceKind = 'resync';
        }
      }
      const result = await runtime.queue.enqueue({ tenant: tenant.id, source: source.id, kind: sourceKind, priority: PRIORITY[sourceKind], maxAttempts: loaded.config.worker.maxAttempts });
      const jobId = result.jobId ?? result.existingJobId ?? null;
      if (result.enqueued) io.err(`${tenant.id}/${source.id}: ${sourceKind} sync enqueued (job ${jobId})`);
      else io.err(`${tenant.id}/${source.id}: a sync is already queued or running (job ${jobId}); not enqueued again`);
      if (jobId && options.allowMassDelete) {
        await allowMassDelete(runtime.controlDb, { tenant: tenant.id, source: source.id, jobId });
        io.err(`${tenant.id}/${source.id}: deletes above maxDeletePercent (${source.maxDeletePercent}%) confirmed for job ${jobId}`);
      }
      if (jobId) followed.push({ tenant: tenant.id, source: source.id, jobId });
    }
    // Nothing to follow (every source already onboarded), or not asked to.
    if (followed.length === 0 || !options.wait) {
      if (options.json) io.out(JSON.stringify({ jobs: followed }));
      return EXIT.ok;
    }
    io.err('Waiting for the agent (`cdc-agent run`) to process the jobs…');
    // Ctrl-C stops following, not the jobs: they run in the agent.
    const stop = new AbortController();
    const onInterrupt = () => stop.abort();
    process.once('SIGINT', onInterrupt);
    let result: Awaited<ReturnType<typeof followJobs>>;
    try {
      result = await followJobs(runtime.queue, followed, {
        tty: Boolean(process.stderr.isTTY) && !options.json,
        write: (line) => io.err(line),
        signal: stop.signal,
        ...(timeoutMs !== undefined ? { timeoutMs } : {}),
        ...(unclaimedMs !== undefined ? { unclaimedNoteMs: unclaimedMs } : {}),
      });
    } finally {
      process.removeListener('SIGINT', onInterrupt);
    }
    if (options.json) io.out(JSON.stringify(result));
    for (const f of result.failed) io.err(`${f.tenant}/${f.source}: FAILED (${f.status}): ${f.error}`);
    for (const u of result.unreconciled) {
      const next = MISMATCH_NEXT[u.action] ?? '';
      io.err(`${u.tenant}/${u.source}: UNRECONCILED: every batch was acknowledged, but the receiver reports: ${u.problems.join('; ')}. ${next}`.trimEnd());
    }
    if (result.interrupted.length > 0) {
      const again = kind === 'initial' ? `cdc-agent onboard --tenant ${tenant.id} --wait` : `cdc-agent ${kind === 'resync' ? 'resync' : 'sync'} --tenant ${tenant.id}${options.source ? ` --source ${options.source}` : ''} --wait`;
      io.err(
        `Stopped following ${result.interrupted.length} job(s) (${result.interrupted.map((j) => `${j.tenant}/${j.source} job ${j.jobId}`).join(', ')}); ` +
          `they go on in the agent. Follow them again with \`${again}\` or watch \`cdc-agent status\`.`,
      );
      return EXIT.interrupted;
    }
    if (result.failed.length === 0 && result.unreconciled.length === 0) io.err(`All ${result.succeeded.length} source(s) synced.`);
    return result.failed.length === 0 && result.unreconciled.length === 0 ? EXIT.ok : EXIT.failed;
  } finally {
    await runtime.close();
  }
}

export function registerSync(program: Command, io: CliIo, setExit: (code: number) => void): void {
  program
    .command('onboard')
    .description('enqueue the initial sync of every source of a tenant not yet onboarded, at high priority (run again to follow the jobs)')
    .requiredOption('--tenant <id>', 'tenant to onboard')
    .option('--force', 'sources already onboarded are re-sent in full (a resync) instead of skipped')
    .option('--wait', 'follow the jobs until they finish (progress per source)')
    .option('--timeout <seconds>', 'with --wait: give up after this long (seconds, or a duration such as 10m)')
    .option('--unclaimed-after <seconds>', 'with --wait: say so when no agent has claimed the jobs after this long (default 30)')
    .option('--json', 'machine-readable output')
    .action(async (options: EnqueueOptions, command: Command) => setExit(await enqueueAndMaybeWait(command, io, 'initial', options)));

  program
    .command('sync')
    .description('enqueue an incremental sync of a tenant (all sources, or one)')
    .requiredOption('--tenant <id>', 'tenant to sync')
    .option('--source <id>', 'only this source')
    .option('--wait', 'follow the jobs until they finish')
    .option('--timeout <seconds>', 'with --wait: give up after this long (seconds, or a duration such as 10m)')
    .option('--unclaimed-after <seconds>', 'with --wait: say so when no agent has claimed the jobs after this long (default 30)')
    .option('--json', 'machine-readable output')
    .option('--allow-mass-delete', 'confirm that this sync may delete more than maxDeletePercent of a dataset (the delete guardrail)')
    .action(async (options: EnqueueOptions, command: Command) => setExit(await enqueueAndMaybeWait(command, io, 'incremental', options)));

  program
    .command('resync')
    .description('re-send every current row of a source (e.g. after the receiver lost data)')
    .requiredOption('--tenant <id>', 'tenant')
    .requiredOption('--source <id>', 'source')
    .option('--wait', 'follow the job until it finishes')
    .option('--timeout <seconds>', 'with --wait: give up after this long (seconds, or a duration such as 10m)')
    .option('--unclaimed-after <seconds>', 'with --wait: say so when no agent has claimed the jobs after this long (default 30)')
    .option('--json', 'machine-readable output')
    .action(async (options: EnqueueOptions, command: Command) => setExit(await enqueueAndMaybeWait(command, io, 'resync', options)));
}
