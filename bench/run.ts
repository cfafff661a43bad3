/**
 * `npm run bench` runs the mission-scale benchmark (bench/onboard.ts); `npm run bench -- <name> [options]` runs
 * bench/<name>.ts; options alone (`npm run bench -- --tables 1 --rows 100000`) go to the mission-scale one. Each
 * prints its figures and writes .tmp/bench-<name>.json. Never part of `npm test`. Results: docs/benchmarks.md.
 */
import { readdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

const dir = fileURLToPath(new URL('.', import.meta.url));
// Not benchmarks: this dispatcher, the shared plumbing, the CPU samplers, the profile reader and the sink receiver.
const helpers = ['run.ts', 'support.ts', 'cpu.ts', 'cpuprofile.ts', 'sink.ts'];
const available = (await readdir(dir)).filter((f) => f.endsWith('.ts') && !helpers.includes(f)).map((f) => f.slice(0, -3));
const argv = process.argv.slice(2);
const [name, ...args] = argv.length === 0 || argv[0]!.startsWith('--') ? ['onboard', ...argv] : argv;
if (!name || !available.includes(name)) {
  console.error(`usage: npm run bench -- <${available.join('|')}> [options]`);
  process.exit(2);
}
const bench = (await import(`./${name}.ts`)) as { run: (args: string[]) => Promise<void> };
await bench.run(args);
