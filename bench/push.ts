/**
 * `npm run bench -- push [--rows N] [--max-rows N] [--in-flight N]`: rows/s of the push stage, 1M upserts by
 * default, on loopback:
 *   1. pushRun -> the reference receiver (a child process storing into PostgreSQL): the real end-to-end rate,
 *      receiver CPU included (both processes share this machine's cores);
 *   2. pushRun -> a bare Node HTTP server that only gunzips and JSON.parses: the agent side's own ceiling
 *      (reading the change table, encoding, gzip, HTTP, the fenced ack + staging apply);
 *   3. the same payloads posted back to back to the bare server: the raw loopback limit.
 */
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { performance } from 'node:perf_hooks';
import { cutBatches, listBatches } from '../src/batching/batches.ts';
import { readChanges } from '../src/batching/change-set.ts';
import type { SourceConfig, TenantConfig } from '../src/config/schema.ts';
import { connect } from '../src/dialect/connect.ts';
import type { Cell, ColumnSpec } from '../src/dialect/types.ts';
import { migrate } from '../src/migrations/migrate.ts';
import { createPushClient } from '../src/push/client.ts';
import { frameBatch, wireSchema } from '../src/contract/wire.ts';
import { pushRun } from '../src/push/push.ts';
import type { SourceSchema } from '../src/snapshot/schema.ts';
import { sourceTables } from '../src/snapshot/source-tables.ts';
import { benchDatabase, report, rssSampler, BARE_SERVER, option, startChild } from './support.ts';

const SCHEMA: SourceSchema = {
  columns: [
    { name: 'id', type: { kind: 'int64' }, nullable: false },
    { name: 'customer', type: { kind: 'string', maxLength: 100 }, nullable: true },
    { name: 'amount', type: { kind: 'decimal', precision: 18, scale: 4 }, nullable: true },
    { name: 'qty', type: { kind: 'int32' }, nullable: true },
    { name: 'ordered_at', type: { kind: 'timestamp', precision: 6 }, nullable: true },
    { name: 'status', type: { kind: 'string', maxLength: 20 }, nullable: true },
    { name: 'guid', type: { kind: 'uuid' }, nullable: true },
    { name: 'note', type: { kind: 'string', maxLength: 200 }, nullable: true },
    { name: 'flag', type: { kind: 'boolean' }, nullable: true },
    { name: 'ratio', type: { kind: 'float64' }, nullable: true },
  ],
  key: ['id'],
};


async function stop(child: ChildProcess): Promise<void> {
  child.kill('SIGTERM');
  if (child.exitCode === null) await once(child, 'exit');
}

export async function run(args: string[]): Promise<void> {
  const rows = option(args, '--rows', 1_000_000);
  const maxRows = option(args, '--max-rows', 5_000);
  const inFlight = option(args, '--in-flight', 4);
  const server = await benchDatabase('push');
  const db = await connect({ dialect: 'postgres', url: server.url, poolMax: 12 });
  const children: ChildProcess[] = [];
  try {
    await migrate(db);
    const t = sourceTables('bench', 'orders');
    const defs = (nullable: boolean) => SCHEMA.columns.map((c) => `${db.quote(c.name)} ${db.columnTypeSql(c.type)}${nullable || c.nullable ? '' : ' NOT NULL'}`).join(', ');
    await db.execute(`CREATE TABLE ${db.table(t.staging)} (${defs(false)}, PRIMARY KEY (id))`);
    await db.execute(`CREATE TABLE ${db.table(t.changes)} (seq bigint NOT NULL PRIMARY KEY, op char(1) NOT NULL, batch_no int NULL, ${defs(true)})`);
    const cols: ColumnSpec[] = [
      { name: 'seq', type: { kind: 'int64' }, nullable: false },
      { name: 'op', type: { kind: 'string', maxLength: 1 }, nullable: false },
      ...SCHEMA.columns,
    ];
    function* generate(): Iterable<Cell[]> {
      for (let i = 1; i <= rows; i++) {
        yield [BigInt(i), 'U', BigInt(i), `customer ${i % 9973}`, `${i % 100000}.${String(i % 10000).padStart(4, '0')}`, i % 50,
          `2024-${String(1 + (i % 12)).padStart(2, '0')}-${String(1 + (i % 28)).padStart(2, '0')}T10:20:30.${String(i % 1_000_000).padStart(6, '0')}`,
          ['open', 'shipped', 'closed'][i % 3]!, `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`, i % 7 === 0 ? null : `note for order ${i}`, i % 2 === 0, i / 7];
      }
    }
    console.log(`loading ${rows} changes…`);
    await db.bulkWrite(t.changes, cols, generate());
    await db.execute(`ANALYZE ${db.table(t.changes)}`);

    const tenant = (url: string) =>
      ({ id: 'bench', push: { url, token: 'bench-token', apiKeyHeader: 'X-Api-Key', maxInFlight: inFlight, timeout: 120_000, gzipAboveBytes: 64 * 1024, gzipLevel: 1 }, connections: {}, sources: [] }) as unknown as TenantConfig;
    const source = { id: 'orders', batch: { maxRows, maxBytes: 4 * 1024 * 1024 } } as SourceConfig;
    const figures: Array<Record<string, string | number>> = [];

    const timedPush = async (label: string, url: string, runId: string) => {
      await db.execute(`TRUNCATE ${db.table(t.staging)}`);
      const t0 = performance.now();
      const cut = await cutBatches({ controlDb: db, tenant: 'bench', source: 'orders', runId, schema: SCHEMA, maxRows, maxBytes: 4 * 1024 * 1024 });
      const t1 = performance.now();
      const rss = rssSampler();
      await pushRun({ controlDb: db, tenant: tenant(url), source, runId, mode: 'initial', schema: SCHEMA, sourceRows: rows, fence: (fn) => db.transaction(fn) });
      const t2 = performance.now();
      figures.push({
        case: label,
        rows,
        batches: cut.batches,
        'cut s': Math.round(t1 - t0) / 1000,
        'push s': Math.round(t2 - t1) / 1000,
        'push rows/s': Math.round(rows / ((t2 - t1) / 1000)),
        'agent peak RSS MB': rss.stop(),
      });
    };

    const rx = await startChild(['bin/cdc-agent.js', 'receiver', '--port', '0', '--db', server.url, '--token', 'bench=bench-token']);
    children.push(rx.child);
    await timedPush('pushRun -> reference receiver (PostgreSQL)', rx.url, 'bench-rx');
    await stop(rx.child);

    const bare = await startChild(['-e', BARE_SERVER]);
    children.push(bare.child);
    await timedPush('pushRun -> bare Node server (parse only)', bare.url, 'bench-bare');

    // Raw loopback: the first batches' payloads, posted again and again.
    const schemaJson = JSON.stringify(wireSchema(SCHEMA));
    const batches = (await listBatches(db, 'bench-bare')).slice(0, 8);
    const payloads: Array<{ body: string; rows: number }> = [];
    for (const b of batches) {
      const entries: string[] = [];
      for await (const c of readChanges(db, t.changes, SCHEMA, { first: b.firstSeq, last: b.lastSeq })) entries.push(c.entry);
      payloads.push({ body: frameBatch({ runId: 'raw', mode: 'initial', batch: b.batchNo, schemaJson }, entries), rows: entries.length });
    }
    const client = createPushClient(tenant(bare.url));
    let sent = 0;
    let n = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: inFlight }, async () => {
        while (sent < rows) {
          const p = payloads[n++ % payloads.length]!;
          sent += p.rows;
          await client.postBatch('orders', `raw.${n}`, p.body);
        }
      }),
    );
    const seconds = (performance.now() - t0) / 1000;
    client.close();
    figures.push({ case: 'raw loopback: same payloads -> bare Node server', rows: sent, batches: n, 'cut s': 0, 'push s': Math.round(seconds * 1000) / 1000, 'push rows/s': Math.round(sent / seconds), 'agent peak RSS MB': 0 });
    await stop(bare.child);
    await report('push', figures);
  } finally {
    for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
    await db.close();
    await server.close();
  }
}
