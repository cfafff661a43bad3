/**
 * A source's snapshot, staging and change tables in the control database, and schema drift (docs/design.md §8).
 *
 * - snapshot: the source's columns, all nullable, no key (bad keys are found by the diff, not by a load error);
 * - staging: the source's columns, primary key = the source key; only ever written by the push stage
 *   (acknowledged batches), except when drift rebuilds it here;
 * - changes: seq, op, batch_no, then the source's columns, then (where the control database renders push
 *   entries in SQL) cdc_entry, the change's JSON entry rendered once by the diff (see src/cdc/diff.ts);
 * - snapshot and changes are scratch: derived again by any run, so PostgreSQL keeps them UNLOGGED;
 * - held keys (only after a drift rebuild): the keys the receiver held in the old shape, so that the diff
 *   can delete those that vanished; dropped when a run in the new shape succeeds (recordSourceState).
 *
 * cdc_source_state.schema_fingerprint always describes the shape these tables have now: it is written when
 * they are (re)built, and again on success.
 */
import type { SourceConfig } from '../config/schema.ts';
import type { ColumnSpec, Db, QualifiedName, Queryable } from '../dialect/types.ts';
import { PermanentError } from '../errors/errors.ts';
import type { ControlSql } from './control-sql.ts';
import { mssqlControl } from './control-mssql.ts';
import { postgresControl } from './control-postgres.ts';
import { where } from './introspect.ts';
import { canonicalSchemaJson, describeDrift, parseSchemaJson, schemaFingerprint, type SourceSchema } from './schema.ts';
import { heldKeysTable, sourceKeysTable, sourceTables } from './source-tables.ts';
import { recordStagedRows } from './staged-rows.ts';

export function controlSql(db: Db): ControlSql {
  return db.dialect === 'postgres' ? postgresControl : mssqlControl;
}

/** Bookkeeping columns of the change table; a source column may not use these names. */
export const CHANGE_COLUMNS = ['seq', 'op', 'batch_no', 'cdc_entry'] as const;

function columnDef(db: Db, c: ColumnSpec, nullable: boolean): string {
  const collate = c.type.kind === 'string' ? ` ${controlSql(db).exactCollation}` : '';
  return `${db.quote(c.name)} ${db.columnTypeSql(c.type)}${collate} ${nullable ? 'NULL' : 'NOT NULL'}`;
}

export function createSnapshotSql(db: Db, name: QualifiedName, schema: SourceSchema): string {
  return `${controlSql(db).createScratchTable} ${db.table(name)} (${schema.columns.map((c) => columnDef(db, c, true)).join(', ')})`;
}

export function createStagingSql(db: Db, name: QualifiedName, schema: SourceSchema): string {
  const keys = new Set(schema.key);
  const defs = schema.columns.map((c) => columnDef(db, c, !keys.has(c.name) && c.nullable));
  const keyColumns = schema.key.map((k) => schema.columns.find((c) => c.name === k)!);
  return `CREATE TABLE ${db.table(name)} (${defs.join(', ')}, ${db.primaryKeySql(keyColumns)})`;
}

export function createChangesSql(db: Db, name: QualifiedName, schema: SourceSchema): string {
  const ctl = controlSql(db);
  const defs = schema.columns.map((c) => columnDef(db, c, true));
  const entry = ctl.renderedEntryType ? `, ${db.quote('cdc_entry')} ${ctl.renderedEntryType} NULL` : '';
  return `${ctl.createScratchTable} ${db.table(name)} (${db.quote('seq')} bigint NOT NULL PRIMARY KEY, ${db.quote('op')} char(1) NOT NULL, ${db.quote('batch_no')} int NULL, ${defs.join(', ')}${entry})`;
}

/** The keydiff run's table of every source key (key columns, nullable: a NULL key is the diff's to report). */
export function createKeysSql(db: Db, name: QualifiedName, schema: SourceSchema): string {
  const keyColumns = schema.key.map((k) => schema.columns.find((c) => c.name === k)!);
  return `${controlSql(db).createScratchTable} ${db.table(name)} (${keyColumns.map((c) => columnDef(db, c, true)).join(', ')})`;
}

function createHeldSql(db: Db, name: QualifiedName, schema: SourceSchema): string {
  const keyColumns = schema.key.map((k) => schema.columns.find((c) => c.name === k)!);
  return `CREATE TABLE ${db.table(name)} (${keyColumns.map((c) => columnDef(db, c, false)).join(', ')}, ${db.primaryKeySql(keyColumns)})`;
}

export type StateRecord = {
  schema_fingerprint: string | null;
  schema_json: string | null;
}

/** The source's recorded shape (fingerprint and schema JSON of its tables), or undefined before its first run. */
export async function readState(db: Db, tenant: string, source: string): Promise<StateRecord | undefined> {
  const rows = await db.query<StateRecord>(
    `SELECT schema_fingerprint, schema_json FROM cdc_source_state WHERE tenant_id = ${db.param(1)} AND source_id = ${db.param(2)}`,
    [tenant, source],
  );
  return rows[0];
}

async function dropIfExists(db: Db, tx: Queryable, name: QualifiedName): Promise<void> {
  if (await controlSql(db).tableExists(tx, name)) await tx.execute(`DROP TABLE ${db.table(name)}`);
}

function checkSchema(tenant: string, source: SourceConfig, schema: SourceSchema): void {
  const clash = schema.columns.filter((c) => (CHANGE_COLUMNS as readonly string[]).includes(c.name));
  if (clash.length > 0) {
    throw new PermanentError(
      `${where(tenant, source)}: column(s) ${clash.map((c) => JSON.stringify(c.name)).join(', ')} clash with the change table's bookkeeping columns (${CHANGE_COLUMNS.join(', ')}); rename them with a query source.`,
      { context: { tenant, source: source.id } },
    );
  }
}

/**
 * Create the source's tables if missing, or rebuild them on schema drift according to the source's
 * `onSchemaChange` policy. Returns what changed, or `drift: null`.
 */
export async function prepareTables(args: { controlDb: Db; tenant: string; source: SourceConfig; schema: SourceSchema; runId: string }): Promise<{
  drift: null | { changes: string[] };
}> {
  const { controlDb: db, tenant, source, schema, runId } = args;
  checkSchema(tenant, source, schema);
  const names = sourceTables(tenant, source.id);
  const held = heldKeysTable(tenant, source.id);
  const ctl = controlSql(db);
  const fingerprint = schemaFingerprint(schema);
  const state = await readState(db, tenant, source.id);
  const stateRow = { tenant, source: source.id, fingerprint, schemaJson: canonicalSchemaJson(schema) };

  if (state?.schema_fingerprint === fingerprint) {
    // Same shape: only recreate what an operator may have dropped.
    await db.transaction(async (tx) => {
      if (!(await ctl.tableExists(tx, names.snapshot))) await tx.execute(createSnapshotSql(db, names.snapshot, schema));
      if (!(await ctl.tableExists(tx, names.staging))) {
        await tx.execute(createStagingSql(db, names.staging, schema));
        await recordStagedRows(db, tx, tenant, source.id, null);
      }
      if (!(await ctl.tableExists(tx, names.changes))) await tx.execute(createChangesSql(db, names.changes, schema));
      await ctl.upgradeScratch?.(db, tx, names);
    });
    return { drift: null };
  }

  if (!state?.schema_fingerprint || !state.schema_json) {
    // First run of this source: nothing is known to be at the receiver.
    await db.transaction(async (tx) => {
      for (const name of [names.snapshot, names.staging, names.changes, held, sourceKeysTable(tenant, source.id)]) await dropIfExists(db, tx, name);
      await tx.execute(createSnapshotSql(db, names.snapshot, schema));
      await tx.execute(createStagingSql(db, names.staging, schema));
      await tx.execute(createChangesSql(db, names.changes, schema));
      await ctl.upsertState(db, tx, stateRow);
      await recordStagedRows(db, tx, tenant, source.id, null);
    });
    return { drift: null };
  }

  const before = parseSchemaJson(state.schema_json);
  const changes = describeDrift(before, schema);
  if (source.onSchemaChange === 'fail') {
    throw new PermanentError(
      `${where(tenant, source)}: the source's schema changed since the last successful run: ${changes.join('; ')}. ` +
        'Nothing was synced. Set onSchemaChange: resync for this source to rebuild and re-send it, or restore the source schema.',
      { context: { tenant, source: source.id, runId } },
    );
  }

  // Keys the receiver holds: staging's rows, plus keys still held from an earlier rebuild. They can be
  // carried into the new shape only if every new key column existed with the same type.
  const typeOf = (s: SourceSchema, name: string) => JSON.stringify(s.columns.find((c) => c.name === name)?.type ?? null);
  const keyCarries = (columns: readonly string[]) =>
    schema.key.every((k) => columns.includes(k) && typeOf(before, k) === typeOf(schema, k) && typeOf(schema, k) !== 'null');
  const carryFromStaging = keyCarries(before.columns.map((c) => c.name));
  const carryFromHeld = keyCarries(before.key);
  const next: QualifiedName = { ...held, name: held.name.replace(/^cdc_held/, 'cdc_hnew') };
  const keyList = schema.key.map((k) => db.quote(k)).join(', ');

  let heldKeys = 0;
  await db.transaction(async (tx) => {
    await dropIfExists(db, tx, next);
    await tx.execute(createHeldSql(db, next, schema));
    const sources: string[] = [];
    if (carryFromStaging && (await ctl.tableExists(tx, names.staging))) sources.push(`SELECT ${keyList} FROM ${db.table(names.staging)}`);
    if (carryFromHeld && (await ctl.tableExists(tx, held))) sources.push(`SELECT ${keyList} FROM ${db.table(held)}`);
    if (sources.length > 0) heldKeys = await tx.execute(`INSERT INTO ${db.table(next)} (${keyList}) ${sources.join(' UNION ')}`);
    for (const name of [names.snapshot, names.staging, names.changes, held, sourceKeysTable(tenant, source.id)]) await dropIfExists(db, tx, name);
    await ctl.rename(db, tx, next, held);
    await tx.execute(createSnapshotSql(db, names.snapshot, schema));
    await tx.execute(createStagingSql(db, names.staging, schema));
    await tx.execute(createChangesSql(db, names.changes, schema));
    await ctl.upsertState(db, tx, stateRow);
    await recordStagedRows(db, tx, tenant, source.id, null);
    const detail = {
      policy: 'resync',
      changes,
      fromFingerprint: state.schema_fingerprint,
      toFingerprint: fingerprint,
      heldKeys,
      // false: the receiver's rows cannot be matched to the new key; it must replace the dataset (run mode resync).
      keysCarried: carryFromStaging,
    };
    await tx.execute(
      `INSERT INTO cdc_events (tenant_id, source_id, run_id, kind, detail) VALUES (${db.param(1)}, ${db.param(2)}, ${db.param(3)}, ${db.param(4)}, ${db.param(5)})`,
      [tenant, source.id, runId, 'schema_changed', JSON.stringify(detail)],
    );
  });
  return { drift: { changes } };
}

/**
 * After a run pushed everything: record state and clear the scratch tables (snapshot, changes, held keys). Only
 * a reconciled run counts as a success (`last_success_at`); an unreconciled one keeps the last success as it was.
 */
export async function recordSourceState(args: {
  controlDb: Db;
  tenant: string;
  source: string;
  schema: SourceSchema;
  runId: string;
  counts: Record<string, number>;
  reconciled?: boolean;
}): Promise<void> {
  const { controlDb: db, tenant, source, schema, runId, counts } = args;
  const names = sourceTables(tenant, source);
  const ctl = controlSql(db);
  await db.transaction(async (tx) => {
    await ctl.upsertState(db, tx, {
      tenant,
      source,
      fingerprint: schemaFingerprint(schema),
      schemaJson: canonicalSchemaJson(schema),
      ...(args.reconciled === false ? {} : { success: { runId, counts: JSON.stringify(counts) } }),
    });
    await dropIfExists(db, tx, heldKeysTable(tenant, source));
    for (const name of [names.snapshot, names.changes, sourceKeysTable(tenant, source)]) if (await ctl.tableExists(tx, name)) await tx.execute(`TRUNCATE TABLE ${db.table(name)}`);
  });
}
