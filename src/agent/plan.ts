/**
 * `cdc-agent plan`: a dry run of one source. It snapshots and diffs exactly as a run would, then reports the
 * counts by operation and a sample of the changes. Nothing is pushed and staging is not touched; the
 * scratch tables are cleared again. It refuses to run while the source has an unfinished job, whose
 * scratch tables it would share.
 */
import { computeDiff } from '../cdc/diff.ts';
import type { CompiledConfig } from '../config/load.ts';
import type { Db } from '../dialect/types.ts';
import { TransientError } from '../errors/errors.ts';
import { encodeCell } from '../contract/wire.ts';
import type { JobQueue } from '../queue-table/queue.ts';
import { describeSource } from '../snapshot/introspect.ts';
import { describeDrift, parseSchemaJson, schemaFingerprint } from '../snapshot/schema.ts';
import { takeKeys, takeSnapshot } from '../snapshot/snapshot.ts';
import { planRead, type RunType } from '../watermark/watermark.ts';
import { RunLedger } from './run-ledger.ts';
import { sourceTables } from '../snapshot/source-tables.ts';
import { prepareTables, readState } from '../snapshot/tables.ts';
import type { SourceConnections } from './connections.ts';
import { findSource, newRunId } from './run-job.ts';

export interface PlanReport {
  tenant: string;
  source: string;
  sourceRows: number;
  upserts: number;
  deletes: number;
  /** Schema changes since the last successful run; a run would rebuild and re-send everything. */
  schemaChanges: string[];
  /** What a run would read (docs/watermark.md): `full` for sources without a watermark. */
  runType: RunType;
  runReason: string;
  sample: Array<{ op: 'upsert' | 'delete'; row: Record<string, unknown> }>;
}

export async function planSource(args: {
  config: CompiledConfig;
  controlDb: Db;
  queue: JobQueue;
  sources: SourceConnections;
  tenant: string;
  source: string;
  sampleSize: number;
}): Promise<PlanReport> {
  const { config, controlDb: db, queue } = args;
  const { tenant, source } = findSource(config, args.tenant, args.source);
  const stats = await queue.stats();
  const busy = stats.running.some((j) => j.tenant === tenant.id && j.source === source.id) || stats.queuedBySource.some((q) => q.tenant === tenant.id && q.source === source.id && q.count > 0);
  if (busy) throw new TransientError(`${tenant.id}/${source.id} has a sync queued or running; run plan again when it has finished (see \`cdc-agent status\`).`);

  const sourceDb = await args.sources.get(tenant.id, source.connection);
  const described = await describeSource(sourceDb, tenant.id, source);
  const schema = described.schema;
  const previous = await readState(db, tenant.id, source.id);
  if (previous?.schema_json && previous.schema_fingerprint !== schemaFingerprint(schema)) {
    const changes = describeDrift(parseSchemaJson(previous.schema_json), schema);
    return { tenant: tenant.id, source: source.id, sourceRows: 0, upserts: 0, deletes: 0, schemaChanges: changes, runType: 'full', runReason: 'the schema changed at the source', sample: [] };
  }

  await prepareTables({ controlDb: db, tenant: tenant.id, source, schema, runId: newRunId() });
  // The read a scheduled run would make now; it commits no watermark.
  const mode = (await new RunLedger(db).lastSuccess(tenant.id, source.id)) ? 'incremental' : 'initial';
  const read = await planRead({ sourceDb, controlDb: db, tenant: tenant.id, source, described, mode, drift: false });
  const names = sourceTables(tenant.id, source.id);
  try {
    const snap = await takeSnapshot({ sourceDb, controlDb: db, tenant: tenant.id, source, schema, ...(read.delta ? { delta: read.delta } : {}) });
    if (read.type === 'keydiff') await takeKeys({ sourceDb, controlDb: db, tenant: tenant.id, source, schema });
    const scope = read.type === 'watermark' ? 'delta' : read.type === 'keydiff' ? 'keydiff' : 'full';
    const diff = await computeDiff({ controlDb: db, tenant: tenant.id, source, schema, scope, snapshotSet: false });
    const columns = [{ name: 'op', type: { kind: 'string' as const, maxLength: 1 }, nullable: false }, ...schema.columns];
    const sample: PlanReport['sample'] = [];
    const keyed = new Set(schema.key);
    // Leaving the loop early closes the cursor: only the sample is read.
    for await (const cells of db.readCells(names.changes, columns, { orderBy: ['seq'], batchSize: 100 })) {
      if (sample.length >= args.sampleSize) break;
      const op = cells[0] === 'D' ? 'delete' : 'upsert';
      const row: Record<string, unknown> = {};
      schema.columns.forEach((c, i) => {
        if (op === 'upsert' || keyed.has(c.name)) row[c.name] = encodeCell(cells[i + 1] ?? null, c.type);
      });
      sample.push({ op, row });
    }
    return { tenant: tenant.id, source: source.id, sourceRows: snap.rows, upserts: diff.upserts, deletes: diff.deletes, schemaChanges: [], runType: read.type, runReason: read.reason, sample };
  } finally {
    await db.execute(`DELETE FROM ${db.table(names.changes)}`).catch(() => {});
    await db.execute(`DELETE FROM ${db.table(names.snapshot)}`).catch(() => {});
  }
}
