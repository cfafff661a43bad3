/** Durations in configuration: `250ms`, `30s`, `15m`, `2h`, `1d`, or a bare number of seconds. */
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

export function parseDurationMs(input: string | number): number | undefined {
  if (typeof input === 'number') return Number.isFinite(input) && input >= 0 ? Math.round(input * 1000) : undefined;
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(input);
  if (!match) return undefined;
  const unit = UNIT_MS[match[2] ?? 's'] ?? 1000;
  return Math.round(Number(match[1]) * unit);
}

/** A duration in milliseconds as configuration spells it: the largest unit that divides it (`15m`, `90s`, `250ms`). */
export function formatDurationMs(ms: number): string {
  if (ms === 0) return '0s';
  for (const unit of ['d', 'h', 'm', 's'] as const) if (ms % UNIT_MS[unit]! === 0) return `${ms / UNIT_MS[unit]!}${unit}`;
  return `${ms}ms`;
}

/** The configuration's duration settings by key: shown as written (formatDurationMs) by `config check`. */
export const DURATION_KEYS: ReadonlySet<string> = new Set([
  'statementTimeout', 'connectTimeout', 'requestTimeout', 'every', 'jitter', 'mismatchResyncEvery', 'timeout', 'cacheTtl', 'pollInterval',
  'keyDiffEvery', 'fullDiffEvery', 'overlap',
]);
