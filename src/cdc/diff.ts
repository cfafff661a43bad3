/**
 * docs/design.md §5 step 2: fill the change table from the snapshot vs staging by key.
 * Rows only in the snapshot, or different in any column, are upserts ('U'); keys only in staging (or held
 * from before a schema-drift rebuild) are deletes ('D'). Duplicate or NULL keys in the snapshot fail the run
 * before anything is written, and staging is never touched here.
 * The comparison is exact; each dialect's adapter says how (diff-postgres.ts, diff-mssql.ts).
 */
import type { SourceConfig } from '../config/schema.ts';
import type { Db, QualifiedName, Row } from '../dialect/types.ts';
import { PermanentError, TransientError } from '../errors/errors.ts';
import { where } from '../snapshot/introspect.ts';
import type { SourceSchema } from '../snapshot/schema.ts';
import { heldKeysTable, snapshotKeyIndex, sourceKeysTable, sourceTables } from '../snapshot/source-tables.ts';
import { keptStagedRows } from '../snapshot/staged-rows.ts';
import { controlSql } from '../snapshot/tables.ts';
import { storedEntrySql } from '../batching/change-set.ts';
import { countSnapshotSet, snapshotIdentity, snapshotSetSupported, type ChangeSetKind } from '../batching/snapshot-set.ts';
import PQueue from 'p-queue';
import { PART_SEQ_OFFSET, type DiffSql, type DiffTables } from './diff-sql.ts';
import { mssqlDiff } from './diff-mssql.ts';
import { postgresDiff } from './diff-postgres.ts';

/** Below this many rows (snapshot for an initial fill, staging for an incremental one) a fill is not split over two connections. */
export const SPLIT_FILL_ROWS = 50_000;

/**
 * Most staging rows in one part of a split incremental diff. PostgreSQL's hash of 1M rows of the benchmark's
 * 11-column table takes ≈ 135 MB, within the join's memory (DIFF_WORK_MEM × hash_mem_multiplier); larger parts
 * spill to disk (measured: the 4M-row incremental diff in one join 12.2 s).
 */
export const DIFF_PART_ROWS = 1_000_000;

/**
 * From this correlation of key rank with heap block on (in both the snapshot and staging), an incremental diff
 * merges over the key indexes. Sequential ids loaded in order measure 0.97–1.00 on the bench's tables, shuffled
 * keys about 0.
 */
export const KEY_ORDER_CORRELATION = 0.9;

/** How an incremental diff joined the snapshot with staging, where the agent chose it. */
export type DiffJoin = 'merge' | 'hash';

/** Up to this many rows read past a watermark, the delta diff probes staging by key instead of scanning it. */
export const SMALL_DELTA_ROWS = 100_000;

function diffSql(db: Db): DiffSql {
  return db.dialect === 'postgres' ? postgresDiff : mssqlDiff;
}

/** A key value as it reads in an error message. */
function showValue(value: unknown): string {
  if (value === null || value === undefined) return 'NULL';
  if (Buffer.isBuffer(value)) return `0x${value.toString('hex').slice(0, 64)}`;
  if (value instanceof Date) return value.toISOString();
  const text = typeof value === 'string' ? JSON.stringify(value) : String(value);
  return text.length > 100 ? `${text.slice(0, 100)}…` : text;
}

export async function computeDiff(args: {
  controlDb: Db;
  tenant: string;
  source: SourceConfig;
  schema: SourceSchema;
  /** Split a fill over two connections from this many rows on (tests set it low). */
  splitFillRows?: number;
  /** Most staging rows per part of a split incremental diff (tests set it low). */
  partRows?: number;
  /**
   * How many connections may fill at once (default 2). The agent passes 2 while it has a free job slot, else 1:
   * with every slot busy the other jobs already share the database's cores, and a split then cost more than it
   * saved (measured: two 1M-row syncs at a time took ≈ 1 s longer each).
   */
  connections?: number;
  /**
   * A full run (initial or resync, docs/data-push-api.md): every snapshot row is an upsert, even one staging
   * holds unchanged, so the receiver gets every row again; keys only in staging are still deletes.
   */
  everyRow?: boolean;
  /**
   * A watermark source's run that read less than every row (src/watermark/watermark.ts): `delta` compares only the
   * snapshot's keys with staging (upserts only); `keydiff` also deletes the keys that the source's keys table and
   * the snapshot lack.
   */
  scope?: 'full' | 'delta' | 'keydiff';
  /**
   * Whether an initial sync may leave its changes in the snapshot (src/batching/snapshot-set.ts) instead of the
   * change table (default true; `plan` reads its sample from the change table).
   */
  snapshotSet?: boolean;
}): Promise<{ upserts: number; deletes: number; changeSet: ChangeSetKind; snapshotId?: string; join?: DiffJoin }> {
  const { controlDb: db, tenant, source, schema } = args;
  const everyRow = args.everyRow === true;
  const sql = diffSql(db);
  const names = sourceTables(tenant, source.id);
  const heldName = heldKeysTable(tenant, source.id);
  const tables: DiffTables = { ...names, held: (await controlSql(db).tableExists(db, heldName)) ? heldName : null };

  // Nothing from an earlier run may be pushed once this diff has started.
  await db.execute(`TRUNCATE TABLE ${db.table(names.changes)}`);

  // For an incremental diff the key check and the change table's fill run at the same time on two connections
  // (two cores on a small machine); the fill's transaction commits only once the check has found no duplicate or
  // NULL key, so a bad key leaves the change table empty. The key check is the build of a unique index on the snapshot's key
  // (measured 0.3 s for 1M bigint keys, against 1.2–1.5 s for a GROUP BY over the snapshot) plus an index seek
  // for a NULL key; only when the build fails does a GROUP BY look for the culprit to name. The index is dropped
  // first (a retried diff may find it) and before the next snapshot load. The fill is one transaction so that
  // the dialect's settings (PostgreSQL: work_mem) apply to it and to nothing else on the pooled connection.
  const ctl = controlSql(db);
  const keyIndex = snapshotKeyIndex(tenant, source.id);
  await db.execute(ctl.dropIndexSql(db, names.snapshot, keyIndex));
  // Where the control database renders push entries, the fill renders each change's entry once (cdc_entry).
  const entry = (await storedEntrySql(db, schema)) ?? undefined;
  const keyCheck = (async (): Promise<Row | undefined> => {
    try {
      await db.execute(ctl.uniqueIndexSql(db, names.snapshot, keyIndex, schema.key));
    } catch (error) {
      const [bad] = await db.query<Row>(sql.badKey(db, tables, schema));
      if (bad) return bad;
      throw error;
    }
    const [nullKey] = await db.query<Row>(sql.nullKey(db, tables, schema));
    return nullKey;
  })();
  keyCheck.catch(() => {});
  const failOnBadKey = async () => {
    const bad = await keyCheck;
    if (!bad) return;
    const sample = schema.key.map((k, i) => `${k}=${showValue(bad[`k${i}`])}`).join(', ');
    const isNull = schema.key.some((_k, i) => bad[`k${i}`] === null || bad[`k${i}`] === undefined);
    throw new PermanentError(
      `${where(tenant, source)}: the source has ${isNull ? 'a NULL key' : `a duplicate key (${String(bad.n)} rows)`}, e.g. ${sample}. ` +
        `Every row needs a unique, non-NULL key (${schema.key.join(', ')}); fix the source data or configure another key. Nothing was pushed.`,
      { context: { tenant, source: source.id } },
    );
  };

  // One fill's transaction: the dialect's settings (and any the fill adds), the statement, and a commit only once
  // the key check has passed (so a bad key leaves nothing behind). A diff is one such fill, or several at once.
  const fillOne = (statement: string, extra: readonly string[] = []) =>
    db.transaction(async (tx) => {
      for (const setting of [...sql.settings, ...extra]) await tx.execute(setting);
      const n = await tx.execute(statement);
      await failOnBadKey();
      return n;
    });
  const rowCount = async (table: QualifiedName) => Number((await db.query<{ n: unknown }>(`SELECT count(*) AS n FROM ${db.table(table)}`))[0]?.n ?? 0);
  const minRows = Math.max(2, args.splitFillRows ?? SPLIT_FILL_ROWS);
  const connections = Math.max(1, Math.trunc(args.connections ?? 2));

  if (args.scope === 'delta' || args.scope === 'keydiff') {
    const keys = args.scope === 'keydiff' ? sourceKeysTable(tenant, source.id) : null;
    // A small delta probes staging by key (the dialect's settings for it); a keydiff's anti-joins over every key stay hashed.
    const small = !keys && sql.smallDeltaSettings !== undefined && (await rowCount(names.snapshot)) <= SMALL_DELTA_ROWS;
    await fillOne(sql.delta(db, tables, schema, keys, entry), small ? sql.smallDeltaSettings : []);
    return countChanges();
  }

  // Initial sync (staging and held keys empty; only this job's push writes staging, under its lease): every row
  // is an upsert and no join is paid for. The fill then waits for the key index, because numbering the rows in
  // key order can read that index instead of sorting the whole snapshot (measured on 1M rows: ≈ 2 s less).
  const initialSync =
    (await db.query(sql.anyRow(db, names.staging))).length === 0 && (tables.held === null || (await db.query(sql.anyRow(db, tables.held))).length === 0);
  if (initialSync) {
    await failOnBadKey();
    // The snapshot is the change set: nothing to fill; each batch is rendered from it when it is pushed.
    if (args.snapshotSet !== false && entry !== undefined && (await snapshotSetSupported(db))) {
      return { ...(await countSnapshotSet(db, names.snapshot)), changeSet: 'snapshot', snapshotId: await snapshotIdentity(db, names.snapshot) };
    }
    // Rendering every entry is most of an initial diff's time, on one core: two connections fill the two
    // halves of the key range at once, split at the snapshot's middle key (seq numbers continue across it).
    const half = connections >= 2 ? sql.allUpsertsHalf : undefined;
    const rows = half ? await rowCount(names.snapshot) : 0;
    if (half && rows >= minRows) {
      const split = Math.floor(rows / 2);
      const [low, high] = await Promise.all([fillOne(half(db, tables, schema, 'low', split, entry)), fillOne(half(db, tables, schema, 'high', split, entry))]);
      if (low !== split || low + high !== rows) {
        throw new TransientError(`${where(tenant, source)}: the change table's two halves hold ${low} + ${high} rows, expected ${split} + ${rows - split}; the diff will be retried.`, {
          context: { tenant, source: source.id },
        });
      }
      return { upserts: rows, deletes: 0, changeSet: 'table' };
    }
    return { upserts: await fillOne(sql.allUpserts(db, tables, schema, entry)), deletes: 0, changeSet: 'table' };
  }

  // The incremental join. Where the snapshot and staging both lie in about key order (a source read in the order of
  // its clustered key, and staging filled from it in that order), a merge over both key indexes costs about half the
  // hash join's CPU; it reads the snapshot's key index, so the fill then waits for the key check instead of running
  // beside it. Out of key order the merge's heap reads cost more than the hash (measured: 1.7 against 1.4 CPU-s per
  // 1M), and the server chooses the join as before.
  const join = await chooseJoin();
  const joinSettings = join === 'merge' ? (sql.orderedJoinSettings ?? []) : [];
  if (join === 'merge') await failOnBadKey();

  if (sql.changesPart && tables.held === null) {
    // An incremental diff is one join on one core: split it into parts of staging's key order with at most
    // partRows staging rows each, so that each part's hash (where it hashes) stays within the join's memory, and
    // (given a second connection) into at least two parts run at once. Staging is written only by this job's
    // push, under the same lease, so its key order holds still while parts read it.
    // The kept count (src/snapshot/staged-rows.ts) spares counting staging where it says one part will do: the
    // part boundaries are offsets into staging and need the exact count, but one part reads all of staging, so a
    // wrong kept count could then cost only join memory, never a row.
    // A merge holds no hash in memory, so it splits only for the second connection: each further part's boundary
    // is an OFFSET read through staging's primary key (measured at 8M rows: the diff 2.1–2.3 CPU-s per 1M in
    // parts of 1M, against 1.3–1.6 for 12 tables of 1M).
    const partRows = join === 'merge' ? Number.POSITIVE_INFINITY : Math.max(1, args.partRows ?? DIFF_PART_ROWS);
    const kept = await keptStagedRows(db, tenant, source.id);
    const onePart = kept !== null && kept <= partRows && !(connections >= 2 && kept >= minRows);
    const rows = onePart ? kept : await rowCount(names.staging);
    let parts = Math.ceil(rows / partRows);
    if (connections >= 2 && rows >= minRows) parts = Math.max(2, parts);
    if (parts >= 2) {
      const at = (i: number) => (i === 0 || i === parts ? null : Math.floor((rows * i) / parts));
      const queue = new PQueue({ concurrency: Math.min(connections, parts) });
      const filled = await Promise.all(
        Array.from({ length: parts }, (_, i) =>
          queue.add(() => fillOne(sql.changesPart!(db, tables, schema, { from: at(i), to: at(i + 1) }, i * PART_SEQ_OFFSET, entry, everyRow), joinSettings)).catch((error: unknown) => {
            queue.clear(); // no further part starts once one has failed; the next attempt truncates the table
            throw error;
          }),
        ),
      );
      const over = filled.find((n) => n >= PART_SEQ_OFFSET);
      if (over !== undefined) throw new Error(`a part of the diff has ${over} changes, more than the parts' seq spacing ${PART_SEQ_OFFSET}`);
      return { ...(await countChanges()), ...(join ? { join } : {}) };
    }
  }
  await fillOne(sql.changes(db, tables, schema, entry, everyRow), joinSettings);
  return { ...(await countChanges()), ...(join ? { join } : {}) };

  async function countChanges(): Promise<{ upserts: number; deletes: number; changeSet: ChangeSetKind }> {
    const counts = await db.query<{ op: string; n: number | string | bigint }>(
      `SELECT ${db.quote('op')} AS op, count(*) AS n FROM ${db.table(names.changes)} GROUP BY ${db.quote('op')}`,
    );
    const count = (op: string) => Number(counts.find((c) => c.op === op)?.n ?? 0);
    return { upserts: count('U'), deletes: count('D'), changeSet: 'table' };
  }

  /** 'merge' where both tables lie in about key order (a sample of each one's pages says so), else 'hash'; none where the server chooses alone. */
  async function chooseJoin(): Promise<DiffJoin | undefined> {
    if (!sql.keyOrder || !sql.orderedJoinSettings) return undefined;
    for (const table of [names.snapshot, names.staging]) {
      const [order] = await db.query<{ c: number | string | null }>(sql.keyOrder(db, table, schema), [db.table(table)]);
      if (order?.c == null || Math.abs(Number(order.c)) < KEY_ORDER_CORRELATION) return 'hash';
    }
    return 'merge';
  }
}
