/**
 * bin/cdc-agent.js re-executes itself once (same pid) with the memory settings that must be in place before the
 * process starts: V8's semi-space size in NODE_OPTIONS and glibc's MALLOC_ARENA_MAX (see the comment there).
 */
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.ts';

// A preload that reports, as each process image exits, the environment it ran with.
let preload = '';
beforeAll(async () => {
  preload = path.join(await mkdtemp(path.join(tmpdir(), 'cdc-entry-')), 'report.cjs');
  await writeFile(
    preload,
    "process.on('exit', () => process.stderr.write(`IMAGE ${JSON.stringify({ pid: process.pid, arena: process.env.MALLOC_ARENA_MAX ?? null, options: process.env.NODE_OPTIONS ?? null })}\\n`));\n",
  );
});

async function images(env: Record<string, string>): Promise<Array<{ pid: number; arena: string | null; options: string | null }>> {
  const result = await runCli(['--help'], { env: { NODE_OPTIONS: `--require ${preload}`, ...env } });
  expect(result.code).toBe(0);
  return result.stderr
    .split('\n')
    .filter((line) => line.startsWith('IMAGE '))
    .map((line) => JSON.parse(line.slice(6)) as { pid: number; arena: string | null; options: string | null });
}

describe.skipIf(process.platform !== 'linux')('cdc-agent entry script', () => {
  it('runs with 16 MiB semi-spaces and two malloc arenas, re-executed once in the same process', async () => {
    const ran = await images({});
    const last = ran.at(-1)!;
    expect(last.arena).toBe(process.env.MALLOC_ARENA_MAX ?? '2'); // one set around the tests is kept
    expect(last.options).toContain('--max-semi-space-size=16');
    expect(new Set(ran.map((r) => r.pid)).size).toBe(1);
  });

  it('keeps a MALLOC_ARENA_MAX and a semi-space choice given by the operator', async () => {
    const ran = await images({ MALLOC_ARENA_MAX: '4', CDC_AGENT_SEMI_SPACE_MB: '0' });
    expect(ran).toHaveLength(1); // nothing to change: no re-execution
    expect(ran[0]!.arena).toBe('4');
    expect(ran[0]!.options).not.toContain('--max-semi-space-size');
  });
});
