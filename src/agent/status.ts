/**
 * The operator's view of every configured source (`cdc-agent status`): last success, lag, last run counts,
 * running phase, queued and dead jobs, last error. The JSON form is documented in docs/operations.md.
 */
import type { CompiledConfig } from '../config/load.ts';
import type { Db } from '../dialect/types.ts';
import type { JobQueue, JobView, QueueStats } from '../queue-table/queue.ts';
import { listWatermarks } from '../watermark/state.ts';

export interface SourceStatus {
  tenant: string;
  source: string;
  schedule: string | null;
  lastSuccessAt: string | null;
  /** Seconds since the last successful run, null when never synced. */
  lagSeconds: number | null;
  lastRun: null | { runId: string; mode: string; status: string; phase: string; sourceRows: number | null; upserts: number | null; deletes: number | null; batches: number | null; startedAt: string; finishedAt: string | null; error: string | null;
    /** The receiver's reconciliation problems when `status` is `unreconciled`, else null. */
    problems: string[] | null;
    /** A watermark source's run: what it read (`full`, `watermark`, `keydiff`) and why; null for other sources. */
    runType: string | null;
    runReason: string | null;
  };
  /** A watermark source's state (docs/watermark.md), null for other sources and before its first full run. */
  watermark: null | {
    column: string;
    kind: string;
    value: string | null;
    lastFullDiffAt: string | null;
    /** Changes the last full diff found after watermark runs: 0 is the health signal (they missed nothing). */
    lastFullDiffFound: number | null;
    lastKeyDiffAt: string | null;
  };
  running: null | { jobId: string; owner: string | null; phase: string | null; leaseUntil: string | null };
  queued: number;
  /** How long the longest-due queued job of the source has waited to be claimed, null when none is due. */
  waitingSeconds: number | null;
  dead: number;
  lastError: string | null;
}

/** Queued jobs of a source this configuration does not have: only a replica whose configuration has it claims them. */
export interface UnknownSourceJobs {
  tenant: string;
  source: string;
  queued: number;
  waitingSeconds: number | null;
}

export interface StatusReport {
  generatedAt: string;
  queue: { depth: Record<string, number>; oldestQueuedSeconds: number | null };
  sources: SourceStatus[];
  unknownSources: UnknownSourceJobs[];
  /** Configured tenants whose secrets cannot be resolved: not served, so not in `sources` (`status` adds them). */
  tenantsNotServed?: ReadonlyArray<{ tenant: string; problems: string[] }>;
}

function iso(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  if (value instanceof Date) return value.toISOString();
  // PostgreSQL timestamptz text ('2026-11-22 10:00:00.123+00'), SQL Server datetime2 (UTC, no zone).
  let text = String(value).trim().replace(' ', 'T');
  if (/[+-]\d\d$/.test(text)) text += ':00';
  else if (!/([zZ]|[+-]\d\d:?\d\d)$/.test(text)) text += 'Z';
  const ms = Date.parse(text);
  return Number.isNaN(ms) ? String(value) : new Date(ms).toISOString();
}

function num(value: unknown): number | null {
  return value === null || value === undefined ? null : Number(value);
}

export async function collectStatus(config: CompiledConfig, controlDb: Db, queue: JobQueue, now = new Date()): Promise<StatusReport> {
  const stats: QueueStats = await queue.stats();
  const states = await controlDb.query<{ tenant_id: string; source_id: string; last_success_at: unknown }>(
    'SELECT tenant_id, source_id, last_success_at FROM cdc_source_state',
  );
  const runs = await controlDb.query<Record<string, unknown>>(
    `SELECT r.* FROM cdc_runs r JOIN (SELECT tenant_id, source_id, MAX(started_at) AS started_at FROM cdc_runs GROUP BY tenant_id, source_id) latest
       ON latest.tenant_id = r.tenant_id AND latest.source_id = r.source_id AND latest.started_at = r.started_at`,
  );
  const watermarks = await listWatermarks(controlDb);
  const sources: SourceStatus[] = [];
  for (const tenant of config.tenants) {
    for (const source of tenant.sources) {
      const is = (row: { tenant_id?: unknown; source_id?: unknown; tenant?: unknown; source?: unknown }) =>
        (row.tenant_id ?? row.tenant) === tenant.id && (row.source_id ?? row.source) === source.id;
      const state = states.find(is);
      const mark = source.watermark ? watermarks.find(is) : undefined;
      const run = runs.find(is);
      const running = stats.running.find((j) => j.tenant === tenant.id && j.source === source.id);
      const dead = stats.dead.filter((j) => j.tenant === tenant.id && j.source === source.id);
      const queuedHere = stats.queuedBySource?.find((q) => q.tenant === tenant.id && q.source === source.id);
      const queued = queuedHere?.count ?? 0;
      const lastSuccessAt = iso(state?.last_success_at);
      sources.push({
        tenant: tenant.id,
        source: source.id,
        schedule: source.schedule ?? (source.every ? `every ${Math.round(source.every / 1000)}s` : null),
        lastSuccessAt,
        lagSeconds: lastSuccessAt ? Math.round((now.getTime() - Date.parse(lastSuccessAt)) / 1000) : null,
        lastRun: run
          ? {
              runId: String(run.run_id),
              mode: String(run.mode),
              status: String(run.status),
              phase: String(run.phase),
              sourceRows: num(run.source_rows),
              upserts: num(run.upserts),
              deletes: num(run.deletes),
              batches: num(run.batches),
              startedAt: iso(run.started_at)!,
              finishedAt: iso(run.finished_at),
              error: run.error === null || run.error === undefined ? null : String(run.error),
              problems: typeof run.problems === 'string' ? (JSON.parse(run.problems) as string[]) : null,
              runType: typeof run.run_type === 'string' ? run.run_type : null,
              runReason: typeof run.run_reason === 'string' ? run.run_reason : null,
            }
          : null,
        watermark: mark
          ? { column: mark.column, kind: mark.kind, value: mark.value, lastFullDiffAt: mark.lastFullDiffAt, lastFullDiffFound: mark.lastFullDiffFound, lastKeyDiffAt: mark.lastKeyDiffAt }
          : null,
        running: running ? { jobId: running.id, owner: running.owner ?? null, phase: running.phase ?? null, leaseUntil: iso(running.leaseUntil) } : null,
        queued,
        waitingSeconds: queuedHere?.waitingSeconds ?? null,
        dead: dead.length,
        lastError:
          dead[0]?.lastError ??
          (run && run.status === 'failed' ? String(run.error) : run && run.status === 'unreconciled' && typeof run.problems === 'string' ? `receiver did not reconcile: ${(JSON.parse(run.problems) as string[]).join('; ')}` : null),
      });
    }
  }
  return {
    generatedAt: now.toISOString(),
    queue: { depth: stats.depth, oldestQueuedSeconds: stats.oldestQueuedSeconds ?? null },
    sources,
    unknownSources: (stats.queuedBySource ?? [])
      .filter((q) => !config.tenants.some((t) => t.id === q.tenant && t.sources.some((s) => s.id === q.source)))
      .map((q) => ({ tenant: q.tenant, source: q.source, queued: q.count, waitingSeconds: q.waitingSeconds })),
  };
}

/** A wait as the table shows it: `45s`, `5m`, `2h10m`. */
export function formatAge(seconds: number): string {
  if (seconds < 60) return `${seconds}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m`;
  return `${Math.floor(seconds / 3600)}h${String(Math.floor((seconds % 3600) / 60)).padStart(2, '0')}m`;
}

/** Most characters of an error the table shows; `status --json` has it whole. */
const ERROR_CHARS = 120;

/**
 * An error as the table shows it: the operator's text without the classification prefix and the error class
 * (`[permanent: PermanentError] PermanentError: `), its first line, cut at ERROR_CHARS.
 */
export function shortError(error: string | null): string {
  if (!error) return '';
  const text = error.replace(/^\[[a-z]+: [^\]]*\]\s*/, '').replace(/^[A-Z][A-Za-z]*(Error|Exception): /, '').split('\n')[0]!.trim();
  return text.length > ERROR_CHARS ? `${text.slice(0, ERROR_CHARS - 1)}…` : text;
}

export function formatStatus(report: StatusReport): string {
  const header = ['TENANT', 'SOURCE', 'LAST SUCCESS', 'LAG', 'LAST RUN', 'ROWS', '+/~', '-', 'NOW', 'QUEUED', 'DEAD', 'LAST ERROR'];
  const rows = report.sources.map((s) => [
    s.tenant,
    s.source,
    s.lastSuccessAt ?? 'never',
    s.lagSeconds === null ? '-' : `${s.lagSeconds}s`,
    s.lastRun ? `${s.lastRun.mode}${s.lastRun.runType ? `/${s.lastRun.runType}` : ''} ${s.lastRun.status}` : '-',
    String(s.lastRun?.sourceRows ?? '-'),
    String(s.lastRun?.upserts ?? '-'),
    String(s.lastRun?.deletes ?? '-'),
    s.running ? `${s.running.phase ?? 'claimed'} (${s.running.owner ?? '?'})` : 'idle',
    s.queued > 0 && s.waitingSeconds !== null && s.waitingSeconds >= 60 ? `${s.queued} (waiting ${formatAge(s.waitingSeconds)})` : String(s.queued),
    String(s.dead),
    shortError(s.lastError),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  const footer = report.sources.some((s) => s.lastError) ? ['', '(full errors: cdc-agent status --json)'] : [];
  const unknown = report.unknownSources.length
    ? [
        '',
        'Queued jobs of sources not in this configuration (only a replica whose configuration has them claims them):',
        ...report.unknownSources.map((u) => `  ${u.tenant}/${u.source}: ${u.queued} queued${u.waitingSeconds !== null ? `, waiting ${formatAge(u.waitingSeconds)}` : ''}`),
      ]
    : [];
  const marked = report.sources.filter((s) => s.watermark);
  const watermarks = marked.length
    ? [
        '',
        'Watermark sources (docs/watermark.md):',
        ...marked.map((s) => {
          const w = s.watermark!;
          const found = w.lastFullDiffFound === null ? '' : `, found ${w.lastFullDiffFound} change(s)${w.lastFullDiffFound > 0 ? ' the watermark runs had missed' : ''}`;
          const why = s.lastRun?.runReason ? `; last run ${s.lastRun.runType}: ${s.lastRun.runReason}` : '';
          return `  ${s.tenant}/${s.source}: ${w.column} read to ${w.value ?? '(empty)'}; deletes looked for ${w.lastKeyDiffAt ?? 'never'}; last full diff ${w.lastFullDiffAt ?? 'never'}${found}${why}`;
        }),
      ]
    : [];
  const broken = (report.tenantsNotServed ?? []).flatMap((b) => ['', `Tenant ${b.tenant} is not served: its secrets cannot be resolved.`, ...b.problems.map((p) => `  - ${p}`)]);
  return [line(header), ...rows.map(line), ...watermarks, ...unknown, ...broken, ...footer].join('\n');
}

/** One job as `cdc-agent jobs list --json` prints it. */
export interface JobListing {
  id: string;
  tenant: string;
  source: string;
  kind: string;
  state: string;
  attempts: number;
  maxAttempts: number;
  phase: string | null;
  owner: string | null;
  runId: string | null;
  /** Seconds since the job was enqueued. */
  ageSeconds: number | null;
  /** Queued: seconds until it is due (negative: overdue by that much); else null. */
  dueInSeconds: number | null;
  createdAt: string | null;
  finishedAt: string | null;
  lastError: string | null;
}

export function jobsReport(jobs: readonly JobView[], at: Date): { generatedAt: string; jobs: JobListing[] } {
  const seconds = (d: Date | null) => (d === null ? null : Math.round((at.getTime() - d.getTime()) / 1000));
  return {
    generatedAt: at.toISOString(),
    jobs: jobs.map((j) => ({
      id: j.id,
      tenant: j.tenant,
      source: j.source,
      kind: j.kind,
      state: j.status,
      attempts: j.attempts,
      maxAttempts: j.maxAttempts,
      phase: j.phase,
      owner: j.status === 'running' ? j.owner : null,
      runId: j.runId,
      ageSeconds: seconds(j.createdAt),
      dueInSeconds: j.status === 'queued' && j.runAfter ? -(seconds(j.runAfter) ?? 0) : null,
      createdAt: j.createdAt?.toISOString() ?? null,
      finishedAt: j.finishedAt?.toISOString() ?? null,
      lastError: j.lastError,
    })),
  };
}

export function formatJobs(report: { jobs: JobListing[] }): string {
  if (report.jobs.length === 0) return 'No jobs.';
  const header = ['ID', 'STATE', 'KIND', 'SOURCE', 'ATTEMPTS', 'AGE', 'PHASE', 'OWNER', 'LAST ERROR'];
  const rows = report.jobs.map((j) => [
    j.id,
    j.state === 'queued' && j.dueInSeconds !== null && j.dueInSeconds > 0 ? `queued (in ${formatAge(j.dueInSeconds)})` : j.state,
    j.kind,
    `${j.tenant}/${j.source}`,
    `${j.attempts}/${j.maxAttempts}`,
    j.ageSeconds === null ? '-' : formatAge(Math.max(0, j.ageSeconds)),
    j.phase ?? '-',
    j.owner ?? '-',
    shortError(j.lastError),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}
