/**
 * The dataset digest of the Data Push API (docs/data-push-api.md "GET …/digest"): row counts and an
 * order-independent digest per key bucket, over the canonical text of each row, so that `cdc-agent verify` can
 * prove a receiver's copy whole without re-sending it. The agent computes it from the source and from staging,
 * the reference receiver from what it stores; both through this module.
 *
 * - row text: the upsert's `row` object exactly as the agent sends it, which is what ECMAScript's
 *   `JSON.stringify` makes of the row with its properties in the schema's column order;
 * - key text: `JSON.stringify` of the array of the key columns' values, in the schema's key order;
 * - bucket: the first 4 bytes of SHA-256(key text), big-endian, modulo the bucket count;
 * - row hash: the first 8 bytes of SHA-256(row text), big-endian, as an unsigned 64-bit integer;
 * - a bucket's digest: the sum of its rows' hashes modulo 2^64, as 16 lower-case hex digits.
 */
import { createHash } from 'node:crypto';
import type { WireValue } from './wire.ts';

export const DIGEST_ALGORITHM = 'cdc-digest-v1';
export const DEFAULT_BUCKETS = 256;
export const MAX_BUCKETS = 65_536;
const MASK = (1n << 64n) - 1n;

/** The answer of the digest endpoint (without `bucket`), and what the agent computes for the same rows. */
export interface DatasetDigest {
  algorithm: typeof DIGEST_ALGORITHM;
  buckets: number;
  rows: number;
  /** Rows per bucket, `buckets` entries. */
  counts: number[];
  /** Each bucket's digest (16 hex digits; `0000000000000000` for an empty bucket). */
  sums: string[];
}

/** One row of a bucket as the digest endpoint lists it with `bucket=N`: its key and its row hash. */
export interface KeyHash {
  key: Record<string, WireValue>;
  hash: string;
}

export function keyText(values: readonly WireValue[]): string {
  return JSON.stringify(values);
}

export function bucketOf(key: string, buckets: number): number {
  return createHash('sha256').update(key, 'utf8').digest().readUInt32BE(0) % buckets;
}

export function rowHash(rowText: string | Buffer): bigint {
  return createHash('sha256').update(rowText).digest().readBigUInt64BE(0);
}

export function hex64(value: bigint): string {
  return value.toString(16).padStart(16, '0');
}

/** Sums rows into buckets in constant memory per bucket. */
export class DigestBuilder {
  readonly buckets: number;
  private readonly counts: number[];
  private readonly sums: bigint[];
  private total = 0;

  constructor(buckets = DEFAULT_BUCKETS) {
    if (!Number.isInteger(buckets) || buckets < 1 || buckets > MAX_BUCKETS) throw new RangeError(`buckets must be an integer from 1 to ${MAX_BUCKETS}; got ${buckets}`);
    this.buckets = buckets;
    this.counts = new Array<number>(buckets).fill(0);
    this.sums = new Array<bigint>(buckets).fill(0n);
  }

  /** Add one row: its key text and row text; returns the bucket and row hash. */
  add(key: string, rowText: string | Buffer): { bucket: number; hash: bigint } {
    const bucket = bucketOf(key, this.buckets);
    const hash = rowHash(rowText);
    this.counts[bucket]!++;
    this.sums[bucket] = (this.sums[bucket]! + hash) & MASK;
    this.total++;
    return { bucket, hash };
  }

  result(): DatasetDigest {
    return { algorithm: DIGEST_ALGORITHM, buckets: this.buckets, rows: this.total, counts: [...this.counts], sums: this.sums.map(hex64) };
  }
}

/** Buckets whose count or digest differ between two digests of the same bucket count. */
export function differingBuckets(a: DatasetDigest, b: DatasetDigest): number[] {
  if (a.buckets !== b.buckets) throw new RangeError(`digests of ${a.buckets} and ${b.buckets} buckets cannot be compared`);
  const out: number[] = [];
  for (let i = 0; i < a.buckets; i++) if (a.counts[i] !== b.counts[i] || a.sums[i] !== b.sums[i]) out.push(i);
  return out;
}

export function digestPath(tenant: string, dataset: string): string {
  return `/tenants/${encodeURIComponent(tenant)}/datasets/${encodeURIComponent(dataset)}/digest`;
}
