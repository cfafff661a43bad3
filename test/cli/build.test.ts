/**
 * The container image runs the compiled build: it holds bin/, dist/ (from `npm run build`), sql/ and the
 * production node_modules, and no src/. This lays out exactly that in a temporary directory and runs the
 * one-command demo through it, so a module the build leaves out, an import it does not rewrite or a file found
 * relative to src/ fails here rather than in a pod. (The image has no embedded PostgreSQL, a development
 * dependency, so the demo gets the tests' server.)
 */
import { execFile } from 'node:child_process';
import { cp, mkdtemp, readFile, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
let image = '';

async function cli(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [path.join(image, 'bin/cdc-agent.js'), ...args], {
      cwd: image,
      env: { ...process.env, CDC_AGENT_BUILD: '', ...env },
      timeout: 240_000,
      maxBuffer: 64 * 1024 * 1024,
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

beforeAll(async () => {
  image = await mkdtemp(path.join(tmpdir(), 'cdc-image-'));
  for (const entry of ['bin', 'sql', 'package.json']) await cp(path.join(ROOT, entry), path.join(image, entry), { recursive: true });
  await symlink(path.join(ROOT, 'node_modules'), path.join(image, 'node_modules'), 'dir');
});

afterAll(async () => {
  if (image) await rm(image, { recursive: true, force: true });
});

describe('cdc-agent from the compiled build (the image layout)', () => {
  it('asked for a build that is not there, says to run npm run build (exit 2)', async () => {
    const result = await cli(['--help'], { CDC_AGENT_BUILD: 'dist' });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('run `npm run build` first');
  });

  it('builds, then runs the demo end to end without the sources', async () => {
    await run(process.execPath, [path.join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', path.join(ROOT, 'tsconfig.build.json'), '--outDir', path.join(image, 'dist')], {
      timeout: 120_000,
    });
    // No CDC_AGENT_BUILD: without src/ the entry picks dist/ by itself, as in the image.
    const result = await cli(['demo', '--rows', '200', '--postgres-url', inject('pgAdminUrl')]);
    expect(result.stdout).toContain('Every dataset at the receiver equals its source ✓');
    expect(result.code).toBe(0);
  }, 300_000);
});

describe('Dockerfile and its build context', () => {
  it('copies only what .dockerignore lets into the context, and gives npm ci the .npmrc it needs', async () => {
    const dockerfile = await readFile(path.join(ROOT, 'Dockerfile'), 'utf8');
    const ignore = (await readFile(path.join(ROOT, '.dockerignore'), 'utf8')).split('\n').map((l) => l.trim());
    // The context starts empty ('*') and names what it admits ('!name' or '!name/').
    expect(ignore).toContain('*');
    const admitted = new Set(ignore.filter((l) => l.startsWith('!')).map((l) => l.slice(1).replace(/\/$/, '')));
    const sources = dockerfile
      .split('\n')
      .filter((l) => /^COPY\s/.test(l) && !l.includes('--from='))
      .flatMap((l) => l.trim().split(/\s+/).slice(1, -1));
    expect(sources.length).toBeGreaterThan(0);
    expect(sources.filter((source) => !admitted.has(source))).toEqual([]);
    // Every stage that runs npm ci has the repository's .npmrc (legacy-peer-deps): without it npm ci refuses the lockfile.
    const stages = dockerfile.split(/^FROM /m).slice(1);
    for (const stage of stages.filter((st) => st.includes('npm ci'))) expect(stage).toMatch(/^COPY [^\n]*\.npmrc/m);
  });
});
