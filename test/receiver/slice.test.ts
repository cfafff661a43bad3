import { describe, expect, it } from 'vitest';
import { rowSlices } from '../../src/receiver/slice.ts';

// Pure byte scanning; no database or server involved. What matters: a row marked verbatim is exactly
// JSON.stringify of the parsed row, and anything that is not the agent's compact framing is refused.

type Change = { op: 'upsert'; row: Record<string, unknown> } | { op: 'delete'; key: Record<string, unknown> };

function compact(changes: Change[], tail = ''): string {
  return `{"runId":"r","mode":"initial","batch":1,"schema":{"version":"x","key":["id"],"columns":[]},"changes":[${changes.map((c) => JSON.stringify(c)).join(',')}]${tail}}`;
}

function stored(text: string, columns: number): Array<string | null> | undefined {
  const raw = Buffer.from(text);
  const body = JSON.parse(text) as { changes: Change[] };
  const slices = rowSlices(raw, body.changes.map((c) => c.op), columns);
  if (!slices) return undefined;
  return body.changes.map((c, i) => (c.op === 'upsert' && slices.verbatim[i] === 1 ? raw.toString('utf8', slices.start[i], slices.end[i]) : null));
}

describe('rowSlices', () => {
  it('slices each upsert row of a compact body byte for byte, whatever its strings hold', () => {
    const rows = [
      { id: '1', s: 'plain', n: 12, f: 0.14285714285714285, b: true, z: null },
      { id: '2', s: '{op:upsert,row:{}}, ] } { [', n: -5, f: 1e21, b: false, z: 'é😀' },
      { id: '3', s: ':,"changes":[ {"op":"upsert","row":{', n: 0, f: -1.5, b: true, z: null },
    ];
    const text = compact([{ op: 'upsert', row: rows[0]! }, { op: 'delete', key: { id: '9' } }, { op: 'upsert', row: rows[1]! }, { op: 'upsert', row: rows[2]! }]);
    // The quotes inside the third row's string travel escaped (\"), so the framing is still found once; that
    // row is serialised again (it holds backslashes), the others are sliced.
    expect(stored(text, 6)).toEqual([JSON.stringify(rows[0]), null, JSON.stringify(rows[1]), null]);
  });

  it('marks rows that JSON.stringify would spell differently for serialising again', () => {
    const cases: Array<[string, string]> = [
      ['a backslash escape', '{"id":"1","s":"a\\u00e9"}'],
      ['an exponent', '{"id":"1","s":1e2}'],
      ['a trailing zero', '{"id":"1","s":1.50}'],
      ['minus zero', '{"id":"1","s":-0}'],
      ['a long integer', '{"id":"1","s":12345678901234567890}'],
      ['a repeated name', '{"id":"1","s":2,"id":"2"}'],
    ];
    for (const [what, row] of cases) {
      const text = `{"runId":"r","changes":[{"op":"upsert","row":${row}}]}`;
      expect(stored(text, 2), what).toEqual([null]);
    }
    expect(stored('{"runId":"r","changes":[{"op":"upsert","row":{"id":"1","s":-12.25}}]}', 2)).toEqual(['{"id":"1","s":-12.25}']);
  });

  it('refuses bodies that are not the compact framing', () => {
    const rows: Change[] = [{ op: 'upsert', row: { id: '1' } }, { op: 'upsert', row: { id: '2' } }];
    expect(stored(JSON.stringify({ runId: 'r', changes: rows }, null, 2), 1)).toBeUndefined();
    expect(stored(compact(rows).replace('"row":{"id":"2"}', '"row":{ "id":"2"}'), 1)).toBeUndefined();
    expect(stored(compact(rows).replace('{"op":"upsert","row":{"id":"2"}}', '{"row":{"id":"2"},"op":"upsert"}'), 1)).toBeUndefined();
    // A repeated top-level "changes": JSON.parse keeps the last one, so no slicing.
    expect(stored(compact(rows).replace('"changes":[', '"changes":[],"changes":['), 1)).toBeUndefined();
    expect(stored(compact(rows, ',"changes":[{"op":"upsert","row":{"id":"3"}},{"op":"upsert","row":{"id":"4"}}]'), 1)).toBeUndefined();
    expect(stored(compact(rows, ',"schema":{}'), 1)).toEqual(['{"id":"1"}', '{"id":"2"}']);
  });
});
