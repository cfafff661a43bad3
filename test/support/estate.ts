/**
 * An end-to-end estate for agent tests: per-tenant legacy databases with generated business tables, a control
 * database, the reference receiver on 127.0.0.1, a configuration file, and agents started as separate OS
 * processes (`cdc-agent run`).
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { stringify } from 'yaml';
import type { Db, DialectName } from '../../src/dialect/types.ts';
import { createEstate } from '../../src/demo/estate.ts';
import { verifyDataset, type Verification } from '../../src/demo/verify.ts';
import { migrate } from '../../src/migrations/migrate.ts';
import { createJobQueue, type JobQueue } from '../../src/queue-table/queue.ts';
import type { FaultOptions } from '../../src/receiver/faults.ts';
import { startReceiver, type Receiver } from '../../src/receiver/server.ts';
import { introspectSource } from '../../src/snapshot/introspect.ts';
import { compileConfig, type CompiledConfig } from '../../src/config/load.ts';
import { runCli, spawnCli, writeConfig, type CliResult } from './cli.ts';
import { createTestDatabase, type TestDatabase } from './databases.ts';

export interface EstateSource {
  id: string;
  table?: string;
  query?: string;
  key?: string[];
  every?: string;
  /** Watermark mode (docs/watermark.md), as the configuration file spells it. */
  watermark?: Record<string, unknown>;
}

export interface EstateOptions {
  label: string;
  tenants: string[];
  /** Rows per tenant, spread over the generated tables. */
  rows: number;
  sources: EstateSource[];
  /** Extra SQL run in each tenant's legacy database after generation (views, extra tables). */
  setupSql?: string;
  worker?: { concurrency?: number; leaseSeconds?: number; drainGraceSeconds?: number };
  batch?: { maxRows?: number; maxBytes?: number };
  faults?: FaultOptions;
  /** The control database's dialect (default postgres); sources and the receiver are PostgreSQL. */
  control?: DialectName;
  /** The receiver serves the optional digest endpoint (default true). */
  digest?: boolean;
  /** The legacy databases' dialect (default postgres). Only PostgreSQL sources get the generated estate. */
  source?: DialectName;
  /** Fill each legacy database with the generated estate (default true; false: empty, for `setupSql`). */
  generate?: boolean;
}

/** The estate's configuration file, loosely typed for tests that edit it. */
export interface EstateConfig {
  tenants: Array<{ id: string; sources: Array<Record<string, unknown> & { id: string }> }>;
  [key: string]: unknown;
}

export class AgentProcess {
  readonly name: string;
  readonly child: ChildProcess;
  readonly lines: string[] = [];
  readonly exited: Promise<number | null>;
  private readonly waiters: Array<{ re: RegExp; resolve: (line: string) => void }> = [];

  constructor(name: string, child: ChildProcess) {
    this.name = name;
    this.child = child;
    let buffer = '';
    const onData = (chunk: Buffer) => {
      buffer += chunk.toString('utf8');
      let i: number;
      while ((i = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, i);
        buffer = buffer.slice(i + 1);
        this.lines.push(line);
        for (const w of [...this.waiters]) {
          if (w.re.test(line)) {
            this.waiters.splice(this.waiters.indexOf(w), 1);
            w.resolve(line);
          }
        }
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    this.exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
  }

  /** Resolve with the first log line (past or future) matching `re`. */
  waitFor(re: RegExp, timeoutMs = 60_000): Promise<string> {
    const seen = this.lines.find((l) => re.test(l));
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.name}: no log line matching ${re} within ${timeoutMs} ms; last lines:\n${this.lines.slice(-15).join('\n')}`)), timeoutMs);
      this.waiters.push({
        re,
        resolve: (line) => {
          clearTimeout(timer);
          resolve(line);
        },
      });
    });
  }

  messages(): Array<Record<string, unknown>> {
    return this.lines.flatMap((l) => {
      try {
        return [JSON.parse(l) as Record<string, unknown>];
      } catch {
        return [];
      }
    });
  }

  signal(signal: NodeJS.Signals): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
  }
}

export class Estate {
  readonly options: EstateOptions;
  control!: TestDatabase;
  legacy = new Map<string, TestDatabase>();
  receiverDb!: TestDatabase;
  receiver!: Receiver;
  queue!: JobQueue;
  config!: CompiledConfig;
  configPath!: string;
  tokens: Record<string, string> = {};
  readonly agents: AgentProcess[] = [];
  /** The configuration as written to `configPath` (see `rewriteConfig`). */
  raw!: EstateConfig;

  private constructor(options: EstateOptions) {
    this.options = options;
  }

  static async create(options: EstateOptions): Promise<Estate> {
    const e = new Estate(options);
    e.control = await createTestDatabase(options.control ?? 'postgres', `${options.label}_ctl`, 20);
    e.receiverDb = await createTestDatabase('postgres', `${options.label}_rx`, 10);
    for (const [i, tenant] of options.tenants.entries()) {
      const db = await createTestDatabase(options.source ?? 'postgres', `${options.label}_${tenant}`, 6);
      if (options.generate !== false) await createEstate(db.db, options.rows, 7 + i);
      if (options.setupSql) await db.db.execute(options.setupSql);
      e.legacy.set(tenant, db);
      e.tokens[tenant] = `tok-${tenant}-${randomBytes(8).toString('hex')}`;
    }
    e.receiver = await startReceiver({ port: 0, host: '127.0.0.1', db: e.receiverDb.db, tokens: e.tokens, ...(options.faults ? { faults: options.faults } : {}), ...(options.digest === false ? { digest: false } : {}), seed: 42 });
    const raw = {
      control: { ...e.control.config, poolMax: 10 },
      worker: {
        concurrency: options.worker?.concurrency ?? 2,
        leaseSeconds: options.worker?.leaseSeconds ?? 5,
        drainGraceSeconds: options.worker?.drainGraceSeconds ?? 10,
        pollInterval: '200ms',
        healthPort: 0,
        maxAttempts: 20,
      },
      telemetry: { logLevel: 'info' },
      tenants: options.tenants.map((tenant) => ({
        id: tenant,
        push: { url: e.receiver.url, token: `secret://push-token-${tenant}`, maxInFlight: 4 },
        connections: { legacy: { ...e.legacy.get(tenant)!.config, poolMax: 4 } },
        sources: options.sources.map((s) => ({
          id: s.id,
          connection: 'legacy',
          ...(s.table ? { table: s.table } : {}),
          ...(s.query ? { query: s.query } : {}),
          ...(s.key ? { key: s.key } : {}),
          ...(s.every ? { every: s.every } : {}),
          ...(s.watermark ? { watermark: s.watermark } : {}),
          batch: { maxRows: options.batch?.maxRows ?? 2000, maxBytes: options.batch?.maxBytes ?? 1024 * 1024 },
        })),
      })),
    };
    e.raw = raw;
    e.configPath = await writeConfig(raw);
    e.config = compileConfig(raw, e.configPath);
    await migrate(e.control.db);
    e.queue = createJobQueue(e.control.db);
    return e;
  }

  /** Change the configuration file as an operator would edit it; later CLI commands and agents read the new one. */
  async rewriteConfig(change: (raw: EstateConfig) => void, options: { invalid?: boolean } = {}): Promise<void> {
    change(this.raw);
    await writeFile(this.configPath, stringify(this.raw));
    // A file written to be refused (`invalid`) leaves the estate's compiled configuration as it was.
    if (!options.invalid) this.config = compileConfig(this.raw, this.configPath);
  }

  /** Secrets reach the agents the way operators give them: environment variables. */
  env(): Record<string, string> {
    return Object.fromEntries(Object.entries(this.tokens).map(([t, v]) => [`CDC_SECRET_PUSH_TOKEN_${t.toUpperCase()}`, v]));
  }

  async startAgent(name: string, extraArgs: string[] = [], options: { schedule?: boolean } = {}): Promise<AgentProcess> {
    const schedule = options.schedule ? [] : ['--no-schedule'];
    const child = spawnCli(['--config', this.configPath, 'run', ...schedule, '--worker-id', name, '--health-host', '127.0.0.1', ...extraArgs], { env: this.env() });
    const agent = new AgentProcess(name, child);
    this.agents.push(agent);
    await agent.waitFor(/"msg":"agent running"/, 60_000);
    return agent;
  }

  cli(args: string[], timeoutMs = 180_000): Promise<CliResult> {
    return runCli(['--config', this.configPath, ...args], { env: this.env(), timeoutMs });
  }

  sourceDb(tenant: string): Db {
    return this.legacy.get(tenant)!.db;
  }

  /** Enqueue a sync of every source of a tenant from the test process; returns the job ids. */
  async enqueue(tenant: string, kind: 'initial' | 'incremental' | 'resync' = 'incremental'): Promise<string[]> {
    const ids: string[] = [];
    for (const s of this.options.sources) {
      const r = await this.queue.enqueue({ tenant, source: s.id, kind, priority: kind === 'initial' ? 100 : kind === 'resync' ? 50 : 0, maxAttempts: 20 });
      ids.push((r.jobId ?? r.existingJobId)!);
    }
    return ids;
  }

  /** Wait until every given job succeeded; fails fast on a dead job. */
  async waitForJobs(ids: string[], timeoutMs = 120_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const views = await this.queue.getJobs(ids);
      const dead = views.filter((v) => v.status === 'dead');
      if (dead.length > 0) throw new Error(`dead jobs: ${dead.map((d) => `${d.tenant}/${d.source}: ${d.lastError}`).join('; ')}`);
      if (views.length === ids.length && views.every((v) => v.status === 'succeeded')) return;
      if (Date.now() > deadline) throw new Error(`jobs not finished in time: ${JSON.stringify(views.map((v) => [v.tenant, v.source, v.status, v.phase, v.lastError]))}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** Wait until a job reaches a phase (as the agent records it), polling fast. */
  async waitForPhase(jobId: string, phase: string, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const [view] = await this.queue.getJobs([jobId]);
      if (view?.phase === phase && view.status === 'running') return;
      if (view && (view.status === 'succeeded' || view.status === 'dead')) throw new Error(`job ${jobId} finished (${view.status}) before reaching phase ${phase}`);
      if (Date.now() > deadline) throw new Error(`job ${jobId} did not reach phase ${phase}; now ${view?.status}/${view?.phase}`);
      await new Promise((r) => setTimeout(r, 15));
    }
  }

  async verify(tenant: string): Promise<Record<string, Verification>> {
    const out: Record<string, Verification> = {};
    const db = this.sourceDb(tenant);
    const tenantConfig = this.config.tenants.find((t) => t.id === tenant)!;
    for (const source of tenantConfig.sources) {
      const schema = await introspectSource(db, tenant, source);
      out[source.id] = await verifyDataset({
        sourceDb: db,
        from: source.table ? { table: source.table } : { sql: source.query! },
        schema,
        receiverUrl: this.receiver.url,
        tenant,
        dataset: source.id,
        token: this.tokens[tenant]!,
      });
    }
    return out;
  }

  async receiverStats(tenant: string, dataset: string): Promise<Record<string, number>> {
    const r = await fetch(`${this.receiver.url}/tenants/${tenant}/datasets/${dataset}/stats`, { headers: { authorization: `Bearer ${this.tokens[tenant]}` } });
    return (await r.json()) as Record<string, number>;
  }

  /** The receiver's own table of a dataset (rx_rows_…), to damage it as a receiver that lost data would be. */
  async receiverTable(tenant: string, dataset: string): Promise<string> {
    const [row] = await this.receiverDb.db.query<{ table_name: string }>('SELECT table_name FROM rx_datasets WHERE tenant = $1 AND dataset = $2', [tenant, dataset]);
    if (!row) throw new Error(`the receiver has no dataset ${tenant}/${dataset}`);
    return this.receiverDb.db.quote(row.table_name);
  }

  async close(): Promise<void> {
    for (const a of this.agents) a.signal('SIGKILL');
    await Promise.all(this.agents.map((a) => a.exited));
    await this.receiver?.close().catch(() => {});
    for (const db of [this.control, this.receiverDb, ...this.legacy.values()]) await db?.drop().catch(() => {});
  }
}

export function allOk(results: Record<string, Verification>): Record<string, string> {
  return Object.fromEntries(Object.entries(results).map(([k, v]) => [k, v.ok ? 'ok' : `${v.sourceRows} vs ${v.receiverRows}: ${JSON.stringify(v.firstDifference)}`]));
}
