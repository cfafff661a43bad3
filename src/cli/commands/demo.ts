/** `cdc-agent demo`: the one-command demo on an embedded PostgreSQL (see src/demo/demo.ts). */
import { InvalidArgumentError, type Command } from 'commander';
import { EXIT } from '../exit-codes.ts';
import type { CliIo } from '../context.ts';

export function registerDemo(program: Command, io: CliIo, setExit: (code: number) => void): void {
  program
    .command('demo')
    .description('onboard and sync a generated two-tenant estate on an embedded PostgreSQL, then verify it at the reference receiver')
    .option('--rows <n>', 'rows per tenant, spread over five tables', wholeNumber, 100_000)
    .option('--change <fraction>', 'share of rows changed before the incremental sync', fraction, 0.01)
    .option('--keep', 'leave the databases, receiver and agent running and print how to try status/plan/sync')
    .option('--postgres-url <url>', 'use this PostgreSQL server instead of starting an embedded one')
    .option('--source-url <url>', "build the tenants' legacy databases on this server (mssql://user:password@host:1433/master?encrypt=false, or postgres://…); they are dropped at the end")
    .action(async (options: { rows: number; change: number; keep?: boolean; postgresUrl?: string; sourceUrl?: string }) => {
      const { rows, change } = options;
      const { runDemo } = await import('../../demo/demo.ts');
      const result = await runDemo({
        rows,
        changeFraction: change,
        keep: Boolean(options.keep),
        out: (line) => io.err(line),
        tty: Boolean(process.stderr.isTTY),
        ...(options.postgresUrl ? { postgresUrl: options.postgresUrl } : {}),
        ...(options.sourceUrl ? { sourceUrl: options.sourceUrl } : {}),
      });
      io.out(formatTable(result.rows));
      io.out(result.ok ? 'Every dataset at the receiver equals its source ✓' : 'VERIFICATION FAILED ✗ (see above)');
      setExit(result.ok ? EXIT.ok : EXIT.failed);
    });
}

function wholeNumber(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 50) throw new InvalidArgumentError('must be a whole number of at least 50');
  return n;
}

function fraction(value: string): number {
  const n = Number(value);
  if (!(n > 0 && n < 1)) throw new InvalidArgumentError('must be a fraction between 0 and 1, e.g. 0.01');
  return n;
}

function formatTable(rows: Array<Record<string, string | number>>): string {
  if (rows.length === 0) return '';
  const header = Object.keys(rows[0]!);
  const cells = rows.map((r) => header.map((h) => String(r[h] ?? '')));
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]) => c.map((v, i) => (i < 2 ? v.padEnd(widths[i]!) : v.padStart(widths[i]!))).join('  ');
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...cells.map(line)].join('\n');
}
