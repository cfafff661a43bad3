/**
 * The agent's metrics and events (docs/design.md §7), defined once and sent to every configured sink: Prometheus
 * (`/metrics`) and Application Insights. The pipeline calls the `Telemetry` methods at the points that
 * matter; sinks decide how to ship. Every text that leaves through telemetry is passed through the secret
 * redactor first. `docs/operations.md` documents each entry of `METRICS` and `EVENTS` (a test keeps it true).
 */
import type { ConnectionConfig } from '../config/schema.ts';
import { redact } from '../config/secrets.ts';

export type MetricKind = 'counter' | 'gauge' | 'histogram';

export interface MetricDef {
  name: string;
  kind: MetricKind;
  unit: string;
  labels: readonly string[];
  help: string;
  /** Histogram buckets, in the metric's unit. */
  buckets?: readonly number[];
}

const SECONDS_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600];

export const METRICS = {
  rowsSnapshotted: { name: 'cdc_rows_snapshotted_total', kind: 'counter', unit: 'rows', labels: ['tenant', 'source'], help: 'Source rows copied into the snapshot table.' },
  changes: { name: 'cdc_changes_total', kind: 'counter', unit: 'changes', labels: ['tenant', 'source', 'op'], help: 'Net changes found by the diff, by op (upsert or delete).' },
  batchesPushed: { name: 'cdc_batches_pushed_total', kind: 'counter', unit: 'batches', labels: ['tenant', 'source'], help: 'Batches acknowledged by the receiver.' },
  pushDuration: { name: 'cdc_push_duration_seconds', kind: 'histogram', unit: 'seconds', labels: ['tenant', 'source'], help: 'Push latency: wall time of a run\'s push phase, every batch sent and acknowledged plus the completion call.', buckets: SECONDS_BUCKETS },
  jobDuration: { name: 'cdc_job_duration_seconds', kind: 'histogram', unit: 'seconds', labels: ['tenant', 'source', 'kind', 'outcome'], help: 'Wall time of one claimed job, from claim to its outcome.', buckets: SECONDS_BUCKETS },
  jobs: { name: 'cdc_jobs_total', kind: 'counter', unit: 'jobs', labels: ['tenant', 'source', 'kind', 'outcome'], help: 'Jobs finished by this replica, by outcome: succeeded, retrying, dead, lease_lost, released.' },
  failures: { name: 'cdc_job_failures_total', kind: 'counter', unit: 'failures', labels: ['tenant', 'source', 'retryable'], help: 'Job attempts that failed (retryable=true: rescheduled with backoff).' },
  deadLetters: { name: 'cdc_dead_letters_total', kind: 'counter', unit: 'jobs', labels: ['tenant', 'source'], help: 'Jobs dead-lettered by this replica (permanent failure or attempts exhausted).' },
  pushRejections: { name: 'cdc_push_rejections_total', kind: 'counter', unit: 'responses', labels: ['tenant', 'source', 'status'], help: 'Runs stopped by an HTTP 4xx answer from the receiver, by status.' },
  leaseLosses: { name: 'cdc_lease_losses_total', kind: 'counter', unit: 'jobs', labels: ['tenant', 'source'], help: 'Jobs abandoned because another replica took the lease over.' },
  schemaChanges: { name: 'cdc_schema_changes_total', kind: 'counter', unit: 'changes', labels: ['tenant', 'source'], help: 'Source schema changes detected (the run re-sends every row in the new shape).' },
  unreconciledRuns: { name: 'cdc_runs_unreconciled_total', kind: 'counter', unit: 'runs', labels: ['tenant', 'source', 'action'], help: 'Runs the receiver answered with a mismatch at completion, by what followed (resync, alert, resync_suppressed).' },
  watermarkResets: { name: 'cdc_watermark_resets_total', kind: 'counter', unit: 'runs', labels: ['tenant', 'source'], help: 'Runs of a watermark source that read every row instead, because its watermark could not be trusted (it went backwards, its column changed or cannot be read).' },
  fullDiffFound: { name: 'cdc_full_diff_found', kind: 'gauge', unit: 'changes', labels: ['tenant', 'source'], help: 'Changes the last full diff of a watermark source found after its watermark runs (0: they missed nothing), sampled.' },
  secretRefreshes: { name: 'cdc_secret_refreshes_total', kind: 'counter', unit: 'refreshes', labels: ['target', 'changed'], help: 'Secrets re-read after an authentication failure (target: push or source); changed=true when a rotated value was found.' },
  queueDepth: { name: 'cdc_queue_depth', kind: 'gauge', unit: 'jobs', labels: ['status'], help: 'Jobs in the queue table by status (queued, running, dead, ...), sampled.' },
  queueOldest: { name: 'cdc_queue_oldest_queued_seconds', kind: 'gauge', unit: 'seconds', labels: [], help: 'Age of the oldest job waiting to be claimed (0 when none), sampled.' },
  deadJobs: { name: 'cdc_dead_jobs', kind: 'gauge', unit: 'jobs', labels: ['tenant', 'source'], help: 'Dead-lettered jobs currently in the queue table, sampled.' },
  sourceLag: { name: 'cdc_source_lag_seconds', kind: 'gauge', unit: 'seconds', labels: ['tenant', 'source'], help: 'Seconds since the source\'s last successful run, sampled (absent until its first success).' },
  tenantsNotServed: { name: 'cdc_tenant_not_served', kind: 'gauge', unit: 'tenants', labels: ['tenant'], help: 'A configured tenant this replica does not serve because its secrets cannot be resolved (1), sampled.' },
  sourceInterval: { name: 'cdc_source_interval_seconds', kind: 'gauge', unit: 'seconds', labels: ['tenant', 'source'], help: 'The source\'s configured `every` interval, for lag alerts (absent for cron schedules).' },
} as const satisfies Record<string, MetricDef>;

export type MetricKey = keyof typeof METRICS;

export const EVENTS = {
  job_succeeded: 'A job finished; measurements: durationMs, sourceRows, upserts, deletes, batches.',
  job_failed: 'A job attempt failed and will be retried; properties: error (redacted), retryable.',
  job_dead_lettered: 'A job was dead-lettered; properties: error (redacted), status (HTTP status when the receiver refused).',
  lease_lost: 'A job was abandoned because its lease was taken over by another replica.',
  schema_changed: 'The source schema differs from the last successful run; properties: changes (JSON).',
  run_unreconciled: 'The receiver reported a mismatch when the run completed; properties: runId, mode, problems (JSON), action (resync, alert, resync_suppressed).',
  watermark_reset: 'A watermark source\'s run read every row instead of the rows past its watermark; properties: reason.',
  secret_refreshed: 'A secret was re-read after an authentication failure; properties: target, changed.',
} as const;

export type EventName = keyof typeof EVENTS;

export type Labels = Record<string, string>;

export interface DependencyRecord {
  /** `SQL` or `HTTP`. */
  type: 'SQL' | 'HTTP';
  /** What was called, e.g. `snapshot acme/orders` or `POST /tenants/acme/datasets/orders/batches`. */
  name: string;
  /** Host (and database) called; never credentials. */
  target: string;
  /** The command or URL (HTTP: the full URL, which makes Application Insights show it as an HTTP call). */
  data?: string;
  durationMs: number;
  success: boolean;
  resultCode?: string;
  properties?: Labels;
}

/** Where telemetry goes. Values are final (already redacted). */
export interface TelemetrySink {
  metric(def: MetricDef, value: number, labels: Labels): void;
  event(name: EventName, properties: Labels, measurements: Record<string, number>): void;
  dependency(record: DependencyRecord): void;
  flush(): Promise<void>;
  close(): Promise<void>;
}

export interface SourceLabels {
  tenant: string;
  source: string;
}

export type JobOutcome = 'succeeded' | 'retrying' | 'dead' | 'lease_lost' | 'released';

/** What a queue/status sample carries; `collectStatus` in src/agent/status.ts produces a superset. */
export interface StatusSample {
  queue: { depth: Record<string, number>; oldestQueuedSeconds: number | null };
  sources: ReadonlyArray<{ tenant: string; source: string; lagSeconds: number | null; dead: number; watermark?: { lastFullDiffFound: number | null } | null }>;
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The HTTP status of a receiver refusal, found on the error or its causes. */
export function httpStatusOf(error: unknown): number | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 5 && typeof current === 'object' && current !== null; depth++) {
    const status = (current as { status?: unknown }).status;
    if (typeof status === 'number' && status >= 100) return status;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

/** `host/database` of a connection for dependency records: never the user, password or the full URL. */
export function connectionTarget(connection: ConnectionConfig): string {
  if (connection.url !== undefined) {
    try {
      const url = new URL(connection.url);
      return `${url.host}${url.pathname}`;
    } catch {
      return connection.dialect;
    }
  }
  return `${connection.host ?? ''}${connection.port ? `:${connection.port}` : ''}/${connection.database ?? ''}`;
}

/** Only the label fields: callers may pass richer objects (a claimed job). */
function sourceLabels(l: SourceLabels): Labels {
  return { tenant: l.tenant, source: l.source };
}

function jobLabels(l: SourceLabels & { kind: string }): Labels {
  return { tenant: l.tenant, source: l.source, kind: l.kind };
}

export class Telemetry {
  private readonly sinks: readonly TelemetrySink[];
  private readonly secrets: () => Iterable<string>;

  constructor(sinks: readonly TelemetrySink[], options: { secrets?: () => Iterable<string> } = {}) {
    this.sinks = sinks;
    this.secrets = options.secrets ?? (() => []);
  }

  /** Telemetry that goes nowhere (one-shot commands, tests that do not look). */
  static none(): Telemetry {
    return new Telemetry([]);
  }

  private clean(text: string): string {
    return redact(text, this.secrets()).slice(0, 4_000);
  }

  private metric(key: MetricKey, value: number, labels: Labels): void {
    const def: MetricDef = METRICS[key];
    for (const sink of this.sinks) sink.metric(def, value, labels);
  }

  private event(name: EventName, properties: Labels, measurements: Record<string, number> = {}): void {
    const clean = Object.fromEntries(Object.entries(properties).map(([k, v]) => [k, this.clean(String(v))]));
    for (const sink of this.sinks) sink.event(name, clean, measurements);
  }

  dependency(record: DependencyRecord): void {
    const clean = { ...record, name: this.clean(record.name), target: this.clean(record.target), ...(record.data !== undefined ? { data: this.clean(record.data) } : {}) };
    for (const sink of this.sinks) sink.dependency(clean);
  }

  snapshotTaken(l: SourceLabels, rows: number): void {
    this.metric('rowsSnapshotted', rows, sourceLabels(l));
  }

  diffComputed(l: SourceLabels, upserts: number, deletes: number): void {
    this.metric('changes', upserts, { ...sourceLabels(l), op: 'upsert' });
    this.metric('changes', deletes, { ...sourceLabels(l), op: 'delete' });
  }

  pushed(l: SourceLabels, batches: number, ms: number): void {
    this.metric('batchesPushed', batches, sourceLabels(l));
    this.metric('pushDuration', ms / 1000, sourceLabels(l));
  }

  schemaChanged(l: SourceLabels, changes: unknown): void {
    this.metric('schemaChanges', 1, sourceLabels(l));
    this.event('schema_changed', { ...sourceLabels(l), changes: JSON.stringify(changes ?? null) });
  }

  runUnreconciled(l: SourceLabels, run: { runId: string; mode: string; problems: readonly string[]; action: string }): void {
    this.metric('unreconciledRuns', 1, { ...sourceLabels(l), action: run.action });
    this.event('run_unreconciled', { ...sourceLabels(l), runId: run.runId, mode: run.mode, problems: JSON.stringify(run.problems), action: run.action });
  }

  watermarkReset(l: SourceLabels, reason: string): void {
    this.metric('watermarkResets', 1, sourceLabels(l));
    this.event('watermark_reset', { ...sourceLabels(l), reason });
  }

  secretRefreshed(target: 'push' | 'source', labels: SourceLabels | { tenant: string }, changed: boolean): void {
    this.metric('secretRefreshes', 1, { target, changed: String(changed) });
    this.event('secret_refreshed', { tenant: labels.tenant, ...('source' in labels ? { source: labels.source } : {}), target, changed: String(changed) });
  }

  jobSucceeded(l: SourceLabels & { kind: string }, ms: number, stats: { sourceRows?: number; upserts?: number; deletes?: number; batches?: number }): void {
    this.jobEnded(l, 'succeeded', ms);
    this.event('job_succeeded', jobLabels(l), {
      durationMs: ms,
      sourceRows: stats.sourceRows ?? 0,
      upserts: stats.upserts ?? 0,
      deletes: stats.deletes ?? 0,
      batches: stats.batches ?? 0,
    });
  }

  jobFailed(l: SourceLabels & { kind: string }, ms: number, error: unknown, outcome: 'retrying' | 'dead'): void {
    const retryable = outcome === 'retrying';
    this.jobEnded(l, outcome, ms);
    this.metric('failures', 1, { tenant: l.tenant, source: l.source, retryable: String(retryable) });
    const status = httpStatusOf(error);
    if (status !== undefined && status >= 400 && status < 500) this.metric('pushRejections', 1, { tenant: l.tenant, source: l.source, status: String(status) });
    if (outcome === 'dead') {
      this.metric('deadLetters', 1, { tenant: l.tenant, source: l.source });
      this.event('job_dead_lettered', { ...jobLabels(l), error: errorText(error), ...(status !== undefined ? { status: String(status) } : {}) }, { durationMs: ms });
    } else {
      this.event('job_failed', { ...jobLabels(l), error: errorText(error), retryable: String(retryable) }, { durationMs: ms });
    }
  }

  leaseLost(l: SourceLabels & { kind: string }, ms: number): void {
    this.jobEnded(l, 'lease_lost', ms);
    this.metric('leaseLosses', 1, { tenant: l.tenant, source: l.source });
    this.event('lease_lost', jobLabels(l));
  }

  released(l: SourceLabels & { kind: string }, ms: number): void {
    this.jobEnded(l, 'released', ms);
  }

  private jobEnded(l: SourceLabels & { kind: string }, outcome: JobOutcome, ms: number): void {
    const labels = { tenant: l.tenant, source: l.source, kind: l.kind, outcome };
    this.metric('jobs', 1, labels);
    this.metric('jobDuration', ms / 1000, labels);
  }

  /** Tenants left out of this replica's configuration (their secrets are missing): 1 each. */
  tenantsNotServed(tenants: readonly string[]): void {
    for (const tenant of tenants) this.metric('tenantsNotServed', 1, { tenant });
  }

  /** A periodic sample of the queue table and per-source state (gauges). */
  sampled(sample: StatusSample, intervals: ReadonlyArray<SourceLabels & { seconds: number }> = []): void {
    for (const [status, count] of Object.entries(sample.queue.depth)) this.metric('queueDepth', count, { status });
    this.metric('queueOldest', sample.queue.oldestQueuedSeconds ?? 0, {});
    for (const s of sample.sources) {
      const l = { tenant: s.tenant, source: s.source };
      this.metric('deadJobs', s.dead, l);
      if (s.lagSeconds !== null) this.metric('sourceLag', s.lagSeconds, l);
      if (s.watermark?.lastFullDiffFound != null) this.metric('fullDiffFound', s.watermark.lastFullDiffFound, l);
    }
    for (const i of intervals) this.metric('sourceInterval', i.seconds, { tenant: i.tenant, source: i.source });
  }

  async flush(): Promise<void> {
    await Promise.all(this.sinks.map((s) => s.flush()));
  }

  async close(): Promise<void> {
    await Promise.all(this.sinks.map((s) => s.close()));
  }

  /** The sink of a given class, e.g. the Prometheus registry for `/metrics`. */
  find<T extends TelemetrySink>(type: abstract new (...args: never[]) => T): T | undefined {
    return this.sinks.find((s): s is T => s instanceof type);
  }
}
