/**
 * Following enqueued jobs until they finish (`onboard --wait`, `sync --wait`): a progress bar per source on a
 * TTY (rows, rate, ETA), plain progress lines otherwise.
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
}

function rowsOf(view: JobView): { done: number; total: number; phase: string } {
  const s = (view.stats ?? {}) as Record<string, number | undefined>;
  const phase = view.phase ?? (view.status === 'queued' ? 'queued' : view.status);
  if (phase === 'snapshot') return { done: s.snapshotRows ?? 0, total: s.sourceRows ?? 0, phase };
  if (phase === 'push') return { done: s.batchesAcked ?? 0, total: s.batches ?? 0, phase };
  return { done: 0, total: 0, phase };
}

export async function followJobs(
  queue: JobQueue,
  jobs: Followed[],
  options: { tty: boolean; write: (line: string) => void; pollMs?: number; timeoutMs?: number },
): Promise<FollowResult> {
  const pending = new Map(jobs.map((j) => [j.jobId, j]));
  const result: FollowResult = { succeeded: [], unreconciled: [], failed: [] };
  const started = Date.now();
  const bars = options.tty
    ? new cliProgress.MultiBar(
        { format: ' {source} |{bar}| {phase} {value}/{total} {unit} | {rate}/s | ETA {eta_formatted}', hideCursor: true, clearOnComplete: false, stopOnComplete: false },
        cliProgress.Presets.shades_classic,
      )
    : undefined;
  const bar = new Map(jobs.map((j) => [j.jobId, bars?.create(1, 0, { source: `${j.tenant}/${j.source}`.padEnd(24), phase: 'queued', unit: '', rate: 0 })]));
  const lastLine = new Map<string, string>();
  try {
    while (pending.size > 0) {
      const views = await queue.getJobs([...pending.keys()]);
      for (const view of views) {
        const followed = pending.get(view.id)!;
        const { done, total, phase } = rowsOf(view);
        const seconds = Math.max(1, (Date.now() - started) / 1000);
        const unit = phase === 'push' ? 'batches' : 'rows';
        bar.get(view.id)?.setTotal(Math.max(total, done, 1));
        bar.get(view.id)?.update(done, { phase, unit, rate: Math.round(done / seconds) });
        if (!options.tty) {
          const line = `${followed.tenant}/${followed.source}: ${phase}${total ? ` ${done}/${total} ${unit}` : ''}`;
          if (lastLine.get(view.id) !== line) options.write(line);
          lastLine.set(view.id, line);
        }
        const unreconciled = (view.stats as { unreconciled?: { problems: string[]; action: string } } | null)?.unreconciled;
        if (view.status === 'succeeded' && unreconciled) {
          pending.delete(view.id);
          result.unreconciled.push({ ...followed, problems: unreconciled.problems, action: unreconciled.action });
          if (!options.tty) options.write(`${followed.tenant}/${followed.source}: done, unreconciled`);
        } else if (view.status === 'succeeded') {
          pending.delete(view.id);
          result.succeeded.push(followed);
          if (!options.tty) options.write(`${followed.tenant}/${followed.source}: done`);
        } else if (view.status === 'dead' || (view.status === 'queued' && view.attempts > 0 && view.lastError)) {
          if (view.status === 'dead') {
            pending.delete(view.id);
            result.failed.push({ ...followed, status: view.status, error: view.lastError ?? 'unknown error' });
          } else if (!options.tty) {
            const line = `${followed.tenant}/${followed.source}: attempt ${view.attempts} failed, retrying: ${view.lastError}`;
            if (lastLine.get(`${view.id}:err`) !== line) options.write(line);
            lastLine.set(`${view.id}:err`, line);
          }
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
      if (options.timeoutMs !== undefined && Date.now() - started > options.timeoutMs) {
        for (const followed of pending.values()) result.failed.push({ ...followed, status: 'timeout', error: 'still running when --timeout expired' });
        break;
      }
      await new Promise((r) => setTimeout(r, options.pollMs ?? 500));
    }
  } finally {
    bars?.stop();
  }
  return result;
}
