/** The one-command demo (issue 7), at a tiny size, exactly as a user runs it: its own embedded PostgreSQL. */
import { describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.ts';

describe('cdc-agent demo', () => {
  it('onboards two tenants, syncs a wave of changes, verifies every dataset and exits 0', async () => {
    const result = await runCli(['demo', '--rows', '400'], { timeoutMs: 240_000 });
    expect(result.stderr).toContain('Onboarding both tenants');
    expect(result.stderr).toContain('syncing incrementally');
    expect(result.stdout).toContain('Every dataset at the receiver equals its source ✓');
    const rows = result.stdout.split('\n').filter((l) => /^(acme|globex)\s/.test(l));
    expect(rows).toHaveLength(10);
    for (const row of rows) expect(row.trimEnd().endsWith('✓')).toBe(true);
    expect(result.code).toBe(0);
  }, 300_000);

  it('rejects nonsense sizes as a usage error (exit 2) with a message', async () => {
    const result = await runCli(['demo', '--rows', 'many']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("option '--rows <n>' argument 'many' is invalid. must be a whole number of at least 50");
  });
});
