/**
 * `npm run test:chaos [-- --iterations N] [--seed S] [--report FILE]` (also `npm run bench -- chaos`): the chaos
 * suite (test/chaos) with more iterations than `npm test` runs (default 20). Prints the summary and writes the
 * JSON report (default .tmp/chaos.json). Figures of the last run: docs/reliability.md.
 */
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = fileURLToPath(new URL('..', import.meta.url));

export async function run(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: { iterations: { type: 'string', default: '20' }, seed: { type: 'string' }, report: { type: 'string', default: '.tmp/chaos.json' } },
  });
  const iterations = Number(values.iterations);
  if (!Number.isInteger(iterations) || iterations < 1) {
    console.error(`--iterations must be a whole number of 1 or more; got ${values.iterations}`);
    process.exit(2);
  }
  const report = path.resolve(root, values.report);
  const env = { ...process.env, CDC_CHAOS_ITERATIONS: String(iterations), CDC_CHAOS_REPORT: report, ...(values.seed ? { CDC_CHAOS_SEED: values.seed } : {}) };
  const vitest = path.join(root, 'node_modules', 'vitest', 'vitest.mjs');
  const child = spawn(process.execPath, [vitest, 'run', 'test/chaos/chaos.test.ts'], { cwd: root, env, stdio: 'inherit' });
  const code = await new Promise<number>((resolve) => child.on('exit', (c) => resolve(c ?? 1)));
  try {
    const summary = JSON.parse(await readFile(report, 'utf8')) as { convergenceRate: number };
    console.log(`\nreport: ${path.relative(root, report)} (convergence ${(summary.convergenceRate * 100).toFixed(1)} %)`);
  } catch {
    console.error(`no report was written to ${report}`);
  }
  process.exitCode = code;
}
