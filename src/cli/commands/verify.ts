/** `cdc-agent verify`: prove each dataset at the receiver equals its source, without re-sending it (src/agent/verify.ts). */
import type { Command } from 'commander';
import { ConfigError } from '../../errors/errors.ts';
import { EXIT } from '../exit-codes.ts';
import { loadForTenant, type CliIo } from '../context.ts';

interface VerifyOptions {
  tenant: string;
  source?: string;
  json?: boolean;
  repair?: boolean;
  buckets: string;
}

export function registerVerify(program: Command, io: CliIo, setExit: (code: number) => void): void {
  program
    .command('verify')
    .description('compare the receiver, staging and a fresh read of the source by digest, per source; exit 0 all match, 1 a difference, 3 the receiver cannot verify')
    .requiredOption('--tenant <id>', 'tenant')
    .option('--source <id>', 'only this source')
    .option('--json', 'print the report as JSON')
    .option('--repair', 'enqueue what fixes each difference: a resync where the receiver differs from staging, else a sync')
    .option('--buckets <n>', 'key buckets of the digest (more: smaller samples, larger answers)', '256')
    .action(async (options: VerifyOptions, command: Command) => {
      const buckets = Number(options.buckets);
      if (!/^[1-9][0-9]*$/.test(options.buckets) || buckets > 65_536) throw new ConfigError([`--buckets ${options.buckets}: give a whole number from 1 to 65536`], 'Invalid option');
      const { loaded, tenant } = await loadForTenant(command, io, options.tenant, options.source);
      const { openRuntime } = await import('../../agent/runtime.ts');
      const { verifyTenant } = await import('../../agent/verify.ts');
      const runtime = await openRuntime(loaded, { logLevel: 'warn' });
      try {
        const report = await verifyTenant({
          config: loaded.config,
          controlDb: runtime.controlDb,
          queue: runtime.queue,
          sources: runtime.sources,
          tenant: tenant.id,
          ...(options.source ? { source: options.source } : {}),
          buckets,
          repair: options.repair === true,
        });
        if (options.json) io.out(JSON.stringify(report, null, 2));
        else {
          for (const s of report.sources) {
            io.out(`${s.tenant}/${s.source}: ${s.message}`);
            for (const k of s.samples) io.out(`    ${JSON.stringify(k.key)} ${k.problem}`);
            if (s.repair) io.out(`    repair: ${s.repair.kind} ${s.repair.enqueued ? 'enqueued' : 'already queued or running'} (job ${s.repair.jobId ?? '?'})`);
          }
        }
        const statuses = report.sources.map((s) => s.status);
        setExit(statuses.includes('differs') ? EXIT.failed : statuses.includes('unverifiable') ? EXIT.unverifiable : statuses.includes('busy') ? EXIT.failed : EXIT.ok);
      } finally {
        await runtime.close();
      }
    });
}
