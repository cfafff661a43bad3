/**
 * The agent operated end to end, in-process: control database, a legacy source, the reference receiver, the
 * daemon, Key Vault and Application Insights stubs over HTTPS. Syncs a source, survives a push-token rotation
 * (401 → refresh from Key Vault → retry), dead-letters on a token nobody has, and then checks what an
 * operator sees: structured logs with tenant/source/job/run ids, `/metrics`, Application Insights payloads and
 * `status --json`, with no secret value anywhere, nor in the errors kept in the control database.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { stringify } from 'yaml';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { AgentDaemon } from '../../src/agent/daemon.ts';
import { SourceConnections } from '../../src/agent/connections.ts';
import { followJobs } from '../../src/agent/progress.ts';
import { collectStatus } from '../../src/agent/status.ts';
import { loadConfig, type LoadedConfig } from '../../src/config/load.ts';
import { secretRotation } from '../../src/config/rotation.ts';
import { connect } from '../../src/dialect/connect.ts';
import type { Db, DialectName } from '../../src/dialect/types.ts';
import { migrate } from '../../src/migrations/migrate.ts';
import { createJobQueue, type JobQueue } from '../../src/queue-table/queue.ts';
import { startReceiver, type Receiver } from '../../src/receiver/server.ts';
import { AppInsightsSink } from '../../src/telemetry/app-insights.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { Telemetry } from '../../src/telemetry/metrics.ts';
import { PrometheusSink } from '../../src/telemetry/prometheus.ts';
import { createTestDatabase, describeEachDialect, type TestDatabase } from '../support/databases.ts';
import { startHttpsStub, startIngestionStub, type HttpsStub } from './https-stub.ts';

process.env.APPLICATIONINSIGHTS_STATSBEAT_DISABLED = 'true';

describeEachDialect('operating the agent: telemetry, rotation, redaction', (dialect: DialectName) => {
  const vaultSecrets = new Map<string, string>();
  const tokenV1 = `push-token-v1-${randomBytes(8).toString('hex')}`;
  const tokenV2 = `push-token-v2-${randomBytes(8).toString('hex')}`;
  const tokenV3 = `push-token-v3-${randomBytes(8).toString('hex')}`;
  const aiConnection = (url: string) => `InstrumentationKey=11111111-2222-3333-4444-${randomBytes(6).toString('hex')};IngestionEndpoint=${url}/`;
  let control: TestDatabase;
  let legacy: TestDatabase;
  let receiverDb: TestDatabase;
  let receiver: Receiver;
  let vault: HttpsStub;
  let ingestion: Awaited<ReturnType<typeof startIngestionStub>>;
  let dir: string;
  let loaded: LoadedConfig;
  let controlDb: Db;
  let queue: JobQueue;
  let sources: SourceConnections;
  let telemetry: Telemetry;
  let daemon: AgentDaemon;
  const tokens: Record<string, string> = {};
  const logLines: string[] = [];
  let appInsightsSecret = '';
  const table = dialect === 'postgres' ? 'public.orders' : 'dbo.orders';

  beforeAll(async () => {
    vault = await startHttpsStub((req) => {
      if (req.path === '/msi/token') return { status: 200, body: { access_token: 'kv-token', expires_on: String(Math.floor(Date.now() / 1000) + 3600), resource: req.query.get('resource'), token_type: 'Bearer' } };
      const match = /^\/secrets\/([A-Za-z0-9-]+)\/?$/.exec(req.path);
      if (!match) return undefined;
      if (req.headers.authorization !== 'Bearer kv-token') {
        return { status: 401, headers: { 'WWW-Authenticate': 'Bearer authorization="https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000", resource="https://vault.azure.net"' }, body: {} };
      }
      const value = vaultSecrets.get(match[1]!);
      return value === undefined ? { status: 404, body: { error: { code: 'SecretNotFound' } } } : { status: 200, body: { value, id: `${vault.url}/secrets/${match[1]}/1`, attributes: { enabled: true } } };
    });
    process.env.IDENTITY_ENDPOINT = `${vault.url}/msi/token`;
    process.env.IDENTITY_HEADER = 'identity-header';
    ingestion = await startIngestionStub();
    appInsightsSecret = aiConnection(ingestion.url);

    control = await createTestDatabase(dialect, 'ops_control');
    legacy = await createTestDatabase(dialect, 'ops_legacy');
    receiverDb = await createTestDatabase('postgres', 'ops_receiver');
    await legacy.db.execute(`CREATE TABLE ${legacy.db.table({ schema: table.split('.')[0]!, name: 'orders' })} (id int NOT NULL PRIMARY KEY, note varchar(100) NULL)`);
    for (let i = 1; i <= 50; i++) {
      await legacy.db.execute(`INSERT INTO ${legacy.db.table({ schema: table.split('.')[0]!, name: 'orders' })} (id, note) VALUES (${legacy.db.param(1)}, ${legacy.db.param(2)})`, [i, `order ${i}`]);
    }
    tokens.acme = tokenV1;
    receiver = await startReceiver({ port: 0, host: '127.0.0.1', db: receiverDb.url, tokens });

    vaultSecrets.set('acme-push-token', tokenV1);
    vaultSecrets.set('appinsights', appInsightsSecret);
    dir = await mkdtemp(path.join(tmpdir(), 'cdc-ops-'));
    const file = path.join(dir, 'agent.yaml');
    const { url: _controlUrl, ...controlRest } = control.config;
    const { url: _legacyUrl, ...legacyRest } = legacy.config;
    await writeFile(
      file,
      stringify({
        control: { ...controlRest, url: 'secret://control-url' },
        keyVault: { url: vault.url, cacheTtl: '1h' },
        telemetry: { logLevel: 'debug', appInsights: 'secret://appinsights' },
        worker: { concurrency: 1, leaseSeconds: 30, pollInterval: '100ms', healthPort: 0, maxAttempts: 3 },
        tenants: [
          {
            id: 'acme',
            push: { url: receiver.url, token: 'secret://acme-push-token', maxInFlight: 2 },
            connections: { legacy: { ...legacyRest, url: 'secret://acme-source-url' } },
            sources: [{ id: 'orders', connection: 'legacy', table, key: ['id'], every: '1h', batch: { maxRows: 20, maxBytes: 1_000_000 } }],
          },
        ],
      }),
    );
    loaded = await loadConfig({
      path: file,
      env: { CDC_SECRET_CONTROL_URL: control.url, CDC_SECRET_ACME_SOURCE_URL: legacy.url },
      keyVaultClientOptions: { disableChallengeResourceVerification: true },
    });
    const capture = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        logLines.push(...chunk.toString('utf8').split('\n').filter((l) => l !== ''));
        callback();
      },
    });
    const log = createLogger({ level: 'debug', secrets: () => loaded.secrets.values(), destination: capture });
    controlDb = await connect(loaded.config.control);
    await migrate(controlDb);
    queue = createJobQueue(controlDb);
    sources = new SourceConnections(loaded.config);
    telemetry = new Telemetry(
      [new PrometheusSink({ defaultMetrics: false }), new AppInsightsSink({ connectionString: loaded.config.telemetry.appInsights!, roleName: 'cdc-sync-agent', roleInstance: 'test-replica', offlineStorage: false })],
      { secrets: () => loaded.secrets.values() },
    );
    daemon = new AgentDaemon({ config: loaded.config, controlDb, queue, sources, log, telemetry, rotation: secretRotation(loaded), schedule: false, healthHost: '127.0.0.1', sampleEveryMs: 3_600_000 });
    await daemon.start();
  });

  afterAll(async () => {
    await daemon?.stop('test over');
    await telemetry?.close().catch(() => {});
    await sources?.closeAll();
    await controlDb?.close();
    await receiver?.close();
    await vault?.close();
    await ingestion?.close();
    for (const db of [control, legacy, receiverDb]) await db?.drop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const sync = async (kind: 'initial' | 'incremental') => {
    const r = await queue.enqueue({ tenant: 'acme', source: 'orders', kind });
    return followJobs(queue, [{ tenant: 'acme', source: 'orders', jobId: (r.jobId ?? r.existingJobId)! }], { tty: false, write: () => {}, pollMs: 100 });
  };
  const metricsText = async () => (await fetch(`http://127.0.0.1:${daemon.healthPort}/metrics`)).text();

  it('syncs, rotates the push token after a 401, dead-letters a token nobody has, and never leaks a secret', async () => {
    const initial = await sync('initial');
    expect(initial.failed).toEqual([]);

    // Rotation: the receiver now only accepts v2, Key Vault holds v2, the agent's cache still has v1.
    tokens.acme = tokenV2;
    vaultSecrets.set('acme-push-token', tokenV2);
    await legacy.db.execute(`UPDATE ${legacy.db.table({ schema: table.split('.')[0]!, name: 'orders' })} SET note = ${legacy.db.param(1)} WHERE id <= 5`, ['changed']);
    const rotated = await sync('incremental');
    expect(rotated.failed).toEqual([]);
    expect(loaded.config.tenants[0]!.push.token).toBe(tokenV2);

    // A token that is nowhere: refresh finds nothing new, the 401 is permanent, the job is dead-lettered.
    tokens.acme = tokenV3;
    await legacy.db.execute(`DELETE FROM ${legacy.db.table({ schema: table.split('.')[0]!, name: 'orders' })} WHERE id = ${legacy.db.param(1)}`, [50]);
    const dead = await sync('incremental');
    expect(dead.failed).toHaveLength(1);
    expect(dead.failed[0]!.error).toMatch(/HTTP 401/);

    await daemon.sample();
    const metrics = await metricsText();
    expect(metrics).toMatch(/cdc_rows_snapshotted_total\{tenant="acme",source="orders"\} 149/);
    expect(metrics).toMatch(/cdc_changes_total\{tenant="acme",source="orders",op="upsert"\} 55/);
    expect(metrics).toMatch(/cdc_changes_total\{tenant="acme",source="orders",op="delete"\} 1/);
    expect(metrics).toMatch(/cdc_jobs_total\{tenant="acme",source="orders",kind="incremental",outcome="succeeded"\} 1/);
    expect(metrics).toMatch(/cdc_dead_letters_total\{tenant="acme",source="orders"\} 1/);
    expect(metrics).toMatch(/cdc_push_rejections_total\{tenant="acme",source="orders",status="401"\} 1/);
    expect(metrics).toMatch(/cdc_secret_refreshes_total\{target="push",changed="true"\} 1/);
    expect(metrics).toMatch(/cdc_secret_refreshes_total\{target="push",changed="false"\} 1/);
    expect(metrics).toMatch(/cdc_dead_jobs\{tenant="acme",source="orders"\} 1/);
    expect(metrics).toMatch(/cdc_queue_depth\{status="dead"\} 1/);
    expect(metrics).toMatch(/cdc_source_lag_seconds\{tenant="acme",source="orders"\} \d+/);
    expect(metrics).toMatch(/cdc_source_interval_seconds\{tenant="acme",source="orders"\} 3600/);
    expect(metrics).toMatch(/cdc_push_duration_seconds_count\{tenant="acme",source="orders"\} 2/);

    await telemetry.flush();
    const envelopes = ingestion.envelopes as Array<{ data?: { baseType?: string; baseData?: { name?: string; type?: string } } }>;
    const events = envelopes.filter((e) => e.data?.baseType === 'EventData').map((e) => e.data!.baseData!.name);
    expect(events).toEqual(expect.arrayContaining(['job_succeeded', 'secret_refreshed', 'job_dead_lettered']));
    const deps = envelopes.filter((e) => e.data?.baseType === 'RemoteDependencyData').map((e) => e.data!.baseData!.type);
    expect(deps).toEqual(expect.arrayContaining(['SQL', 'Http']));

    // Structured logs carry the ids an operator greps for.
    const records = logLines.map((l) => JSON.parse(l) as Record<string, unknown>);
    const pushedLine = records.find((r) => r.msg === 'changes pushed and acknowledged');
    expect(pushedLine).toMatchObject({ tenant: 'acme', source: 'orders', kind: 'initial' });
    expect(pushedLine?.jobId).toEqual(expect.any(String));
    expect(pushedLine?.runId).toEqual(expect.any(String));
    expect(records.some((r) => r.msg === 'authentication failed; a rotated secret was found, retrying once with it')).toBe(true);

    // Nowhere a secret: logs, /metrics, Application Insights, status --json, errors kept in the control database.
    const status = JSON.stringify(await collectStatus(loaded.config, controlDb, queue));
    const kept = JSON.stringify([
      ...(await controlDb.query('SELECT last_error FROM cdc_jobs')),
      ...(await controlDb.query('SELECT error FROM cdc_runs')),
    ]);
    const secrets = [tokenV1, tokenV2, legacy.url, control.url, appInsightsSecret];
    expect(secrets.every((s) => loaded.secrets.values().has(s))).toBe(true);
    const surfaces = { logs: logLines.join('\n'), metrics, telemetry: JSON.stringify(envelopes), status, errors: kept, failure: dead.failed[0]!.error };
    for (const [where, text] of Object.entries(surfaces)) {
      for (const secret of secrets) expect(text.includes(secret), `${where} contains a secret`).toBe(false);
    }
    expect(status).toContain('HTTP 401');
  });
});
