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

// Memory (issue 10): on a machine with several GiB, V8 lets its young generation grow to 2 × 64 MiB while a
// job allocates quickly (COPY chunks, batch bodies, gzip), and never gives it back: that was ≈ 100 MiB of the
// agent's RSS during and after a job. 16 MiB semi-spaces keep it at 32 MiB at no measurable cost in time.
// The flag must be set before V8 starts, so the process replaces itself once (same pid, same stdio) with it in
// NODE_OPTIONS. CDC_AGENT_SEMI_SPACE_MB=0, or a --max-semi-space-size already given, leaves V8's default.
/* eslint-disable no-restricted-properties -- the CLI entry itself: a V8 flag must be in place before V8 starts */
const SEMI = '--max-semi-space-size';
const semiMb = process.env.CDC_AGENT_SEMI_SPACE_MB ?? '16';
const given = process.execArgv.some((a) => a.startsWith(SEMI)) || (process.env.NODE_OPTIONS ?? '').includes(SEMI);
if (!given && /^[1-9]\d*$/.test(semiMb) && typeof process.execve === 'function') {
  const nodeOptions = `${process.env.NODE_OPTIONS ?? ''} ${SEMI}=${semiMb}`.trim();
  try {
    process.execve(process.execPath, [process.execPath, ...process.execArgv, ...process.argv.slice(1)], { ...process.env, NODE_OPTIONS: nodeOptions });
  } catch {
    // execve unavailable or refused: run with V8's default sizing.
  }
}
/* eslint-enable no-restricted-properties */

const { main } = await import('../src/cli/main.ts');
process.exitCode = await main(process.argv);
