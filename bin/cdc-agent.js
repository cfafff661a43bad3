#!/usr/bin/env node
// Runs the TypeScript sources directly: Node 22.18+ strips types natively (package.json "engines").
const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 22 || (major === 22 && minor < 18)) {
  process.stderr.write(
    `cdc-agent needs Node.js 22.18 or newer; this is ${process.version}. ` +
      'Run it through npm (`npm run cdc-agent -- …` or `npx cdc-agent …`), which uses the Node pinned in devDependencies.\n',
  );
  process.exit(2);
}

// Memory (issue 10): two settings that must be in place before the process starts, so the entry script
// replaces its own process once (same pid, same stdio) with them in its environment:
// - V8: on a machine with several GiB, V8 lets its young generation grow to 2 × 64 MiB while a job allocates
//   quickly (COPY chunks, batch bodies, gzip), and never gives it back: that was ≈ 100 MiB of the agent's RSS
//   during and after a job. 16 MiB semi-spaces (NODE_OPTIONS) keep it at 32 MiB at no measurable cost in time.
//   8 MiB lowered two-job peaks by 10–20 MB, but both 12 × 1M runs with it had 2–5 × slower snapshot and push
//   phases in their later syncs and 30–75 % more agent CPU there (docs/benchmarks.md), so 16 stays.
//   CDC_AGENT_SEMI_SPACE_MB=N picks another size; 0, or a --max-semi-space-size already given, leaves V8's default.
// - glibc's malloc: every thread that allocates (the libuv pool gzips each batch; V8 has helper threads) may get
//   an arena of its own, up to 8 per core, and memory freed inside an arena is seldom returned to the system.
//   MALLOC_ARENA_MAX=2 (measured with two 1M-row jobs at a time: peak RSS 257–275 MB without, 249–261 MB with).
//   A MALLOC_ARENA_MAX already set is kept; other C libraries ignore the variable.
/* eslint-disable no-restricted-properties -- the CLI entry itself: these must be in place before the process starts */
const SEMI = '--max-semi-space-size';
const semiMb = process.env.CDC_AGENT_SEMI_SPACE_MB ?? '16';
const given = process.execArgv.some((a) => a.startsWith(SEMI)) || (process.env.NODE_OPTIONS ?? '').includes(SEMI);
const env = { ...process.env };
if (!given && /^[1-9]\d*$/.test(semiMb)) env.NODE_OPTIONS = `${process.env.NODE_OPTIONS ?? ''} ${SEMI}=${semiMb}`.trim();
if (process.platform === 'linux' && env.MALLOC_ARENA_MAX === undefined) env.MALLOC_ARENA_MAX = '2';
if ((env.NODE_OPTIONS !== process.env.NODE_OPTIONS || env.MALLOC_ARENA_MAX !== process.env.MALLOC_ARENA_MAX) && typeof process.execve === 'function') {
  try {
    process.execve(process.execPath, [process.execPath, ...process.execArgv, ...process.argv.slice(1)], env);
  } catch {
    // execve unavailable or refused: run with the defaults.
  }
}
/* eslint-enable no-restricted-properties */

// Which code runs (issue 10): the compiled build in dist/ (`npm run build`; the container image holds only that)
// or the TypeScript sources through Node's type stripping. The stripper is a WebAssembly module whose memory
// stays for the life of the process: the same daemon holds ≈ 30 MB less RSS from dist/. A checkout runs its
// sources, so an edit is never shadowed by an old build; CDC_AGENT_BUILD=dist or =src chooses explicitly.
const { existsSync } = await import('node:fs');
const built = new URL('../dist/cli/main.js', import.meta.url);
const sources = new URL('../src/cli/main.ts', import.meta.url);
// eslint-disable-next-line no-restricted-properties -- the CLI entry itself: chosen before any module loads
const choice = process.env.CDC_AGENT_BUILD || (existsSync(sources) ? 'src' : 'dist');
if (choice !== 'src' && choice !== 'dist') {
  process.stderr.write(`CDC_AGENT_BUILD must be "dist" or "src", not "${choice}".\n`);
  process.exit(2);
}
if (choice === 'dist' && !existsSync(built)) {
  process.stderr.write(`CDC_AGENT_BUILD=dist but there is no build at ${built.pathname}: run \`npm run build\` first, or unset CDC_AGENT_BUILD to run the sources.\n`);
  process.exit(2);
}
const { main } = await import(choice === 'dist' ? built.href : sources.href);
process.exitCode = await main(process.argv);
