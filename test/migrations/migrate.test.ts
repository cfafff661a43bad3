import { afterAll, beforeAll, expect, it } from 'vitest';
import { connect } from '../../src/dialect/connect.ts';
import { assertSchemaUsable, loadMigrations, migrate, migrationStatus } from '../../src/migrations/migrate.ts';
import { SchemaTooNewError } from '../../src/errors/errors.ts';
import { runCli, writeConfig } from '../support/cli.ts';
import { createTestDatabase, describeEachDialect, type TestDatabase } from '../support/databases.ts';

describeEachDialect('migrations', (dialect) => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await createTestDatabase(dialect, 'migrate');
  });
  afterAll(async () => {
    await t?.drop();
  });

  it('two concurrent `cdc-agent migrate` processes both exit 0 and apply each migration once', async () => {
    const config = await writeConfig({ control: t.config });
    const [a, b] = await Promise.all([runCli(['--config', config, 'migrate']), runCli(['--config', config, 'migrate'])]);
    expect([a.code, b.code, a.stderr + b.stderr]).toEqual([0, 0, expect.any(String)]);
    const known = await loadMigrations(dialect);
    const rows = await t.db.query<{ id: number }>('SELECT id FROM cdc_migrations ORDER BY id');
    expect(rows.map((r) => r.id)).toEqual(known.map((m) => m.id));
    // each migration was applied by exactly one of the two processes
    const appliedLines = `${a.stderr}\n${b.stderr}`.split('\n').filter((l) => l.startsWith('applied '));
    expect(appliedLines.sort()).toEqual(known.map((m) => `applied ${m.name}`).sort());
    expect(await migrationStatus(t.db)).toMatchObject({ current: known.length, pending: [] });
  });

  it('is a no-op when the schema is current', async () => {
    expect((await migrate(t.db)).applied).toEqual([]);
    const again = await runCli(['--config', await writeConfig({ control: t.config }), 'migrate']);
    expect(again.stdout).toContain('Control database is up to date');
  });

  it('refuses to run against a schema newer than itself, saying so', async () => {
    const latest = (await loadMigrations(dialect)).length;
    await t.db.execute(`INSERT INTO cdc_migrations (id, name) VALUES (${t.db.param(1)}, ${t.db.param(2)})`, [latest + 1, '999999_from_the_future']);
    try {
      await expect(assertSchemaUsable(t.db)).rejects.toBeInstanceOf(SchemaTooNewError);
      const result = await runCli(['--config', await writeConfig({ control: t.config }), 'migrate']);
      expect(result.code).toBe(1);
      expect(result.stderr).toContain(`schema is at migration ${latest + 1}, newer than this agent knows (${latest})`);
    } finally {
      await t.db.execute(`DELETE FROM cdc_migrations WHERE id = ${t.db.param(1)}`, [latest + 1]);
    }
  });

  it('a second pool sees the applied schema', async () => {
    const other = await connect(t.config);
    try {
      expect((await assertSchemaUsable(other)).pending).toEqual([]);
    } finally {
      await other.close();
    }
  });
});
