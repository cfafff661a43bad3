/**
 * docs/sql-server.md's setup T-SQL, run against the test suite's SQL Server (skipped, with the reason, where none
 * runs): the source login can read and cannot write, the control login can migrate and run the agent's tables,
 * the KEDA login reads the job table and nothing else. So the page cannot rot.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { connect } from '../../src/dialect/connect.ts';
import type { Db } from '../../src/dialect/types.ts';
import { migrate } from '../../src/migrations/migrate.ts';
import { adminConnection, babelfishGap, createTestDatabase, dialectsUnderTest, itUnless, withDatabase, type TestDatabase } from '../support/databases.ts';

const DOC = readFileSync(new URL('../../docs/sql-server.md', import.meta.url), 'utf8');

/** The statements of the doc's ```sql setup-NAME block, with its placeholders filled. */
function setup(name: string, values: Record<string, string>): string[] {
  const m = new RegExp('```sql setup-' + name + '\\n([\\s\\S]*?)```').exec(DOC);
  if (!m) throw new Error(`docs/sql-server.md has no setup-${name} block`);
  const text = m[1]!.replace(/<(\w+)>/g, (_, key: string) => {
    if (values[key] === undefined) throw new Error(`setup-${name}: no value for <${key}>`);
    return values[key];
  });
  return text.split(/;\s*\n/).map((s) => s.trim()).filter(Boolean);
}

const mssql = dialectsUnderTest().find((d) => d.dialect === 'mssql')!;
const suite = mssql.skipReason ? describe.skip : describe;
const title = `docs/sql-server.md setup T-SQL [mssql]${mssql.skipReason ? ` (skipped: ${mssql.skipReason})` : ''}`;

suite(title, () => {
  let t: TestDatabase;
  let admin: Db;
  const logins: string[] = [];
  const password = `Cdc-${randomBytes(12).toString('hex')}!`;
  const login = (what: string) => {
    const name = `cdc_${what}_${randomBytes(3).toString('hex')}`;
    logins.push(name);
    return name;
  };
  const as = (name: string) => {
    const url = new URL((withDatabase(adminConnection('mssql'), t.name) as { url: string }).url);
    url.username = encodeURIComponent(name);
    url.password = encodeURIComponent(password);
    return connect({ ...adminConnection('mssql'), url: url.toString(), poolMax: 2 });
  };
  const runIn = async (db: Db, statements: string[]) => {
    for (const s of statements) await db.execute(s);
  };

  beforeAll(async () => {
    t = await createTestDatabase('mssql', 'sqlserver_doc');
    admin = await connect(adminConnection('mssql'));
  });
  afterAll(async () => {
    await t?.drop();
    for (const name of logins) await admin?.execute(`IF SUSER_ID(N'${name}') IS NOT NULL DROP LOGIN [${name}]`).catch(() => {});
    await admin?.close();
  });

  it('the source login reads and cannot write', async () => {
    const isBabelfish = inject('mssqlIsBabelfish');
    await t.db.execute('CREATE TABLE dbo.Orders (OrderID int NOT NULL PRIMARY KEY, Note nvarchar(20) NULL); INSERT INTO dbo.Orders VALUES (1, N\'one\')');
    const name = login('reader');
    // CREATE LOGIN is server-level: run in the test database, as the doc says, with the admin's rights
    await runIn(t.db, setup('source', { login: name, password }));
    const reader = await as(name);
    try {
      expect(await reader.query('SELECT OrderID, Note FROM dbo.Orders')).toEqual([{ OrderID: 1, Note: 'one' }]);
      const cols = await reader.query(`SELECT c.name FROM sys.columns AS c WHERE c.object_id = OBJECT_ID(N'dbo.Orders') ORDER BY c.column_id`);
      // Babelfish reports unquoted names lower-cased in sys.columns (a gap; SQL Server keeps their case)
      expect(cols.map((c) => (isBabelfish ? String(c.name) : c.name))).toEqual(isBabelfish ? ['orderid', 'note'] : ['OrderID', 'Note']);
      await expect(reader.execute(`INSERT INTO dbo.Orders VALUES (2, N'two')`)).rejects.toThrow(/permission|denied/i);
    } finally {
      await reader.close();
    }
  });

  itUnless(babelfishGap('mssql', 'no-db-ddladmin'))('the control login migrates and writes the agent\'s tables; the KEDA login reads only the job table', async () => {
    const isBabelfish = inject('mssqlIsBabelfish');
    const control = login('agent');
    let statements = setup('control', { database: t.name, login: control, password });
    // Babelfish gap: ALTER DATABASE … SET READ_COMMITTED_SNAPSHOT is not supported (its READ COMMITTED is MVCC anyway)
    // Babelfish gap: no ALTER DATABASE … SET READ_COMMITTED_SNAPSHOT (its READ COMMITTED is MVCC anyway)
    if (isBabelfish) statements = statements.filter((s) => !s.startsWith('ALTER DATABASE'));
    // ALTER DATABASE must be the database's only session: from master, as an operator would
    await runIn(admin, statements.filter((s) => s.startsWith('ALTER DATABASE')));
    await runIn(t.db, statements.filter((s) => !s.startsWith('ALTER DATABASE')));
    const agent = await as(control);
    try {
      const result = await migrate(agent);
      expect(result.current).toBeGreaterThanOrEqual(3);
      await agent.execute(`INSERT INTO dbo.cdc_jobs (tenant_id, source_id, kind) VALUES (N'acme', N'orders', N'initial')`);
      await agent.execute('CREATE TABLE dbo.cdc_scratch_probe (id int NOT NULL); TRUNCATE TABLE dbo.cdc_scratch_probe; DROP TABLE dbo.cdc_scratch_probe');
    } finally {
      await agent.close();
    }
    const keda = login('keda');
    await runIn(t.db, setup('keda', { login: keda, password }));
    const reader = await as(keda);
    try {
      expect(await reader.query(`SELECT COUNT(*) AS n FROM dbo.cdc_jobs WHERE status = N'queued'`)).toEqual([{ n: 1 }]);
      await expect(reader.query('SELECT COUNT(*) AS n FROM dbo.cdc_runs')).rejects.toThrow(/permission|denied/i);
    } finally {
      await reader.close();
    }
  });
});
