/**
 * Retry delays for transient job failures: exponential, bounded, with jitter so that jobs that failed
 * together (a receiver outage) do not retry together. docs/failure-semantics.md shows the table; a test
 * keeps that table and this function in agreement.
 */

export interface BackoffPolicy {
  /** Delay ceiling after the first failed attempt. */
  baseMs: number;
  /** Growth of the ceiling per further attempt. */
  factor: number;
  /** Largest ceiling, whatever the attempt. */
  maxMs: number;
  /**
   * `equal`: uniformly in [ceiling/2, ceiling] (never retries at once, still spreads);
   * `full`: uniformly in [0, ceiling]; `none`: exactly the ceiling.
   */
  jitter: 'equal' | 'full' | 'none';
}

export const DEFAULT_BACKOFF: BackoffPolicy = { baseMs: 5_000, factor: 2, maxMs: 600_000, jitter: 'equal' };

/** The ceiling for `attempt` (1 = the first attempt failed), before jitter. */
export function backoffCeilingMs(attempt: number, policy: BackoffPolicy = DEFAULT_BACKOFF): number {
  const n = Math.max(1, Math.floor(attempt));
  // factor ** (n - 1) overflows to Infinity for large n; min() keeps it at the cap.
  return Math.round(Math.min(policy.maxMs, policy.baseMs * policy.factor ** (n - 1)));
}

/** Delay before retrying after `attempt` failed. `random` returns [0, 1), like Math.random. */
export function backoffDelayMs(attempt: number, policy: BackoffPolicy = DEFAULT_BACKOFF, random: () => number = Math.random): number {
  const ceiling = backoffCeilingMs(attempt, policy);
  const r = Math.min(Math.max(random(), 0), 1);
  switch (policy.jitter) {
    case 'none':
      return ceiling;
    case 'full':
      return Math.floor(r * ceiling);
    case 'equal': {
      const half = Math.floor(ceiling / 2);
      return half + Math.floor(r * (ceiling - half));
    }
  }
}

/** Smallest and largest delay after `attempt` failed, for documentation and tests. */
export function backoffRange(attempt: number, policy: BackoffPolicy = DEFAULT_BACKOFF): { minMs: number; maxMs: number } {
  return { minMs: backoffDelayMs(attempt, policy, () => 0), maxMs: backoffCeilingMs(attempt, policy) };
}
