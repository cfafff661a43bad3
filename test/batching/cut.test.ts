import { describe, expect, it } from 'vitest';
import { cutAll } from '../../src/batching/cut.ts';
import { encodeCell, encodeChange } from '../../src/contract/wire.ts';
import { parseRetryAfter } from '../../src/push/errors.ts';
import { halves } from '../../src/push/push.ts';

const changes = (sizes: number[]) => sizes.map((bytes, i) => ({ seq: BigInt(i + 1), bytes, op: (i % 3 === 0 ? 'D' : 'U') as 'U' | 'D' }));

describe('batch cutting', () => {
  it('closes a batch at maxRows', () => {
    const plans = cutAll(changes(Array(25).fill(10)), { maxRows: 10, maxBytes: 1_000_000 });
    expect(plans.map((p) => [p.batchNo, p.firstSeq, p.lastSeq, p.rows])).toEqual([
      [1, 1n, 10n, 10],
      [2, 11n, 20n, 10],
      [3, 21n, 25n, 5],
    ]);
    expect(plans.reduce((n, p) => n + p.upserts + p.deletes, 0)).toBe(25);
  });

  it('closes a batch before it would exceed maxBytes, and lets an oversized change travel alone', () => {
    const plans = cutAll(changes([40, 40, 30, 500, 10, 90, 11]), { maxRows: 100, maxBytes: 100 });
    expect(plans.map((p) => [p.firstSeq, p.lastSeq, p.bytes])).toEqual([
      [1n, 2n, 80],
      [3n, 3n, 30],
      [4n, 4n, 500],
      [5n, 6n, 100],
      [7n, 7n, 11],
    ]);
  });

  it('gives the same boundaries for the same changes (I3) and refuses out-of-order seq', () => {
    const sizes = Array.from({ length: 500 }, (_, i) => (i * 37) % 91);
    expect(cutAll(changes(sizes), { maxRows: 7, maxBytes: 300 })).toEqual(cutAll(changes(sizes), { maxRows: 7, maxBytes: 300 }));
    expect(() => cutAll([{ seq: 2n, bytes: 1, op: 'U' }, { seq: 1n, bytes: 1, op: 'U' }], { maxRows: 10, maxBytes: 10 })).toThrow(/increasing seq/);
  });

  it('splits a refused batch into deterministic halves', () => {
    expect(halves([1, 2, 3, 4, 5])).toEqual([[1, 2, 3], [4, 5]]);
    expect(halves([1])).toEqual([[1], []]);
  });
});

describe('contract encoding', () => {
  it('encodes every type losslessly', () => {
    expect(encodeCell(9223372036854775807n, { kind: 'int64' })).toBe('9223372036854775807');
    expect(encodeCell('-12345678901234567890.1234567890', { kind: 'decimal', precision: 38, scale: 10 })).toBe('-12345678901234567890.1234567890');
    expect(encodeCell(Buffer.from([0, 255, 1]), { kind: 'binary', maxLength: null })).toBe('AP8B');
    expect(encodeCell('123E4567-E89B-12D3-A456-426614174000', { kind: 'uuid' })).toBe('123e4567-e89b-12d3-a456-426614174000');
    expect(encodeCell('2024-02-29T23:59:59.9999999', { kind: 'timestamp', precision: 7 })).toBe('2024-02-29T23:59:59.9999999');
    expect(encodeCell(Number.NaN, { kind: 'float64' })).toBe('NaN');
    expect(encodeCell(-Infinity, { kind: 'float64' })).toBe('-Infinity');
    expect(encodeCell(0.1, { kind: 'float64' })).toBe(0.1);
    expect(encodeCell(null, { kind: 'int32' })).toBeNull();
  });

  it('renders upserts with every column and deletes with the key only, in schema order', () => {
    const columns = [
      { name: 'b', type: { kind: 'int32' as const }, nullable: false },
      { name: 'a', type: { kind: 'string' as const, maxLength: null }, nullable: true },
    ];
    expect(encodeChange('U', [1, 'x"y'], columns, [0])).toBe('{"op":"upsert","row":{"b":1,"a":"x\\"y"}}');
    expect(encodeChange('D', [1, null], columns, [0])).toBe('{"op":"delete","key":{"b":1}}');
  });
});

describe('Retry-After', () => {
  it('reads delta-seconds and HTTP-dates', () => {
    const now = Date.parse('2025-01-01T00:00:00Z');
    expect(parseRetryAfter('7', now)).toBe(7_000);
    expect(parseRetryAfter('Wed, 01 Jan 2025 00:00:30 GMT', now)).toBe(30_000);
    expect(parseRetryAfter('Tue, 31 Dec 2024 23:00:00 GMT', now)).toBe(0);
    expect(parseRetryAfter('soon', now)).toBeUndefined();
    expect(parseRetryAfter(undefined, now)).toBeUndefined();
  });
});
