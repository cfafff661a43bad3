/** The one-command demo (issue 7), at a tiny size, exactly as a user runs it: its own embedded PostgreSQL. */
import { describe, expect, inject, it } from 'vitest';
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

  // The mission's own source: the estate built in SQL Server by T-SQL (src/demo/estate-mssql.ts), the rest as usual.
  const mssqlSkip = inject('mssqlSkipReason');
  (mssqlSkip ? it.skip : it)(`builds its estate on a SQL Server source given by --source-url, verifies every dataset and drops what it made${mssqlSkip ? ` (skipped: ${mssqlSkip})` : ''}`, async () => {
    const url = inject('mssqlAdminUrl')!;
    const result = await runCli(['demo', '--rows', '400', '--postgres-url', inject('pgAdminUrl'), '--source-url', url], { timeoutMs: 240_000 });
    expect(result.stderr).toContain(`Creating the tenants' legacy databases on SQL Server at ${new URL(url).host}`);
    expect(result.stdout).toContain('Every dataset at the receiver equals its source ✓');
    const rows = result.stdout.split('\n').filter((l) => /^(acme|globex)\s/.test(l));
    expect(rows).toHaveLength(10);
    for (const row of rows) expect(row.trimEnd().endsWith('✓')).toBe(true);
    expect(result.code).toBe(0);
    const { connect } = await import('../../src/dialect/connect.ts');
    const { adminConnection } = await import('../support/databases.ts');
    const admin = await connect(adminConnection('mssql'));
    try {
      expect(await admin.query(`SELECT name FROM sys.databases WHERE name LIKE 'demo[_]legacy[_]%'`)).toEqual([]);
    } finally {
      await admin.close();
    }
  }, 300_000);

  it('rejects nonsense sizes as a usage error (exit 2) with a message', async () => {
    const result = await runCli(['demo', '--rows', 'many']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("option '--rows <n>' argument 'many' is invalid. must be a whole number of at least 50");
  });
});
