/**
 * Where CPU goes while a benchmark phase runs (Linux /proc): processes by pid, and PostgreSQL backends by the
 * session that caused them (database, application_name) and by the statement they ran. CPU-seconds are the
 * figure to compare across runs on a shared machine; wall time moves with whatever else runs.
 */
import { readFile, readdir } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import type { Db } from '../src/dialect/types.ts';

/** Fields of a /proc/<pid>/stat line after the command name. */
function statFields(stat: string): string[] {
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/** CPU seconds in a /proc/<pid>/stat line: user + system, plus with `reaped` what its exited children used. */
function statCpuSeconds(stat: string, reaped = false): number {
  const f = statFields(stat);
  return (Number(f[11]) + Number(f[12]) + (reaped ? Number(f[13]) + Number(f[14]) : 0)) / 100;
}

/**
 * CPU seconds a process (all its threads) has used so far; NaN once it is gone. From each thread's
 * /proc/<pid>/task/<tid>/schedstat (nanoseconds on a CPU) where the kernel has it, since /proc/<pid>/stat counts
 * 10 ms ticks, too coarse for a run that costs its source 20 ms; else user + system from stat. (A thread that
 * exited is missing from the sum; Node's and PostgreSQL's threads live as long as the process.)
 */
export async function cpuSeconds(pid: number): Promise<number> {
  const tasks = await readdir(`/proc/${pid}/task`).catch(() => [] as string[]);
  let ns = 0;
  let seen = 0;
  for (const tid of tasks) {
    const sched = await readFile(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').catch(() => '');
    if (!sched) continue;
    ns += Number(sched.split(' ')[0]);
    seen++;
  }
  if (seen > 0) return ns / 1e9;
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  return stat ? statCpuSeconds(stat) : NaN;
}

/** Resident set size of a process in bytes; 0 once it is gone. */
export async function rssOf(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  const m = /VmRSS:\s+(\d+) kB/.exec(status);
  return m ? Number(m[1]) * 1024 : 0;
}

/** The postmaster of a local server (the parent of the session's backend); undefined when it is not local. */
export async function postmasterOf(db: Db): Promise<number | undefined> {
  const [row] = await db.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  const stat = await readFile(`/proc/${row!.pid}/stat`, 'utf8').catch(() => '');
  return stat ? Number(statFields(stat)[1]) : undefined;
}

/**
 * CPU seconds used so far by one local PostgreSQL server: its postmaster (with what it reaped of exited backends)
 * and its live children; not the other servers on the machine (Babelfish's runs beside it here).
 */
export async function serverCpuSeconds(postmaster: number | undefined): Promise<number> {
  if (postmaster === undefined) return NaN;
  let total = 0;
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    if (stat && (Number(entry) === postmaster || Number(statFields(stat)[1]) === postmaster)) total += statCpuSeconds(stat, Number(entry) === postmaster);
  }
  return total;
}

/** The machine's 1-minute load average. */
export async function loadAverage(): Promise<number> {
  return Number((await readFile('/proc/loadavg', 'utf8')).split(' ')[0]);
}

export type Session = {
  pid: number;
  database: string | null;
  application: string;
  backendType: string;
  query: string;
};

/** A statement's text with literals, numbers and per-source names folded, so that repeats add up. */
export function statementKey(query: string): string {
  return query
    .replace(/\s+/g, ' ')
    .replace(/'(?:[^']|'')*'/g, "'…'")
    .replace(/\$\d+/g, '$n')
    .replace(/\b\d+(\.\d+)?\b/g, 'N')
    .replace(/src_t\w*/g, 'src_tNN')
    .trim()
    .slice(0, 110);
}

export interface CpuSampler {
  /** Settles once the first sample is taken: await it before the work starts, or the baseline may come after it. */
  ready: Promise<void>;
  /**
   * The samples' totals: CPU-s by phase, then by who (process labels and backend groups); by statement; in all;
   * and the job-seconds spent in each phase (two jobs in one phase for 1 s: 2).
   */
  stop(): Promise<{ byPhase: Record<string, Record<string, number>>; byStatement: Record<string, number>; total: Record<string, number>; phaseSeconds: Record<string, number> }>;
}

/**
 * Sample every `intervalMs` until stopped: each process's CPU (by label), and each PostgreSQL backend's CPU
 * charged to `group(session)` (null: not counted; the harness's own sessions). Each interval's CPU goes to the
 * phase(s) `phases()` names at its end, split evenly when several jobs run at once. Backends of `statements`
 * groups are also charged, per interval, to the statement pg_stat_activity shows for them at its end (the
 * running one, or the last one run). A backend that starts after the first sample counts from zero CPU (its
 * connection set-up is part of the phase); one that exits between two samples loses what it used since the last
 * (the agent's pools keep connections for 10 s, so a final sample right after the phase still sees them).
 * Work that never yields to the event loop (a COPY fed from a synchronous generator) delays the samples until it
 * ends, which moves CPU between phases but loses none once `ready` was awaited before it.
 */
export function sampleCpu(
  db: Db,
  options: {
    processes: Record<string, number>;
    group: (session: Session) => string | null;
    phases?: () => Promise<string[]>;
    statements?: readonly string[];
    intervalMs?: number;
  },
): CpuSampler {
  const intervalMs = options.intervalMs ?? 100;
  const last = new Map<string, number>();
  const byPhase: Record<string, Record<string, number>> = {};
  const byStatement: Record<string, number> = {};
  const total: Record<string, number> = {};
  const phaseSeconds: Record<string, number> = {};
  let lastAt = performance.now();
  let first = true;
  let startedAt = '';
  let stopped = false;
  const charge = (phases: string[], who: string, cpu: number) => {
    if (!(cpu > 0)) return;
    total[who] = (total[who] ?? 0) + cpu;
    for (const phase of phases) {
      const row = (byPhase[phase] ??= {});
      row[who] = (row[who] ?? 0) + cpu / phases.length;
    }
  };
  const sample = async () => {
    const phases = options.phases ? await options.phases() : ['run'];
    const where = phases.length > 0 ? phases : ['between jobs'];
    const now = performance.now();
    if (!first) for (const phase of phases) phaseSeconds[phase] = (phaseSeconds[phase] ?? 0) + (now - lastAt) / 1000;
    lastAt = now;
    for (const [label, pid] of Object.entries(options.processes)) {
      const cpu = await cpuSeconds(pid);
      if (Number.isNaN(cpu)) continue;
      const key = `p${pid}`;
      const before = last.get(key);
      last.set(key, cpu);
      if (before !== undefined) charge(where, label, cpu - before);
    }
    const sessions = await db.query<Session & { fresh: boolean; now: string }>(
      `SELECT pid, datname AS database, application_name AS application, backend_type AS "backendType", COALESCE(query, '') AS query,
              backend_start > $1::timestamptz AS fresh, clock_timestamp()::text AS now
         FROM pg_stat_activity WHERE pid <> pg_backend_pid()`,
      [first ? 'infinity' : startedAt],
    );
    if (first) startedAt = sessions[0]?.now ?? new Date().toISOString();
    for (const s of sessions) {
      const who = options.group(s);
      if (who === null) continue;
      const cpu = await cpuSeconds(s.pid);
      if (Number.isNaN(cpu)) continue;
      const key = `b${s.pid}`;
      const before = last.get(key) ?? (first || !s.fresh ? undefined : 0);
      last.set(key, cpu);
      if (before === undefined) continue;
      charge(where, who, cpu - before);
      if (options.statements?.includes(who) && cpu - before > 0) {
        const k = `${who}: ${statementKey(s.query)}`;
        byStatement[k] = (byStatement[k] ?? 0) + (cpu - before);
      }
    }
    first = false;
  };
  const firstSample = sample();
  const loop = (async () => {
    await firstSample;
    while (!stopped) {
      await new Promise((r) => setTimeout(r, intervalMs));
      await sample();
    }
  })();
  const round = (o: Record<string, number>) => Object.fromEntries(Object.entries(o).map(([k, v]) => [k, Math.round(v * 1000) / 1000]));
  return {
    ready: firstSample,
    async stop() {
      stopped = true;
      await loop;
      return {
        byPhase: Object.fromEntries(Object.entries(byPhase).map(([k, v]) => [k, round(v)])),
        byStatement: round(Object.fromEntries(Object.entries(byStatement).sort((a, b) => b[1] - a[1]))),
        total: round(total),
        phaseSeconds: round(phaseSeconds),
      };
    },
  };
}
