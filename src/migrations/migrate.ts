/**
 * Numbered, append-only migrations per dialect (sql/migrations/<dialect>/NNNNNN_name.sql), applied under a
 * database lock so that replicas starting together are safe: each migration runs in its own transaction
 * that first takes the lock, then records the migration row, then applies it (STYLE: SQL).
 */
import { readdir, readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { SchemaTooNewError } from '../errors/errors.ts';
import type { Db, DialectName, Queryable } from '../dialect/types.ts';

export interface Migration {
  id: number;
  name: string;
  /** Statements; SQL Server files are split on `GO` lines. */
  statements: string[];
}

export interface MigrationStatus {
  /** Highest migration id applied in the database (0 when none). */
  current: number;
  /** Highest migration id this build knows. */
  latest: number;
  pending: number[];
}

const MIGRATIONS_DIR = fileURLToPath(new URL('../../sql/migrations/', import.meta.url));
const LOCK_NAME = 'cdc-sync-agent:migrate';
/** Arbitrary but fixed key for pg_advisory_xact_lock: the first 8 bytes of the lock name. */
const PG_LOCK_KEY = 0x6364632d73796e63n;

/** The files ship with the build and never change while it runs: read once per dialect (readiness asks often). */
const loaded = new Map<string, Promise<Migration[]>>();

export function loadMigrations(dialect: DialectName, dir = MIGRATIONS_DIR): Promise<Migration[]> {
  const key = `${dir}\u0000${dialect}`;
  let migrations = loaded.get(key);
  if (!migrations) {
    migrations = readMigrations(dialect, dir);
    migrations.catch(() => loaded.delete(key));
    loaded.set(key, migrations);
  }
  return migrations;
}

async function readMigrations(dialect: DialectName, dir: string): Promise<Migration[]> {
  const folder = `${dir}${dialect}`;
  const files = (await readdir(folder)).filter((f) => /^\d{6}_[a-z0-9_]+\.sql$/.test(f)).sort();
  const migrations: Migration[] = [];
  for (const file of files) {
    const text = await readFile(`${folder}/${file}`, 'utf8');
    const statements = (dialect === 'mssql' ? text.split(/^\s*GO\s*$/im) : [text]).map((s) => s.trim()).filter((s) => s.length > 0);
    migrations.push({ id: Number(file.slice(0, 6)), name: file.replace(/\.sql$/, ''), statements });
  }
  migrations.forEach((m, i) => {
    if (m.id !== i + 1) throw new Error(`Migration files for ${dialect} must be numbered 000001, 000002, … without gaps; found ${m.name}.`);
  });
  return migrations;
}

const CREATE_TABLE: Record<DialectName, string> = {
  postgres: `CREATE TABLE IF NOT EXISTS cdc_migrations (
    id integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
  mssql: `IF OBJECT_ID(N'dbo.cdc_migrations', N'U') IS NULL CREATE TABLE dbo.cdc_migrations (
    id int NOT NULL PRIMARY KEY, name nvarchar(200) NOT NULL, applied_at datetime2(3) NOT NULL DEFAULT SYSUTCDATETIME())`,
};

async function lock(tx: Queryable, dialect: DialectName): Promise<void> {
  if (dialect === 'postgres') {
    await tx.query('SELECT pg_advisory_xact_lock($1)', [PG_LOCK_KEY]);
    return;
  }
  // sp_getapplock returns < 0 when the lock was not granted (timeout, deadlock, cancel).
  const rows = await tx.query<{ result: number }>(
    `DECLARE @r int; EXEC @r = sp_getapplock @Resource = @p1, @LockMode = 'Exclusive', @LockOwner = 'Transaction', @LockTimeout = 120000; SELECT @r AS result`,
    [LOCK_NAME],
  );
  const result = rows[0]?.result ?? -999;
  if (result < 0) throw new Error(`Could not take the migration lock (sp_getapplock returned ${result}); another replica may be migrating.`);
}

async function currentVersion(db: Queryable, dialect: DialectName): Promise<number> {
  const exists = await db.query<{ n: number }>(
    dialect === 'postgres'
      ? `SELECT count(*)::int AS n FROM pg_catalog.pg_tables WHERE tablename = 'cdc_migrations' AND schemaname = current_schema()`
      : `SELECT COUNT(*) AS n FROM sys.tables WHERE name = 'cdc_migrations' AND schema_id = SCHEMA_ID('dbo')`,
  );
  if ((exists[0]?.n ?? 0) === 0) return 0;
  const rows = await db.query<{ v: number | null }>('SELECT MAX(id) AS v FROM cdc_migrations');
  return Number(rows[0]?.v ?? 0);
}

export async function migrationStatus(db: Db, migrations?: Migration[]): Promise<MigrationStatus> {
  const known = migrations ?? (await loadMigrations(db.dialect));
  const current = await currentVersion(db, db.dialect);
  const latest = known.length;
  return { current, latest, pending: known.filter((m) => m.id > current).map((m) => m.id) };
}

function tooNew(current: number, latest: number): SchemaTooNewError {
  return new SchemaTooNewError(
    `The control database schema is at migration ${current}, newer than this agent knows (${latest}). ` +
      'Another replica runs a newer version: upgrade this agent rather than running it against that database.',
  );
}

/** Refuse to run against a schema newer than this build; report pending migrations. */
export async function assertSchemaUsable(db: Db): Promise<MigrationStatus> {
  const status = await migrationStatus(db);
  if (status.current > status.latest) throw tooNew(status.current, status.latest);
  return status;
}

export interface MigrateResult {
  applied: string[];
  current: number;
}

export async function migrate(db: Db, options: { onApply?: (name: string) => void } = {}): Promise<MigrateResult> {
  const migrations = await loadMigrations(db.dialect);
  const applied: string[] = [];
  await db.transaction(async (tx) => {
    await lock(tx, db.dialect);
    await tx.execute(CREATE_TABLE[db.dialect]);
  });
  for (const migration of migrations) {
    const didApply = await db.transaction(async (tx) => {
      await lock(tx, db.dialect);
      const current = await currentVersion(tx, db.dialect);
      if (current > migrations.length) throw tooNew(current, migrations.length);
      if (current >= migration.id) return false;
      // The row first: a concurrent migrator that somehow got past the lock fails on the primary key.
      await tx.execute(`INSERT INTO cdc_migrations (id, name) VALUES (${db.param(1)}, ${db.param(2)})`, [migration.id, migration.name]);
      for (const statement of migration.statements) await tx.execute(statement);
      return true;
    });
    if (didApply) {
      applied.push(migration.name);
      options.onApply?.(migration.name);
    }
  }
  const status = await migrationStatus(db, migrations);
  if (status.current > status.latest) throw tooNew(status.current, status.latest);
  return { applied, current: status.current };
}
