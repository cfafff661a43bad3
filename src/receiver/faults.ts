/**
 * Fault injection for tests and demos: a seeded generator decides, request by request, whether to delay,
 * reset the connection, fail with 5xx, throttle with 429 + Retry-After, or reject batches with 422.
 */

export interface FaultOptions {
  /** Share of requests answered 500. */
  failRate?: number;
  /** Share of requests answered 429 with Retry-After (alternately delta-seconds and an HTTP-date). */
  throttleRate?: number;
  /** Seconds in Retry-After on a throttle (default 1). */
  retryAfterSeconds?: number;
  /** Delay before each request is handled. */
  latencyMs?: number;
  /** Share of requests whose connection is destroyed, half before and half after the batch is applied. */
  resetRate?: number;
  /** Largest request body accepted, counted after gzip decoding; larger ones get 413. */
  maxBodyBytes?: number;
  /** Batch numbers refused with 422 (a permanent failure), for every run. */
  rejectBatches?: number[];
}

export type FaultDecision =
  | { kind: 'none' }
  | { kind: 'fail' }
  | { kind: 'throttle'; retryAfter: string }
  | { kind: 'reset'; afterApply: boolean };

/** mulberry32: small, fast, and the same sequence for the same seed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class FaultInjector {
  private readonly options: FaultOptions;
  private readonly random: () => number;
  private throttles = 0;

  constructor(options: FaultOptions, seed: number) {
    this.options = options;
    this.random = seededRandom(seed);
  }

  get latencyMs(): number {
    return this.options.latencyMs ?? 0;
  }

  rejects(batch: number): boolean {
    return this.options.rejectBatches?.includes(batch) ?? false;
  }

  decide(now = Date.now()): FaultDecision {
    const { resetRate = 0, failRate = 0, throttleRate = 0 } = this.options;
    const r = this.random();
    if (r < resetRate) return { kind: 'reset', afterApply: this.random() < 0.5 };
    if (r < resetRate + failRate) return { kind: 'fail' };
    if (r < resetRate + failRate + throttleRate) {
      const seconds = this.options.retryAfterSeconds ?? 1;
      const asDate = this.throttles++ % 2 === 1;
      return { kind: 'throttle', retryAfter: asDate ? new Date(now + seconds * 1000).toUTCString() : String(seconds) };
    }
    return { kind: 'none' };
  }
}
