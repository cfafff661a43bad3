import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { backoffCeilingMs, backoffDelayMs, backoffRange, DEFAULT_BACKOFF } from '../../src/queue-table/backoff.ts';

function seconds(cell: string): number {
  const m = /^([\d.]+) s$/.exec(cell.trim());
  if (!m) throw new Error(`not a duration in seconds: ${cell}`);
  return Number(m[1]) * 1000;
}

describe('backoff', () => {
  it('follows the table in docs/failure-semantics.md', async () => {
    const doc = await readFile(new URL('../../docs/failure-semantics.md', import.meta.url), 'utf8');
    const rows = [...doc.matchAll(/^\| (\d+)( and later)? \| ([^|]+) \| ([^|]+) \|$/gm)];
    expect(rows.length).toBeGreaterThanOrEqual(8);
    for (const [, attempt, andLater, min, max] of rows) {
      const attempts = andLater ? [Number(attempt), Number(attempt) + 1, 50, 10_000] : [Number(attempt)];
      for (const a of attempts) {
        expect({ attempt: a, ...backoffRange(a) }).toEqual({ attempt: a, minMs: seconds(min!), maxMs: seconds(max!) });
      }
    }
    // the table ends where the cap is reached
    const last = rows.at(-1)!;
    expect(last[2]).toBe(' and later');
    expect(backoffCeilingMs(Number(last[1]))).toBe(DEFAULT_BACKOFF.maxMs);
    expect(backoffCeilingMs(Number(last[1]) - 1)).toBeLessThan(DEFAULT_BACKOFF.maxMs);
  });

  it('stays within [ceiling/2, ceiling) with equal jitter and spreads across that range', () => {
    let state = 42;
    const random = () => ((state = (state * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31);
    for (let attempt = 1; attempt <= 12; attempt++) {
      const ceiling = backoffCeilingMs(attempt);
      const delays = Array.from({ length: 200 }, () => backoffDelayMs(attempt, DEFAULT_BACKOFF, random));
      expect(Math.min(...delays)).toBeGreaterThanOrEqual(ceiling / 2);
      expect(Math.max(...delays)).toBeLessThan(ceiling);
      expect(new Set(delays).size).toBeGreaterThan(100);
    }
  });

  it('supports full and no jitter, and is bounded for any attempt number', () => {
    const policy = { baseMs: 1_000, factor: 3, maxMs: 60_000 };
    expect([1, 2, 3, 4, 5].map((a) => backoffDelayMs(a, { ...policy, jitter: 'none' }))).toEqual([1_000, 3_000, 9_000, 27_000, 60_000]);
    expect(backoffDelayMs(3, { ...policy, jitter: 'full' }, () => 0)).toBe(0);
    expect(backoffDelayMs(3, { ...policy, jitter: 'full' }, () => 0.5)).toBe(4_500);
    expect(backoffDelayMs(1_000_000, { ...policy, jitter: 'none' })).toBe(60_000);
    // attempt numbers below 1 count as the first attempt
    expect(backoffRange(0)).toEqual(backoffRange(1));
  });
});
