/** One column of every supported portable type: the fixture the dialect, snapshot/diff and render suites share. */
import type { ColumnSpec } from '../../src/dialect/types.ts';

export const EVERY_TYPE_COLUMNS: readonly ColumnSpec[] = [
  { name: 'id', type: { kind: 'int32' }, nullable: false },
  { name: 'flag', type: { kind: 'boolean' }, nullable: true },
  { name: 'small', type: { kind: 'int16' }, nullable: true },
  { name: 'big', type: { kind: 'int64' }, nullable: true },
  { name: 'amount', type: { kind: 'decimal', precision: 38, scale: 10 }, nullable: true },
  { name: 'ratio', type: { kind: 'float64' }, nullable: true },
  { name: 'ratio32', type: { kind: 'float32' }, nullable: true },
  { name: 'label', type: { kind: 'string', maxLength: 200 }, nullable: true },
  { name: 'body', type: { kind: 'string', maxLength: null }, nullable: true },
  { name: 'blob', type: { kind: 'binary', maxLength: null }, nullable: true },
  { name: 'guid', type: { kind: 'uuid' }, nullable: true },
  { name: 'day', type: { kind: 'date' }, nullable: true },
  { name: 'at', type: { kind: 'timestamp', precision: 6 }, nullable: true },
  { name: 'at7', type: { kind: 'timestamp', precision: 7 }, nullable: true },
  { name: 'clock', type: { kind: 'time', precision: 6 }, nullable: true },
  { name: 'stamped', type: { kind: 'timestamptz', precision: 6 }, nullable: true },
];
