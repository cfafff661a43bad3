/** `cdc-agent status [--json]` and `cdc-agent jobs retry-dead`. */
import type { Command } from 'commander';
import { ConfigError } from '../../errors/errors.ts';
import { EXIT } from '../exit-codes.ts';
import { loadFromCli, type CliIo } from '../context.ts';

export function registerStatus(program: Command, io: CliIo, setExit: (code: number) => void): void {
  program
    .command('status')
    .description('per source: last success, lag, last run counts, running phase, queued and dead jobs, last error')
    .option('--json', 'print the report as JSON (schema in docs/operations.md)')
    .action(async (options: { json?: boolean }, command: Command) => {
      const loaded = await loadFromCli(command, io, { skipBrokenTenants: true });
      const { openRuntime } = await import('../../agent/runtime.ts');
      const { collectStatus, formatStatus } = await import('../../agent/status.ts');
      const runtime = await openRuntime(loaded, { logLevel: 'warn' });
      try {
        const collected = await collectStatus(loaded.config, runtime.controlDb, runtime.queue);
        const broken = new Set(loaded.brokenTenants.map((b) => b.tenant));
        const report = { ...collected, unknownSources: collected.unknownSources.filter((u) => !broken.has(u.tenant)), tenantsNotServed: loaded.brokenTenants };
        io.out(options.json ? JSON.stringify(report, null, 2) : formatStatus(report));
        setExit(EXIT.ok);
      } finally {
        await runtime.close();
      }
    });

  const jobs = program.command('jobs').description('inspect and repair the job queue');
  jobs
    .command('list')
    .description('the newest jobs (default: queued, running and dead) with their age, attempts, phase, owner and error')
    .option('--state <state>', 'only jobs in this state: queued, running, dead or succeeded')
    .option('--tenant <id>', 'only this tenant')
    .option('--limit <n>', 'at most this many, newest first', '100')
    .option('--json', 'print the jobs as JSON')
    .action(async (options: { state?: string; tenant?: string; limit: string; json?: boolean }, command: Command) => {
      const states = ['queued', 'running', 'dead', 'succeeded'] as const;
      const state = options.state as (typeof states)[number] | undefined;
      if (state !== undefined && !states.includes(state)) throw new ConfigError([`--state ${options.state}: give one of ${states.join(', ')}`], 'Invalid option');
      if (!/^[1-9][0-9]{0,3}$/.test(options.limit)) throw new ConfigError([`--limit ${options.limit}: give a whole number from 1 to 9999`], 'Invalid option');
      const loaded = await loadFromCli(command, io);
      const { openRuntime } = await import('../../agent/runtime.ts');
      const { formatJobs, jobsReport } = await import('../../agent/status.ts');
      const runtime = await openRuntime(loaded, { logLevel: 'warn' });
      try {
        const listed = await runtime.queue.listJobs({ ...(state ? { status: state } : {}), ...(options.tenant ? { tenant: options.tenant } : {}), limit: Number(options.limit) });
        const report = jobsReport(listed.jobs, listed.at);
        io.out(options.json ? JSON.stringify(report, null, 2) : formatJobs(report));
        setExit(EXIT.ok);
      } finally {
        await runtime.close();
      }
    });
  jobs
    .command('retry-dead')
    .description('put dead-lettered jobs back in the queue (after fixing their cause)')
    .option('--tenant <id>', 'only this tenant')
    .option('--source <id>', 'only this source')
    .option('--job <id>', 'only this job')
    .action(async (options: { tenant?: string; source?: string; job?: string }, command: Command) => {
      const loaded = await loadFromCli(command, io);
      const { openRuntime } = await import('../../agent/runtime.ts');
      const runtime = await openRuntime(loaded, { logLevel: 'warn' });
      try {
        const n = await runtime.queue.retryDead({
          ...(options.tenant ? { tenant: options.tenant } : {}),
          ...(options.source ? { source: options.source } : {}),
          ...(options.job ? { jobId: options.job } : {}),
        });
        io.out(`${n} dead job(s) put back in the queue.`);
        setExit(EXIT.ok);
      } finally {
        await runtime.close();
      }
    });
}

export function registerPlan(program: Command, io: CliIo, setExit: (code: number) => void): void {
  program
    .command('plan')
    .description('dry run of one source: what a sync would push (counts by operation and a sample); pushes nothing, leaves staging untouched')
    .requiredOption('--tenant <id>', 'tenant')
    .requiredOption('--source <id>', 'source')
    .option('--sample <n>', 'changes to show', '10')
    .option('--json', 'print the plan as JSON')
    .action(async (options: { tenant: string; source: string; sample: string; json?: boolean }, command: Command) => {
      const loaded = await loadFromCli(command, io);
      const { openRuntime } = await import('../../agent/runtime.ts');
      const { planSource } = await import('../../agent/plan.ts');
      const runtime = await openRuntime(loaded, { logLevel: 'warn' });
      try {
        const plan = await planSource({ ...runtime, config: loaded.config, tenant: options.tenant, source: options.source, sampleSize: Number(options.sample) });
        if (options.json) io.out(JSON.stringify(plan, null, 2));
        else if (plan.schemaChanges.length > 0) {
          io.out(`${plan.tenant}/${plan.source}: the source's schema changed since the last successful run:`);
          for (const c of plan.schemaChanges) io.out(`  - ${c}`);
          io.out('A sync would rebuild the tables and re-send every row (onSchemaChange: resync) or stop (fail).');
        } else {
          const read = plan.runType === 'full' ? `${plan.sourceRows} source rows` : `a ${plan.runType} run (${plan.runReason}) reads ${plan.sourceRows} source rows`;
          io.out(`${plan.tenant}/${plan.source}: ${read}; a sync would push ${plan.upserts} upserts and ${plan.deletes} deletes.`);
          for (const s of plan.sample) io.out(`  ${s.op.padEnd(6)} ${JSON.stringify(s.row)}`);
        }
        setExit(EXIT.ok);
      } finally {
        await runtime.close();
      }
    });
}
