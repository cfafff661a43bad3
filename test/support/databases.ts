/**
 * Per-file test databases on the servers that global-setup started. Each test file gets its own
 * database, so files run in parallel without seeing each other's rows.
 */
import { randomBytes } from 'node:crypto';
import { describe, inject, it } from 'vitest';
import type { ConnectionConfig } from '../../src/config/schema.ts';
import { connect } from '../../src/dialect/connect.ts';
import type { Db, DialectName } from '../../src/dialect/types.ts';

export interface DialectUnderTest {
  dialect: DialectName;
  /** Why this dialect's suite is skipped here, or null when its server runs. */
  skipReason: string | null;
}

export function dialectsUnderTest(): DialectUnderTest[] {
  return [
    { dialect: 'postgres', skipReason: null },
    { dialect: 'mssql', skipReason: inject('mssqlSkipReason') },
  ];
}

/**
 * `describe.each` over both dialects; a dialect without a server is reported as skipped, with the
 * reason in the suite's title, never as passed.
 */
export function describeEachDialect(title: string, body: (dialect: DialectName) => void): void {
  for (const d of dialectsUnderTest()) {
    if (d.skipReason) describe.skip(`${title} [${d.dialect}] (skipped: ${d.skipReason})`, () => body(d.dialect));
    else describe(`${title} [${d.dialect}]`, () => body(d.dialect));
  }
}

/**
 * Babelfish's known gaps (docs/sql-server.md "Babelfish"): a test that meets one is skipped there with the gap in
 * its title, and runs everywhere else. `it.skipIf(babelfishGap(dialect, 'no-readpast'))(…)`.
 */
export const BABELFISH_GAPS = {
  'no-readpast': 'Babelfish parses READPAST/UPDLOCK/ROWLOCK/READCOMMITTEDLOCK and ignores them, so concurrent claimers block',
  'no-rcsi': 'Babelfish does not support ALTER DATABASE … SET READ_COMMITTED_SNAPSHOT (its READ COMMITTED is MVCC)',
  'bracket-escape': 'Babelfish refuses "]]" inside a bracketed identifier',
  'datetime2-7': 'Babelfish stores datetime2(7) at 6 fractional digits',
  'no-hierarchyid': 'Babelfish has no hierarchyid',
  'rowversion': 'Babelfish needs an escape hatch for ROWVERSION columns and has no MIN_ACTIVE_ROWVERSION()',
  'alter-column-null': 'Babelfish does not support ALTER TABLE … ALTER COLUMN … NULL',
  'error-208': 'Babelfish raises a generic error number for a missing table instead of 208',
  'lowercase-catalog': 'Babelfish reports unquoted names lower-cased in sys.columns',
  'slow-claim-backlog': 'Babelfish takes over 20 s for the claim over a 1,000-job backlog (2.2 s over 300), with or without its hints',
  'no-db-ddladmin': 'Babelfish has no db_ddladmin role, and cannot add members to db_owner',
} as const;

export function babelfishGap(dialects: DialectName | readonly DialectName[], gap: keyof typeof BABELFISH_GAPS): string | false {
  const any = (typeof dialects === 'string' ? [dialects] : dialects).includes('mssql');
  return any && inject('mssqlIsBabelfish') ? `skipped on Babelfish: ${BABELFISH_GAPS[gap]}` : false;
}

/** `it`, or `it.skip` with the gap in the title when the test meets a Babelfish gap here. */
export function itUnless(gap: string | false): (title: string, fn: () => Promise<void>, timeout?: number) => void {
  return gap ? (title, fn, timeout) => it.skip(`${title} (${gap})`, fn, timeout) : (title, fn, timeout) => it(title, fn, timeout);
}

export function adminConnection(dialect: DialectName): ConnectionConfig {
  if (dialect === 'postgres') return { dialect: 'postgres', url: inject('pgAdminUrl'), poolMax: 2 };
  const url = inject('mssqlAdminUrl');
  if (!url) throw new Error(inject('mssqlSkipReason') ?? 'no SQL Server');
  return { dialect: 'mssql', url, encrypt: true, trustServerCertificate: true, poolMax: 2, connectTimeout: 30_000, requestTimeout: 120_000 };
}

export function withDatabase(config: ConnectionConfig, database: string, poolMax = 10): ConnectionConfig {
  if (config.dialect === 'postgres') {
    const url = new URL(config.url!);
    url.pathname = `/${database}`;
    return { ...config, url: url.toString(), poolMax };
  }
  const url = new URL(config.url!);
  url.pathname = `/${database}`;
  return { ...config, url: url.toString(), poolMax };
}

export interface TestDatabase {
  dialect: DialectName;
  name: string;
  config: ConnectionConfig;
  /** A URL for CLI processes and configuration files. */
  url: string;
  db: Db;
  drop(): Promise<void>;
}

/** A fresh, empty database on the dialect's test server. Call `drop()` in afterAll. */
/**
 * A CREATE or DROP DATABASE on Babelfish, tried again while its catalog refuses it beside another test file's
 * ("tuple concurrently updated"; a drop met it once in the 42-file run).
 */
async function babelfishCatalog(statement: () => Promise<unknown>): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await statement();
      return;
    } catch (error) {
      if (attempt >= 20 || !/concurrently|deadlock|could not serialize/i.test(String(error instanceof Error ? error.message : error))) throw error;
      await new Promise((r) => setTimeout(r, 100 + Math.random() * 400));
    }
  }
}

export async function createTestDatabase(dialect: DialectName, label: string, poolMax = 10): Promise<TestDatabase> {
  const name = `cdc_${label.replace(/[^a-z0-9]/gi, '_').toLowerCase().slice(0, 30)}_${randomBytes(4).toString('hex')}`;
  const adminConfig = adminConnection(dialect);
  const admin = await connect(adminConfig);
  try {
    if (dialect === 'postgres') await admin.execute(`CREATE DATABASE ${admin.quote(name)}`);
    else if (inject('mssqlIsBabelfish')) {
      // It has no RCSI setting (its READ COMMITTED is PostgreSQL's MVCC already).
      await babelfishCatalog(() => admin.execute(`CREATE DATABASE ${admin.quote(name)}`));
    } else {
      await admin.execute(`CREATE DATABASE ${admin.quote(name)}`);
      // The agent's claim query relies on READPAST working with RCSI on; test with it on.
      await admin.execute(`ALTER DATABASE ${admin.quote(name)} SET READ_COMMITTED_SNAPSHOT ON WITH ROLLBACK IMMEDIATE`);
    }
  } finally {
    await admin.close();
  }
  const config = withDatabase(adminConfig, name, poolMax);
  const db = await connect(config);
  return {
    dialect,
    name,
    config,
    url: (config as { url: string }).url,
    db,
    async drop() {
      await db.close().catch(() => {});
      const again = await connect(adminConfig);
      try {
        if (dialect === 'postgres') await again.execute(`DROP DATABASE IF EXISTS ${again.quote(name)} WITH (FORCE)`);
        // Babelfish has no ALTER DATABASE; this file's own connections are closed above.
        else if (inject('mssqlIsBabelfish')) await babelfishCatalog(() => again.execute(`DROP DATABASE ${again.quote(name)}`));
        else await again.execute(`ALTER DATABASE ${again.quote(name)} SET SINGLE_USER WITH ROLLBACK IMMEDIATE; DROP DATABASE ${again.quote(name)}`);
      } finally {
        await again.close();
      }
    },
  };
}
