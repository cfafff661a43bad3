/** `cdc-agent status [--json]` and `cdc-agent jobs retry-dead`. */
import type { Command } from 'commander';
import { EXIT } from '../exit-codes.ts';
import { loadFromCli, type CliIo } from '../context.ts';

export function registerStatus(program: Command, io: CliIo, setExit: (code: number) => void): void {
  program
    .command('status')
    .description('per source: last success, lag, last run counts, running phase, queued and dead jobs, last error')
    .option('--json', 'print the report as JSON (schema in docs/operations.md)')
    .action(async (options: { json?: boolean }, command: Command) => {
      const loaded = await loadFromCli(command, io);
      const { openRuntime } = await import('../../agent/runtime.ts');
      const { collectStatus, formatStatus } = await import('../../agent/status.ts');
      const runtime = await openRuntime(loaded, { logLevel: 'warn' });
      try {
        const report = await collectStatus(loaded.config, runtime.controlDb, runtime.queue);
        io.out(options.json ? JSON.stringify(report, null, 2) : formatStatus(report));
        setExit(EXIT.ok);
      } finally {
        await runtime.close();
      }
    });

  const jobs = program.command('jobs').description('inspect and repair the job queue');
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
