/**
 * `npm run bench -- <name> [options]`: runs bench/<name>.ts, which prints its figures and writes
 * .tmp/bench-<name>.json. Never part of `npm test`. Results and how to read them: docs/benchmarks.md.
 */
import { readdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

const dir = fileURLToPath(new URL('.', import.meta.url));
const available = (await readdir(dir)).filter((f) => f.endsWith('.ts') && !['run.ts', 'support.ts'].includes(f)).map((f) => f.slice(0, -3));
const [name, ...args] = process.argv.slice(2);
if (!name || !available.includes(name)) {
  console.error(`usage: npm run bench -- <${available.join('|')}> [options]`);
  process.exit(2);
}
const bench = (await import(`./${name}.ts`)) as { run: (args: string[]) => Promise<void> };
await bench.run(args);
