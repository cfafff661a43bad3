/**
 * `cdc-agent demo`: a generated two-tenant legacy estate on an embedded PostgreSQL, the reference receiver on
 * a free loopback port, and the agent, in one process: onboard both tenants with live progress, apply a wave
 * of changes at the sources, sync incrementally, then prove every dataset at the receiver equals its source.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { stringify } from 'yaml';
import { AgentDaemon } from '../agent/daemon.ts';
import { followJobs, type Followed } from '../agent/progress.ts';
import { SourceConnections } from '../agent/connections.ts';
import { compileConfig } from '../config/load.ts';
import { SecretResolver } from '../config/secrets.ts';
import { connect } from '../dialect/connect.ts';
import type { Db } from '../dialect/types.ts';
import type { ConnectionConfig } from '../config/schema.ts';
import { migrate } from '../migrations/migrate.ts';
import { createJobQueue } from '../queue-table/queue.ts';
import { startReceiver } from '../receiver/server.ts';
import { introspectSource } from '../snapshot/introspect.ts';
import { createLogger } from '../telemetry/logger.ts';
import { startEmbeddedPostgres } from './embedded-postgres.ts';
import { createEstate, ESTATE_TABLES, mutateEstate } from './estate.ts';
import { verifyDataset } from './verify.ts';

export interface DemoOptions {
  /** Rows per tenant, spread over the five tables. */
  rows: number;
  keep: boolean;
  /** Share of rows changed before the incremental sync. */
  changeFraction: number;
  out: (line: string) => void;
  tty: boolean;
  /** Use this PostgreSQL server instead of starting an embedded one (tests). */
  postgresUrl?: string;
  /**
   * Build the tenants' legacy databases on this server instead (`mssql://…` for a SQL Server, or `postgres://…`): one
   * database per tenant is created there, and dropped when the demo ends.
   */
  sourceUrl?: string;
}

export interface DemoResult {
  ok: boolean;
  rows: Array<Record<string, string | number>>;
  configPath?: string;
}

const TENANTS = ['acme', 'globex'] as const;

function withDb(url: string, name: string): string {
  const u = new URL(url);
  u.pathname = `/${name}`;
  return u.toString();
}

/** Connections to the legacy server: its dialect, the schema its tables are in, and a connection to one database (null: the URL's own). */
function legacyConnection(url: string): { dialect: 'postgres' | 'mssql'; schema: string; connection: (database: string | null) => ConnectionConfig } {
  const scheme = new URL(url).protocol.replace(/:$/, '');
  const dialect = scheme === 'mssql' || scheme === 'sqlserver' ? 'mssql' : 'postgres';
  if (dialect === 'postgres' && scheme !== 'postgres' && scheme !== 'postgresql') {
    throw new Error(`--source-url must be a mssql:// or postgres:// URL, not ${scheme}://`);
  }
  return {
    dialect,
    schema: dialect === 'mssql' ? 'dbo' : 'public',
    connection: (database) =>
      dialect === 'mssql'
        ? { dialect: 'mssql', url: database ? withDb(url, database) : url, poolMax: 4, encrypt: true, trustServerCertificate: false, connectTimeout: 30_000, requestTimeout: 0 }
        : { dialect: 'postgres', url: database ? withDb(url, database) : url, poolMax: 4 },
  };
}

/** Drop a demo database; on SQL Server, other sessions are put out first (Babelfish has no ALTER DATABASE, and needs none). */
async function dropDatabase(admin: Db, name: string): Promise<void> {
  if (admin.dialect === 'postgres') {
    await admin.execute(`DROP DATABASE IF EXISTS ${admin.quote(name)} WITH (FORCE)`).catch(() => {});
    return;
  }
  await admin.execute(`ALTER DATABASE ${admin.quote(name)} SET SINGLE_USER WITH ROLLBACK IMMEDIATE`).catch(() => {});
  await admin.execute(`DROP DATABASE ${admin.quote(name)}`).catch(() => {});
}

export async function runDemo(options: DemoOptions): Promise<DemoResult> {
  const out = options.out;
  const dir = await mkdtemp(path.join(tmpdir(), 'cdc-demo-'));
  const cleanups: Array<() => Promise<unknown>> = [];
  const started = Date.now();
  try {
    out(`Starting ${options.postgresUrl ? 'PostgreSQL' : 'an embedded PostgreSQL'}…`);
    let adminUrl = options.postgresUrl;
    if (!adminUrl) {
      const pg = await startEmbeddedPostgres({ label: 'demo', settings: { fsync: 'off', synchronous_commit: 'off', max_connections: '200' } });
      cleanups.push(() => pg.stop());
      adminUrl = pg.url;
    }
    const suffix = randomBytes(3).toString('hex');
    const names: Record<string, string> = { control: `demo_control_${suffix}`, receiver: `demo_receiver_${suffix}` };
    for (const t of TENANTS) names[t] = `demo_legacy_${t}_${suffix}`;
    const admin = await connect({ dialect: 'postgres', url: adminUrl, poolMax: 2 });
    const here = options.sourceUrl ? [names.control!, names.receiver!] : Object.values(names);
    for (const name of here) await admin.execute(`CREATE DATABASE ${admin.quote(name)}`);
    cleanups.push(async () => {
      for (const name of here) await admin.execute(`DROP DATABASE IF EXISTS ${admin.quote(name)} WITH (FORCE)`).catch(() => {});
      await admin.close();
    });

    // The tenants' legacy databases: on the same PostgreSQL, or on the server --source-url names.
    const source = legacyConnection(options.sourceUrl ?? adminUrl);
    if (options.sourceUrl) {
      out(`Creating the tenants' legacy databases on ${source.dialect === 'mssql' ? 'SQL Server' : 'PostgreSQL'} at ${new URL(options.sourceUrl).host}…`);
      const sourceAdmin = await connect({ ...source.connection(null), poolMax: 1 });
      const created: string[] = [];
      cleanups.push(async () => {
        for (const name of created) await dropDatabase(sourceAdmin, name);
        await sourceAdmin.close();
      });
      for (const t of TENANTS) {
        await sourceAdmin.execute(`CREATE DATABASE ${sourceAdmin.quote(names[t]!)}`);
        created.push(names[t]!);
      }
    }

    out(`Generating the legacy estate: ${TENANTS.length} tenants × ${ESTATE_TABLES.length} tables, ${options.rows.toLocaleString('en')} rows per tenant…`);
    const legacy = new Map<string, Db>();
    for (const [i, tenant] of TENANTS.entries()) {
      const db = await connect(source.connection(names[tenant]!));
      legacy.set(tenant, db);
      // Closed before its database is dropped (cleanups run in reverse).
      cleanups.push(() => db.close());
      await createEstate(db, options.rows, 17 + i);
    }

    const tokens = Object.fromEntries(TENANTS.map((t) => [t, `demo-token-${t}-${randomBytes(6).toString('hex')}`]));
    const receiver = await startReceiver({ port: 0, host: '127.0.0.1', db: withDb(adminUrl, names.receiver!), tokens });
    cleanups.push(() => receiver.close());
    out(`Reference receiver listening on ${receiver.url}`);

    const rawConfig = {
      control: { dialect: 'postgres', url: withDb(adminUrl, names.control!), poolMax: 12 },
      worker: { concurrency: 2, leaseSeconds: 30, pollInterval: '200ms', healthPort: 0 },
      telemetry: { logLevel: 'warn' },
      tenants: TENANTS.map((tenant) => ({
        id: tenant,
        push: { url: receiver.url, token: tokens[tenant], maxInFlight: 4 },
        connections: { legacy: source.connection(names[tenant]!) },
        sources: ESTATE_TABLES.map((t) => ({ id: t.id, connection: 'legacy', table: `${source.schema}.${t.id}`, every: '1h', batch: { maxRows: 5000, maxBytes: 4 * 1024 * 1024 } })),
      })),
    };
    const configPath = path.join(dir, 'cdc-agent.yaml');
    await writeFile(configPath, stringify(rawConfig));
    const config = compileConfig(rawConfig, configPath);
    const secrets = new SecretResolver([]);
    for (const token of Object.values(tokens)) secrets.remember(token);
    const log = createLogger({ level: 'warn', secrets: () => secrets.values() });

    const controlDb = await connect(config.control);
    cleanups.push(() => controlDb.close());
    await migrate(controlDb);
    const queue = createJobQueue(controlDb);
    const sources = new SourceConnections(config);
    cleanups.push(() => sources.closeAll());
    const daemon = new AgentDaemon({ config, controlDb, queue, sources, log, schedule: false, healthHost: '127.0.0.1' });
    await daemon.start();
    cleanups.push(() => daemon.stop('demo finished'));

    const syncAll = async (kind: 'initial' | 'incremental', label: string) => {
      out(label);
      const followed: Followed[] = [];
      for (const tenant of config.tenants) {
        for (const source of tenant.sources) {
          const r = await queue.enqueue({ tenant: tenant.id, source: source.id, kind, priority: kind === 'initial' ? 100 : 0 });
          followed.push({ tenant: tenant.id, source: source.id, jobId: (r.jobId ?? r.existingJobId)! });
        }
      }
      const t0 = Date.now();
      const result = await followJobs(queue, followed, { tty: options.tty, write: out, pollMs: 250 });
      return { result, ms: Date.now() - t0 };
    };

    const onboard = await syncAll('initial', 'Onboarding both tenants (initial sync of every table)…');
    for (const tenant of TENANTS) await mutateEstate(legacy.get(tenant)!, options.changeFraction);
    const incremental = await syncAll('incremental', `Applied a wave of inserts, updates and deletes (~${options.changeFraction * 100}% per table); syncing incrementally…`);

    out('Verifying every dataset at the receiver against its source…');
    const runs = await controlDb.query<{ tenant_id: string; source_id: string; mode: string; upserts: string | null; deletes: string | null; batches: number | null; source_rows: string | null; ms: string }>(
      `SELECT tenant_id, source_id, mode, upserts::text, deletes::text, batches, source_rows::text,
              (EXTRACT(EPOCH FROM (finished_at - started_at)) * 1000)::bigint::text AS ms
         FROM cdc_runs WHERE status = 'succeeded' ORDER BY tenant_id, source_id, started_at`,
    );
    const rows: DemoResult['rows'] = [];
    let ok = onboard.result.failed.length === 0 && incremental.result.failed.length === 0;
    for (const f of [...onboard.result.failed, ...incremental.result.failed]) out(`FAILED ${f.tenant}/${f.source}: ${f.error}`);
    for (const tenant of config.tenants) {
      const db = legacy.get(tenant.id)!;
      for (const source of tenant.sources) {
        const schema = await introspectSource(db, tenant.id, source);
        const v = await verifyDataset({ sourceDb: db, from: { table: source.table! }, schema, receiverUrl: receiver.url, tenant: tenant.id, dataset: source.id, token: tokens[tenant.id]! });
        ok &&= v.ok;
        const mine = runs.filter((r) => r.tenant_id === tenant.id && r.source_id === source.id);
        const first = mine.find((r) => r.mode === 'initial');
        const second = mine.find((r) => r.mode === 'incremental');
        const initialMs = Number(first?.ms ?? 0);
        rows.push({
          tenant: tenant.id,
          dataset: source.id,
          rows: v.sourceRows,
          'initial s': (initialMs / 1000).toFixed(2),
          'rows/s': initialMs > 0 ? Math.round((Number(first?.source_rows ?? 0) * 1000) / initialMs) : '-',
          upserts: Number(second?.upserts ?? 0),
          deletes: Number(second?.deletes ?? 0),
          batches: Number(first?.batches ?? 0) + Number(second?.batches ?? 0),
          'incr s': (Number(second?.ms ?? 0) / 1000).toFixed(2),
          verified: v.ok ? '✓' : '✗',
        });
        if (!v.ok) out(`✗ ${tenant.id}/${source.id}: source ${v.sourceRows} rows, receiver ${v.receiverRows}; first difference: ${JSON.stringify(v.firstDifference)}`);
      }
    }
    out(`Onboarding took ${(onboard.ms / 1000).toFixed(1)} s, the incremental sync ${(incremental.ms / 1000).toFixed(1)} s; demo total ${((Date.now() - started) / 1000).toFixed(1)} s.`);
    if (options.keep) {
      out('');
      out('--keep: everything stays up until you press Ctrl+C. Try, in another terminal:');
      out(`  export CDC_AGENT_CONFIG=${configPath}`);
      out('  npx cdc-agent status');
      out('  npx cdc-agent sync --tenant acme --wait');
      out(`Receiver: ${receiver.url}/tenants/acme/datasets/customers/stats  (Authorization: Bearer ${tokens.acme})`);
      await new Promise<void>((resolve) => {
        process.once('SIGINT', () => resolve());
        process.once('SIGTERM', () => resolve());
      });
    }
    return { ok, rows, configPath };
  } finally {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
    await rm(dir, { recursive: true, force: true }).catch(() => {});
  }
}
