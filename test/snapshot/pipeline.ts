/**
 * Test plumbing for snapshot + diff: source/control dialect pairs, a source config, one run of
 * introspect → prepare → snapshot → diff, and the acknowledgement a successful push applies to staging.
 */
import { describe } from 'vitest';
import type { SourceConfig } from '../../src/config/schema.ts';
import type { Cell, ColumnSpec, Db, DialectName } from '../../src/dialect/types.ts';
import { computeDiff, type DiffJoin } from '../../src/cdc/diff.ts';
import { introspectSource } from '../../src/snapshot/introspect.ts';
import type { SourceSchema } from '../../src/snapshot/schema.ts';
import { takeSnapshot } from '../../src/snapshot/snapshot.ts';
import { sourceTables } from '../../src/snapshot/source-tables.ts';
import { prepareTables, recordSourceState } from '../../src/snapshot/tables.ts';
import { dialectsUnderTest } from '../support/databases.ts';

/** describe() once per (source, control) dialect pair; a pair needing a missing server is reported as skipped. */
export function describeEachPair(title: string, body: (source: DialectName, control: DialectName) => void): void {
  const all = dialectsUnderTest();
  for (const s of all) {
    for (const c of all) {
      const reason = s.skipReason ?? c.skipReason;
      const name = `${title} [${s.dialect} → ${c.dialect}]`;
      if (reason) describe.skip(`${name} (skipped: ${reason})`, () => body(s.dialect, c.dialect));
      else describe(name, () => body(s.dialect, c.dialect));
    }
  }
}

export function sourceConfig(id: string, over: Partial<SourceConfig> = {}): SourceConfig {
  return {
    id,
    connection: 'legacy',
    columns: {},
    jitter: 0,
    batch: { maxRows: 5_000, maxBytes: 4 * 1024 * 1024 },
    onSchemaChange: 'resync',
    maxDeletePercent: 50,
    ...over,
  } as SourceConfig;
}

export async function createTable(db: Db, name: string, columns: ColumnSpec[], key: string[] | null): Promise<void> {
  const defs = columns.map((c) => `${db.quote(c.name)} ${db.columnTypeSql(c.type)} ${c.nullable ? 'NULL' : 'NOT NULL'}`);
  if (key) defs.push(`PRIMARY KEY (${key.map((k) => db.quote(k)).join(', ')})`);
  await db.execute(`CREATE TABLE ${db.table({ name })} (${defs.join(', ')})`);
}

export async function collect<T>(rows: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const row of rows) out.push(row);
  return out;
}

export interface Change {
  seq: number;
  op: 'U' | 'D';
  row: Cell[];
}

export interface RunResult {
  schema: SourceSchema;
  drift: null | { changes: string[] };
  rows: number;
  upserts: number;
  deletes: number;
  /** How the incremental diff joined, where the agent chose (src/cdc/diff.ts). */
  join?: DiffJoin;
  changes: Change[];
}

let runs = 0;

/** Snapshot + diff, as the agent's run does it up to batching. Returns the change table's content. */
export async function runOnce(sourceDb: Db, controlDb: Db, tenant: string, source: SourceConfig): Promise<RunResult> {
  const runId = `run-${++runs}`;
  const schema = await introspectSource(sourceDb, tenant, source);
  const { drift } = await prepareTables({ controlDb, tenant, source, schema, runId });
  const { rows } = await takeSnapshot({ sourceDb, controlDb, tenant, source, schema });
  const { upserts, deletes, join } = await computeDiff({ controlDb, tenant, source, schema, snapshotSet: false });
  return { schema, drift, rows, upserts, deletes, ...(join ? { join } : {}), changes: await readChanges(controlDb, tenant, source.id, schema) };
}

export async function readChanges(controlDb: Db, tenant: string, source: string, schema: SourceSchema): Promise<Change[]> {
  const { changes } = sourceTables(tenant, source);
  const columns: ColumnSpec[] = [
    { name: 'seq', type: { kind: 'int64' }, nullable: false },
    { name: 'op', type: { kind: 'string', maxLength: 1 }, nullable: false },
    ...schema.columns,
  ];
  const rows = await collect(controlDb.readCells(changes, columns, { orderBy: ['seq'] }));
  return rows.map((r) => ({ seq: Number(r[0]), op: r[1] as 'U' | 'D', row: r.slice(2) }));
}

/** What the push stage does on a 2xx for the whole change table, then the agent's success bookkeeping. */
export async function acknowledge(controlDb: Db, tenant: string, source: string, schema: SourceSchema, counts: Record<string, number> = {}): Promise<void> {
  const { staging, changes } = sourceTables(tenant, source);
  const q = (n: string) => controlDb.quote(n);
  const match = schema.key.map((k) => `c.${q(k)} = ${controlDb.table(staging)}.${q(k)}`).join(' AND ');
  const cols = schema.columns.map((c) => q(c.name)).join(', ');
  await controlDb.transaction(async (tx) => {
    await tx.execute(`DELETE FROM ${controlDb.table(staging)} WHERE EXISTS (SELECT 1 FROM ${controlDb.table(changes)} AS c WHERE ${match})`);
    await tx.execute(`INSERT INTO ${controlDb.table(staging)} (${cols}) SELECT ${cols} FROM ${controlDb.table(changes)} WHERE ${q('op')} = 'U'`);
  });
  await recordSourceState({ controlDb, tenant, source, schema, runId: `ack-${++runs}`, counts });
}

export async function stagingRows(controlDb: Db, tenant: string, source: string, schema: SourceSchema): Promise<Cell[][]> {
  return collect(controlDb.readCells(sourceTables(tenant, source).staging, schema.columns, { orderBy: schema.key }));
}
