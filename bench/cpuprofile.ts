/**
 * Reading a V8 `--cpu-prof` profile: self time by function, within time windows. The samples' timestamps are
 * the monotonic clock in µs, the same clock as `process.hrtime.bigint()` (ns) in the harness, so a bench can
 * mark each phase with `monotonicUs()` and ask where the agent's CPU went in it.
 */
import { readdir, readFile } from 'node:fs/promises';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

export interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** Now, on the profile's clock (µs). */
export function monotonicUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

/** The newest `.cpuprofile` written to `dir` since `sinceMs` (epoch ms), or undefined. */
export async function newestProfile(dir: string, sinceMs: number): Promise<string | undefined> {
  const files = (await readdir(dir).catch(() => [] as string[])).filter((f) => f.endsWith('.cpuprofile'));
  // Node names them CPU.<date>.<time>.<pid>.<tid>.<seq>.cpuprofile; the newest sorts last.
  const fresh: string[] = [];
  for (const f of files.sort()) {
    const m = /^CPU\.(\d{4})(\d{2})(\d{2})\.(\d{2})(\d{2})(\d{2})\./.exec(f);
    if (!m) continue;
    const at = new Date(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6])).getTime();
    if (at >= sinceMs - 1000) fresh.push(f);
  }
  return fresh.length ? `${dir}/${fresh[fresh.length - 1]}` : undefined;
}

/** A function's name with where it is (`readCells src/dialect/postgres.ts:210`), node_modules shortened. */
function frameName(node: ProfileNode): string {
  const { functionName, url, lineNumber } = node.callFrame;
  if (!url) return functionName || '(anonymous)';
  const file = url.replace(/^file:\/\//, '').replace(/^.*?\/(node_modules\/|src\/|dist\/|bench\/)/, '$1').replace(/^node:/, 'node:');
  return `${functionName || '(anonymous)'} ${file}:${lineNumber + 1}`;
}

/**
 * Self milliseconds by function in each window (`[fromUs, toUs]` on the profile's clock), the top `top` of
 * each, plus the window's totals of busy (every sample but idle) and idle time.
 */
export async function profileByWindow(path: string, windows: Record<string, [number, number]>, top = 15): Promise<Record<string, ProfileSummary>> {
  return summarizeProfile(JSON.parse(await readFile(path, 'utf8')) as Profile, windows, top);
}

export interface ProfileSummary {
  busyMs: number;
  idleMs: number;
  gcMs: number;
  functions: Array<[string, number]>;
}

/** The same for a profile already in memory (one taken in-process through node:inspector); no windows: all of it. */
export function summarizeProfile(profile: Profile, windows: Record<string, [number, number]> = { all: [-Infinity, Infinity] }, top = 15): Record<string, ProfileSummary> {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const out: Record<string, { busyMs: number; idleMs: number; gcMs: number; self: Map<string, number> }> = {};
  for (const name of Object.keys(windows)) out[name] = { busyMs: 0, idleMs: 0, gcMs: 0, self: new Map() };
  let t = profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i] ?? 0;
    // A sample stands for the time until the next one.
    const ms = (profile.timeDeltas[i + 1] ?? 0) / 1000;
    const node = byId.get(profile.samples[i]!);
    if (!node) continue;
    const name = frameName(node);
    for (const [w, [from, to]] of Object.entries(windows)) {
      if (t < from || t > to) continue;
      const o = out[w]!;
      if (name === '(idle)') o.idleMs += ms;
      else {
        o.busyMs += ms;
        if (name === '(garbage collector)') o.gcMs += ms;
        o.self.set(name, (o.self.get(name) ?? 0) + ms);
      }
    }
  }
  const round = (x: number) => Math.round(x);
  return Object.fromEntries(
    Object.entries(out).map(([w, o]) => [
      w,
      {
        busyMs: round(o.busyMs),
        idleMs: round(o.idleMs),
        gcMs: round(o.gcMs),
        functions: [...o.self.entries()].sort((a, b) => b[1] - a[1]).slice(0, top).map(([k, v]) => [k, round(v)] as [string, number]),
      },
    ]),
  );
}
