/**
 * `npm run bench -- snapshot [--rows N]`: PostgreSQL → PostgreSQL, 1M rows × 10 business columns
 * (`--source mssql`: a SQL Server source instead, bench/snapshot-mssql.ts).
 * Measures a raw `COPY … TO STDOUT` of the source table, the snapshot (takeSnapshot), the initial diff, and
 * the incremental diff after 1 % updates, 0.5 % inserts and 0.5 % deletes, with the process's peak RSS.
 */
import { performance } from 'node:perf_hooks';
import { PostgresDb } from '../src/dialect/postgres.ts';
import { computeDiff } from '../src/cdc/diff.ts';
import { migrate } from '../src/migrations/migrate.ts';
import { introspectSource } from '../src/snapshot/introspect.ts';
import { takeSnapshot } from '../src/snapshot/snapshot.ts';
import { sourceTables } from '../src/snapshot/source-tables.ts';
import { prepareTables, recordSourceState } from '../src/snapshot/tables.ts';
import type { SourceConfig } from '../src/config/schema.ts';
import { benchDatabase, report, rssSampler } from './support.ts';

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const start = performance.now();
  const result = await fn();
  return [result, (performance.now() - start) / 1000];
}

export async function run(args: string[]): Promise<void> {
  const sourceArg = args.indexOf('--source');
  const sourceDialect = sourceArg >= 0 ? args[sourceArg + 1] : 'postgres';
  if (sourceDialect === 'mssql') return (await import('./snapshot-mssql.ts')).run(args.filter((_, i) => i !== sourceArg && i !== sourceArg + 1));
  if (sourceDialect !== 'postgres') throw new Error(`--source is postgres or mssql, not ${sourceDialect}`);
  const rowsArg = args.indexOf('--rows');
  const n = rowsArg >= 0 ? Number(args[rowsArg + 1]) : 1_000_000;
  const server = await benchDatabase('snapshot');
  // The agent's own pool settings (application name, jit off, type parsers).
  const db = new PostgresDb({ dialect: 'postgres', url: server.url, poolMax: 4 });
  try {
    await migrate(db);
    await db.execute(`CREATE TABLE bench_src (
      id bigint PRIMARY KEY, c1 integer, c2 bigint, c3 numeric(12,2), c4 text, c5 varchar(50),
      c6 timestamp(6), c7 boolean, c8 double precision, c9 uuid, c10 date)`);
    const fill = (from: number, to: number) =>
      db.execute(`INSERT INTO bench_src SELECT i, i % 1000, i * 7, (i % 100000) / 100.0, 'text value ' || i, 'v' || (i % 5000),
        timestamp '2020-01-01' + i * interval '1 second', i % 2 = 0, i / 3.0, md5(i::text)::uuid, date '2020-01-01' + (i % 1000)
        FROM generate_series(${from}, ${to}) AS i`);
    await fill(1, n);
    await db.execute('VACUUM ANALYZE bench_src');

    const source = { id: 'bench', table: 'bench_src', columns: {}, onSchemaChange: 'resync' } as SourceConfig;
    const tenant = 'bench';
    const rss = rssSampler();

    const [copyBytes, rawCopy] = await timed(async () => {
      let bytes = 0;
      for await (const chunk of await db.copyOut('COPY bench_src TO STDOUT')) bytes += (chunk as Buffer).length;
      return bytes;
    });

    const schema = await introspectSource(db, tenant, source);
    await prepareTables({ controlDb: db, tenant, source, schema, runId: 'r1' });
    const [snap1, snapshotInitial] = await timed(() => takeSnapshot({ sourceDb: db, controlDb: db, tenant, source, schema }));
    const [initial, diffInitial] = await timed(() => computeDiff({ controlDb: db, tenant, source, schema, snapshotSet: false }).then(({ upserts, deletes }) => ({ upserts, deletes })));

    // What the push stage leaves behind once every batch is acknowledged.
    const t = sourceTables(tenant, source.id);
    await db.execute(`INSERT INTO ${db.table(t.staging)} SELECT * FROM ${db.table(t.snapshot)}`);
    await recordSourceState({ controlDb: db, tenant, source: source.id, schema, runId: 'r1', counts: initial });
    await db.execute(`VACUUM ANALYZE ${db.table(t.staging)}`);

    await db.execute(`UPDATE bench_src SET c4 = c4 || ' changed' WHERE id % 100 = 0`);
    await db.execute(`DELETE FROM bench_src WHERE id % 200 = 1`);
    await fill(n + 1, n + n / 200);
    await prepareTables({ controlDb: db, tenant, source, schema, runId: 'r2' });
    const [snap2, snapshotIncremental] = await timed(() => takeSnapshot({ sourceDb: db, controlDb: db, tenant, source, schema }));
    const [incremental, diffIncremental] = await timed(() => computeDiff({ controlDb: db, tenant, source, schema, snapshotSet: false }).then(({ upserts, deletes }) => ({ upserts, deletes })));
    const peak = rss.stop();

    const r = (x: number) => Math.round(x * 100) / 100;
    await report('snapshot', [
      { step: 'raw COPY TO STDOUT', rows: n, seconds: r(rawCopy), 'vs raw COPY': 1, note: `${Math.round(copyBytes / 1e6)} MB` },
      { step: 'snapshot (initial)', rows: snap1.rows, seconds: r(snapshotInitial), 'vs raw COPY': r(snapshotInitial / rawCopy), note: `rate = ${Math.round((rawCopy / snapshotInitial) * 100)} % of raw COPY` },
      { step: 'diff (initial, all upserts)', rows: initial.upserts, seconds: r(diffInitial), 'vs raw COPY': r(diffInitial / rawCopy), note: 'no join' },
      { step: 'snapshot (incremental)', rows: snap2.rows, seconds: r(snapshotIncremental), 'vs raw COPY': r(snapshotIncremental / rawCopy), note: `rate = ${Math.round((rawCopy / snapshotIncremental) * 100)} % of raw COPY` },
      { step: 'diff (1 % upd, 0.5 % ins, 0.5 % del)', rows: incremental.upserts + incremental.deletes, seconds: r(diffIncremental), 'vs raw COPY': r(diffIncremental / rawCopy), note: `${incremental.upserts} U / ${incremental.deletes} D` },
      { step: 'peak RSS (MB)', rows: 0, seconds: 0, 'vs raw COPY': 0, note: `${peak} MB` },
    ]);
  } finally {
    await db.close();
    await server.close();
  }
}
