/**
 * Following enqueued jobs until they finish (`onboard --wait`, `sync --wait`): a progress bar per source on a
 * TTY, plain progress lines otherwise. Every phase counts rows: the snapshot the rows read (against the last
 * run's count, marked `~` as an estimate), the push the changes acknowledged (against the diff's count); the rate
 * and ETA are the current phase's. Notes (a retried attempt's cause, no agent claiming) print in both forms.
 */
import cliProgress from 'cli-progress';
import type { JobQueue, JobView } from '../queue-table/queue.ts';

export interface Followed {
  tenant: string;
  source: string;
  jobId: string;
}

export interface FollowResult {
  succeeded: Followed[];
  /** Finished, but the receiver answered the completion with a mismatch: never reported as succeeded. */
  unreconciled: Array<Followed & { problems: string[]; action: string }>;
  failed: Array<Followed & { error: string; status: string }>;
  /** Still running when following stopped (Ctrl-C). */
  interrupted: Followed[];
}

/** What a job's recorded stats say about its progress: rows done of a total (estimated or known), in its phase. */
export interface PhaseProgress {
  phase: string;
  done: number;
  /** null when unknown (the phase has no count yet). */
  total: number | null;
  /** The total is an estimate (the last run's source row count). */
  estimate: boolean;
  unit: 'rows' | 'changes';
}

export function progressOf(view: JobView): PhaseProgress {
  const s = (view.stats ?? {}) as Record<string, number | undefined>;
  const phase = view.status === 'succeeded' ? 'done' : (view.phase ?? (view.status === 'queued' ? 'queued' : view.status));
  if (phase === 'snapshot') {
    const known = s.sourceRows;
    return { phase, done: s.snapshotRows ?? 0, total: known ?? s.sourceRowsEstimate ?? null, estimate: known === undefined && s.sourceRowsEstimate !== undefined, unit: 'rows' };
  }
  if (phase === 'diff' || phase === 'batch') return { phase, done: s.snapshotRows ?? 0, total: s.snapshotRows ?? null, estimate: false, unit: 'rows' };
  const changes = (s.upserts ?? 0) + (s.deletes ?? 0);
  if (phase === 'push') return { phase, done: s.rowsPushed ?? 0, total: changes, estimate: false, unit: 'changes' };
  if (phase === 'done') return { phase, done: changes, total: changes, estimate: false, unit: 'changes' };
  return { phase, done: 0, total: null, estimate: false, unit: 'rows' };
}

export function formatCount(n: number): string {
  return n.toLocaleString('en-US');
}

export function formatEta(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds)) return '-';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** Rate and ETA within the current phase, from the first time this phase was seen. */
class PhaseClock {
  private phase = '';
  private since = 0;
  private from = 0;

  measure(p: PhaseProgress, now: number): { rate: number | null; eta: number | null } {
    if (p.phase !== this.phase) {
      this.phase = p.phase;
      this.since = now;
      this.from = p.done;
      return { rate: null, eta: null };
    }
    const seconds = (now - this.since) / 1000;
    if (seconds < 1 || p.done <= this.from) return { rate: null, eta: null };
    const rate = (p.done - this.from) / seconds;
    return { rate, eta: p.total !== null && p.total > p.done ? (p.total - p.done) / rate : null };
  }
}

/** One source's progress as a line of text (the non-TTY form, and the tests' view of the TTY's fields). */
export function describeProgress(p: PhaseProgress, timing: { rate: number | null; eta: number | null }): string {
  if (p.phase === 'done') return `done (${formatCount(p.done)} ${p.unit})`;
  if (p.total === null) return p.done > 0 ? `${p.phase} ${formatCount(p.done)} ${p.unit}` : p.phase;
  const rate = timing.rate === null ? '' : `, ${formatCount(Math.round(timing.rate))} ${p.unit}/s, ETA ${formatEta(timing.eta)}`;
  return `${p.phase} ${formatCount(p.done)}/${p.estimate ? '~' : ''}${formatCount(p.total)} ${p.unit}${rate}`;
}

export async function followJobs(
  queue: JobQueue,
  jobs: Followed[],
  options: {
    tty: boolean;
    write: (line: string) => void;
    pollMs?: number;
    timeoutMs?: number;
    /** Say that no agent claims the jobs once none was claimed for this long (default 30 s). */
    unclaimedNoteMs?: number;
    /** Stop following (Ctrl-C): the jobs go on; the rest are returned as interrupted. */
    signal?: AbortSignal;
  },
): Promise<FollowResult> {
  const pending = new Map(jobs.map((j) => [j.jobId, j]));
  const result: FollowResult = { succeeded: [], unreconciled: [], failed: [], interrupted: [] };
  const started = Date.now();
  const bars = options.tty
    ? new cliProgress.MultiBar(
        { format: ' {source} |{bar}| {line}', hideCursor: true, clearOnComplete: false, stopOnComplete: false, barsize: 24 },
        cliProgress.Presets.shades_classic,
      )
    : undefined;
  const bar = new Map(jobs.map((j) => [j.jobId, bars?.create(1, 0, { source: `${j.tenant}/${j.source}`.padEnd(24), line: 'queued' })]));
  const clocks = new Map(jobs.map((j) => [j.jobId, new PhaseClock()]));
  const lastLine = new Map<string, string>();
  const note = (line: string) => (bars ? bars.log(`${line}\n`) : options.write(line));
  let claimedAny = false;
  let unclaimedNoted = false;
  try {
    while (pending.size > 0 && !options.signal?.aborted) {
      const views = await queue.getJobs([...pending.keys()]);
      const now = Date.now();
      for (const view of views) {
        const followed = pending.get(view.id)!;
        const p = progressOf(view);
        if (view.status !== 'queued' || view.attempts > 0) claimedAny = true;
        const text = describeProgress(p, clocks.get(view.id)!.measure(p, now));
        const b = bar.get(view.id);
        b?.setTotal(Math.max(p.total ?? 0, p.done, 1));
        b?.update(p.phase === 'done' ? Math.max(p.total ?? 0, p.done, 1) : p.done, { line: text });
        if (!options.tty) {
          const line = `${followed.tenant}/${followed.source}: ${text}`;
          if (lastLine.get(view.id) !== line) options.write(line);
          lastLine.set(view.id, line);
        }
        const unreconciled = (view.stats as { unreconciled?: { problems: string[]; action: string } } | null)?.unreconciled;
        const retry = (view.stats as { pushRetry?: { at: string; cause: string } } | null)?.pushRetry;
        if (view.status === 'succeeded') {
          pending.delete(view.id);
          if (unreconciled) {
            result.unreconciled.push({ ...followed, problems: unreconciled.problems, action: unreconciled.action });
            b?.update({ line: `${text}, unreconciled` });
          } else {
            result.succeeded.push(followed);
          }
        } else if (view.status === 'dead') {
          pending.delete(view.id);
          result.failed.push({ ...followed, status: view.status, error: view.lastError ?? 'unknown error' });
          b?.update({ line: 'failed' });
        } else if (view.status === 'running' && retry && Date.parse(retry.at) > started - 1000) {
          const line = `${followed.tenant}/${followed.source}: push failing, retrying: ${retry.cause}`;
          if (lastLine.get(`${view.id}:retry`) !== retry.at) note(line);
          lastLine.set(`${view.id}:retry`, retry.at);
        } else if (view.status === 'queued' && view.attempts > 0 && view.lastError) {
          const line = `${followed.tenant}/${followed.source}: attempt ${view.attempts} failed, retrying: ${view.lastError}`;
          if (lastLine.get(`${view.id}:err`) !== line) note(line);
          lastLine.set(`${view.id}:err`, line);
        }
      }
      for (const id of pending.keys()) {
        if (!views.some((v) => v.id === id)) {
          // pruned or unknown: treat as finished without detail
          const followed = pending.get(id)!;
          pending.delete(id);
          result.failed.push({ ...followed, status: 'missing', error: 'job no longer exists' });
        }
      }
      if (pending.size === 0) break;
      const waited = Date.now() - started;
      if (!claimedAny && !unclaimedNoted && waited >= (options.unclaimedNoteMs ?? 30_000)) {
        unclaimedNoted = true;
        note(`No agent has claimed these jobs for ${Math.round(waited / 1000)} s; is \`cdc-agent run\` running against this control database?`);
      }
      if (options.timeoutMs !== undefined && waited > options.timeoutMs) {
        for (const followed of pending.values()) result.failed.push({ ...followed, status: 'timeout', error: 'still running when --timeout expired' });
        pending.clear();
        break;
      }
      // A poll's sleep ends early on Ctrl-C; its listener goes with it, so a long wait does not pile them up.
      await new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(() => {
          options.signal?.removeEventListener('abort', wake);
          resolve();
        }, options.pollMs ?? 500);
        options.signal?.addEventListener('abort', wake, { once: true });
      });
    }
  } finally {
    // Stopping the bars also shows the terminal's cursor again.
    bars?.stop();
  }
  result.interrupted.push(...pending.values());
  return result;
}
