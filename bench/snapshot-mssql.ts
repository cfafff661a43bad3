/**
 * `CDC_BENCH_MSSQL_URL=mssql://… npm run bench -- snapshot --source mssql [--rows 1000000] [--profile] [--keep] [--quick]`
 * (also `npm run bench -- snapshot-mssql`): issue 20's SQL Server source bench. The snapshot phase of a SQL Server
 * source into a PostgreSQL control database (the pair a tenant runs: tedious reads, `readCells` → `bulkWrite`),
 * beside raw tedious streams of the same table measured in the same run:
 *   - a database of its own on the given server, one table of `--rows` rows × 11 columns: bigint key, int, bigint,
 *     decimal(18,4), nvarchar(100), varchar(40), datetime2(6), date, bit, float, uniqueidentifier;
 *   - raw streams (this process reads every row through mssql/tedious, as the agent's `stream` does, and drops
 *     it): `SELECT *` (native types) and the agent's own select (readCells' text, its CONVERTs as the checkout
 *     renders them), each with the agent's 16,383-byte TDS packets, tedious' default 4,096 and 32,767; the agent's
 *     select with the CONVERT targets swapped between varchar/char and
 *     nvarchar/nchar; and natively every column tedious returns exactly, CONVERT (to nvarchar) only for decimal,
 *     datetime2 and date (the levers issue 20 names);
 *   - the write side alone: the same cells made in Node, written by `bulkWrite` (binary COPY) and as COPY text 1,000
 *     rows per message (what bulkWrite sent before its binary COPY);
 *   - the agent's snapshot phase (`takeSnapshot`, in this process): the agent's CPU is this process's (all threads)
 *     plus its control-database backends' (sampled from pg_stat_activity and /proc).
 * Babelfish's CONVERT is slow on its server, so its wall times say nothing about SQL Server; the Node CPU does.
 * `--profile` profiles the snapshot phase in-process (node:inspector) and prints its busiest functions.
 * `--keep` leaves the SQL Server database for the next run (found by its name, filled once). `--quick` measures only
 * the raw `SELECT *` stream, the raw stream of the agent's select, the same values served from a table of their own
 * (and the agent's pipeline on them: where the server keeps up), the snapshot phase and the write side.
 * Prints a table and writes .tmp/bench-snapshot-mssql.json.
 */
import { Session } from 'node:inspector/promises';
import { performance } from 'node:perf_hooks';
import { Readable } from 'node:stream';
import type { SourceConfig } from '../src/config/schema.ts';
import { connect } from '../src/dialect/connect.ts';
import { MssqlDb, mssqlPoolConfig } from '../src/dialect/mssql.ts';
import { PostgresDb, withApplicationName } from '../src/dialect/postgres.ts';
import { cellReader } from '../src/dialect/cells.ts';
import type { Cell, Db } from '../src/dialect/types.ts';
import { migrate } from '../src/migrations/migrate.ts';
import { describeSource } from '../src/snapshot/introspect.ts';
import { takeSnapshot } from '../src/snapshot/snapshot.ts';
import { sourceTables } from '../src/snapshot/source-tables.ts';
import { prepareTables } from '../src/snapshot/tables.ts';
import { loadAverage, sampleCpu } from './cpu.ts';
import { summarizeProfile, type Profile } from './cpuprofile.ts';
import { benchDatabase, option, report } from './support.ts';

const TABLE = 'bench_src';
const TENANT = 'bench';
const r2 = (x: number) => Math.round(x * 100) / 100;

function mssqlConfig(url: string, database?: string) {
  const u = new URL(url);
  if (database) u.pathname = `/${database}`;
  const flag = (name: string, fallback: boolean) => (u.searchParams.has(name) ? u.searchParams.get(name) === 'true' : fallback);
  return { dialect: 'mssql', url: u.toString(), encrypt: flag('encrypt', true), trustServerCertificate: flag('trustServerCertificate', false), poolMax: 2, connectTimeout: 30_000, requestTimeout: 0 } as const;
}

function mssqlDb(url: string, database?: string): Promise<Db> {
  return connect(mssqlConfig(url, database) as never);
}

/** This process's CPU seconds (every thread: tedious, pg, zlib, GC helpers). */
function processCpu(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

async function fillTable(db: Db, rows: number): Promise<void> {
  await db.execute(`CREATE TABLE dbo.${TABLE} (
    id bigint NOT NULL PRIMARY KEY, c1 int, c2 bigint, c3 decimal(18,4), c4 nvarchar(100), c5 varchar(40),
    c6 datetime2(6), c7 date, c8 bit, c9 float, c10 uniqueidentifier)`);
  const chunk = 200_000;
  for (let from = 1; from <= rows; from += chunk) {
    const to = Math.min(rows, from + chunk - 1);
    // Digits crossed into 0 … 10^6 − 1, offset by `from`: no numbers table needed on either engine.
    await db.execute(`WITH d AS (SELECT v FROM (VALUES (0),(1),(2),(3),(4),(5),(6),(7),(8),(9)) AS x(v)),
      n AS (SELECT ${from - 1} + a.v + 10 * b.v + 100 * c.v + 1000 * e.v + 10000 * f.v + 100000 * g.v + 1 AS i
              FROM d a CROSS JOIN d b CROSS JOIN d c CROSS JOIN d e CROSS JOIN d f CROSS JOIN d g)
      INSERT INTO dbo.${TABLE}
      SELECT i, i % 1000, CAST(i AS bigint) * 7, CAST(i % 100000 AS decimal(18,4)) / 100, N'text value ' + CAST(i AS nvarchar(20)),
             'v' + CAST(i % 5000 AS varchar(10)), DATEADD(microsecond, i % 1000000, DATEADD(second, i, CAST('2020-01-01' AS datetime2(6)))),
             DATEADD(day, i % 1000, CAST('2020-01-01' AS date)), i % 2, i / 3.0, NEWID()
        FROM n WHERE i <= ${to}`);
    console.log(`  ${to.toLocaleString('en')} rows`);
  }
}

/** The cells readCells yields for the bench table's row i (the write side's input, made in Node). */
function* syntheticCells(rows: number): Iterable<Cell[]> {
  const t0 = Date.UTC(2020, 0, 1);
  for (let i = 1; i <= rows; i++) {
    const at = new Date(t0 + i * 1000).toISOString().slice(0, 19);
    const hex = (i * 2654435761).toString(16).padStart(12, '0').slice(-12);
    yield [BigInt(i), i % 1000, BigInt(i) * 7n, ((i % 100000) / 100).toFixed(4), `text value ${i}`, `v${i % 5000}`, `${at}.${String(i % 1e6).padStart(6, '0')}`,
      new Date(t0 + (i % 1000) * 86_400_000).toISOString().slice(0, 10), i % 2 === 1, i / 3, `5ea58b8f-f5ce-4a4d-976c-${hex}`];
  }
}

/** COPY text of one cell, as the PostgreSQL adapter wrote it before its binary COPY (copyText, removed from src/dialect/postgres.ts). */
function copyText(cell: Cell): string {
  if (cell === null) return '\\N';
  if (typeof cell === 'boolean') return cell ? 't' : 'f';
  if (typeof cell === 'number') return Number.isNaN(cell) ? 'NaN' : cell === Infinity ? 'Infinity' : cell === -Infinity ? '-Infinity' : String(cell);
  if (typeof cell === 'bigint') return cell.toString();
  if (Buffer.isBuffer(cell)) return `\\\\x${cell.toString('hex')}`;
  return cell.replace(/[\\\t\n\r]/g, (c) => (c === '\\' ? '\\\\' : c === '\t' ? '\\t' : c === '\n' ? '\\n' : '\\r'));
}

/** The same COPY text, `per` rows to a chunk (one CopyData message and socket write per chunk, not per row). */
function* copyChunks(cells: Iterable<Cell[]>, per: number): Iterable<string> {
  let lines: string[] = [];
  for (const row of cells) {
    lines.push(`${row.map(copyText).join('\t')}\n`);
    if (lines.length === per) {
      yield lines.join('');
      lines = [];
    }
  }
  if (lines.length) yield lines.join('');
}

export async function run(args: string[]): Promise<void> {
  const url = process.env.CDC_BENCH_MSSQL_URL;
  if (!url) throw new Error('set CDC_BENCH_MSSQL_URL to a SQL Server (or Babelfish) login that may create a database, e.g. mssql://user:pass@127.0.0.1:1433/master?encrypt=false&trustServerCertificate=true');
  const rows = option(args, '--rows', 1_000_000);
  const keep = args.includes('--keep');
  // --quick: only the raw SELECT * stream, the snapshot phase and the write side (the target's figures).
  const quick = args.includes('--quick');
  const database = keep ? `bench_snapshot_${rows}` : `bench_snapshot_${Math.random().toString(16).slice(2, 8)}`;
  const master = await mssqlDb(url);
  const [{ version }] = (await master.query<{ version: string }>('SELECT @@VERSION AS version')) as [{ version: string }];
  const engine = /Babelfish/i.test(version) ? 'Babelfish' : 'SQL Server';
  const existing = await master.query(`SELECT name FROM sys.databases WHERE name = '${database}'`);
  if (existing.length === 0) await master.execute(`CREATE DATABASE ${database}`);
  await master.close();
  const source = await mssqlDb(url, database);
  const server = await benchDatabase('snapshot_mssql');
  const controlDbName = new URL(server.url).pathname.slice(1);
  // The agent's own pool settings (application name cdc-sync-agent, jit off, type parsers).
  const control = new PostgresDb({ dialect: 'postgres', url: server.url, poolMax: 4 });
  const harness = await connect({ dialect: 'postgres', url: withApplicationName(server.url, 'cdc-bench'), poolMax: 2 });
  try {
    const filled = (await source.query(`SELECT 1 AS one FROM sys.tables WHERE name = '${TABLE}'`)).length > 0;
    if (!filled) {
      console.log(`filling ${engine} table with ${rows.toLocaleString('en')} rows × 11 columns…`);
      await fillTable(source, rows);
    }
    await migrate(control);
    const config = { id: 'mssql_src', table: `dbo.${TABLE}`, columns: {}, onSchemaChange: 'resync' } as unknown as SourceConfig;
    const described = await describeSource(source, TENANT, config);
    const schema = described.schema;
    const columns = schema.columns;

    // readCells' statement exactly as the agent sends it.
    const agentSelect = (source as MssqlDb).cellsQuery({ sql: described.select }, columns);
    // The agent's select with its renderings' targets swapped (varchar/char ⇄ nvarchar/nchar: one of the two is the
    // agent's own, since 48f0141 the n-types), and the lever: natively every column tedious returns exactly.
    const swapped = /CONVERT\(nvarchar\(/.test(agentSelect)
      ? { label: 'varchar/char targets', text: agentSelect.replace(/CONVERT\(nvarchar\(/g, 'CONVERT(varchar(').replace(/CONVERT\(nchar\(/g, 'CONVERT(char(') }
      : { label: 'nvarchar/nchar targets', text: agentSelect.replace(/CONVERT\(varchar\(/g, 'CONVERT(nvarchar(').replace(/CONVERT\(char\(/g, 'CONVERT(nchar(') };
    const rendered = (c: (typeof columns)[number]) => {
      const q = `[${c.name}]`;
      if (c.type.kind === 'decimal') return `CONVERT(nvarchar(50), ${q}) AS ${q}`;
      if (c.type.kind === 'timestamp') return `CONVERT(nvarchar(40), ${q}, 121) AS ${q}`;
      if (c.type.kind === 'date') return `CONVERT(nchar(10), ${q}, 23) AS ${q}`;
      return q;
    };
    const leverSelect = `SELECT ${columns.map(rendered).join(', ')} FROM dbo.${TABLE}`;

    // The sampler runs in this process, whose CPU is the figure: it samples only steps that write the control
    // database, once a second (its own cost, ≈ 3 ms a sample, would otherwise be a visible part of a slow stream's).
    const measure = async <T>(name: string, fn: () => Promise<T>, options: { control?: boolean } = {}) => {
      const load = await loadAverage();
      const sampler = options.control
        ? sampleCpu(harness, {
            processes: {},
            group: (s) => (s.database === controlDbName && s.application === 'cdc-sync-agent' ? 'control db' : null),
            statements: ['control db'],
            intervalMs: 1000,
          })
        : undefined;
      await sampler?.ready;
      const cpu0 = processCpu();
      const t0 = performance.now();
      const result = await fn();
      const seconds = (performance.now() - t0) / 1000;
      const cpu = processCpu() - cpu0;
      const backends = sampler ? await sampler.stop() : { total: {} as Record<string, number>, byStatement: {} };
      console.log(`${name}: ${r2(seconds)} s, ${r2(cpu)} CPU-s in Node, control db ${r2(backends.total['control db'] ?? 0)} CPU-s (load average ${load})`);
      return { result, seconds, cpu, controlCpu: backends.total['control db'] ?? 0, byStatement: backends.byStatement, load };
    };
    const rawStream = (text: string) => async () => {
      let n = 0;
      for await (const row of source.stream(text)) if (row) n++;
      return n;
    };

    // The agent's sessions ask for 16,383-byte TDS packets (src/dialect/mssql.ts DEFAULT_PACKET_SIZE); beside them,
    // tedious' own default of 4,096 and the protocol's largest, 32,767 (fewer rows split across packets, which
    // tedious' parser meets by throwing and parsing the row again).
    const base = mssqlPoolConfig(mssqlConfig(url, database) as never);
    const withPackets = async (packetSize: number) => {
      const db = await MssqlDb.connect({ ...base, options: { ...base.options, packetSize } });
      const stream = (text: string) => async () => {
        let n = 0;
        for await (const row of db.stream(text)) if (row) n++;
        return n;
      };
      return { db, stream };
    };
    const small = await withPackets(4_096);
    const large = await withPackets(32_767);
    // Warm-up, not measured: the first stream in the process would also pay for compiling tedious' and our hot code.
    for (const warm of [rawStream(`SELECT TOP 100000 * FROM dbo.${TABLE}`), small.stream(`SELECT TOP 100000 * FROM dbo.${TABLE}`)]) await warm();
    const raw = await measure('raw stream, SELECT * (native), 16,383-byte TDS packets (the agent\'s)', rawStream(`SELECT * FROM dbo.${TABLE}`));
    const rawSmall = quick ? undefined : await measure('raw stream, SELECT *, 4,096-byte packets (tedious\' default)', small.stream(`SELECT * FROM dbo.${TABLE}`));
    const rawBig = quick ? undefined : await measure('raw stream, SELECT *, 32,767-byte packets', large.stream(`SELECT * FROM dbo.${TABLE}`));
    const agentRead = await measure("raw stream of the agent's select", rawStream(agentSelect));
    const agentSmall = quick ? undefined : await measure("raw stream of the agent's select, 4,096-byte packets", small.stream(agentSelect));
    const agentBig = quick ? undefined : await measure("raw stream of the agent's select, 32,767-byte packets", large.stream(agentSelect));
    await small.db.close();
    await large.db.close();
    const swappedRead = quick ? undefined : await measure(`raw stream of the agent's select, ${swapped.label}`, rawStream(swapped.text));
    const leverRead = quick ? undefined : await measure('raw stream, native where exact', rawStream(leverSelect));
    // The agent's select's values, rendered once into a table of their own (c0…cN, the same nvarchar text and native
    // columns): read with SELECT *, the server sends the agent's bytes at full speed. Babelfish renders the agent's
    // CONVERTs slowly and sends its rows a packet at a time, and the same per-row work then costs Node more CPU
    // (compare the two raw streams); this measures the agent's pipeline where the server keeps up.
    const renderedExists = (await source.query(`SELECT 1 AS one FROM sys.tables WHERE name = '${TABLE}_rendered'`)).length > 0;
    if (!renderedExists) {
      console.log("rendering the agent's select into a table of its own (once)…");
      await source.execute(agentSelect.replace(/ FROM \(SELECT /, ` INTO dbo.${TABLE}_rendered FROM (SELECT `));
    }
    const renderedRead = await measure("raw stream of the agent's select's values from a table (served at full speed)", rawStream(`SELECT * FROM dbo.${TABLE}_rendered`));
    await prepareTables({ controlDb: control, tenant: TENANT, source: config, schema, runId: 'r1' });
    const readers = columns.map((c) => cellReader(c.type));
    const renderedCells = async function* (): AsyncIterable<Cell[]> {
      for await (const row of source.stream(`SELECT * FROM dbo.${TABLE}_rendered`)) yield readers.map((read, i) => read(row[`c${i}`]));
    };
    const fullSpeed = await measure('agent pipeline on those values: cellReader → bulkWrite (binary COPY)', () => control.bulkWrite(sourceTables(TENANT, config.id).snapshot, columns, renderedCells()), { control: true });
    await control.execute(`TRUNCATE ${control.table(sourceTables(TENANT, config.id).snapshot)}`);
    const session = args.includes('--profile') ? new Session() : undefined;
    if (session) {
      session.connect();
      await session.post('Profiler.enable');
      await session.post('Profiler.start');
    }
    const snapshot = await measure('agent snapshot phase (takeSnapshot → control COPY)', () => takeSnapshot({ sourceDb: source, controlDb: control, tenant: TENANT, source: config, schema }), { control: true });
    let profile: ReturnType<typeof summarizeProfile>['all'] | undefined;
    if (session) {
      const { profile: p } = await session.post('Profiler.stop');
      session.disconnect();
      profile = summarizeProfile(p as unknown as Profile, undefined, 25).all;
    }

    // The write side alone, on rows made in Node (the same cells): as bulkWrite writes them (a chunk per row), and
    // the lever, 1,000 rows per chunk; and making the cells alone, which both include.
    const snapTable = control.table(sourceTables(TENANT, config.id).snapshot);
    const copySql = `COPY ${snapTable} (${columns.map((c) => control.quote(c.name)).join(', ')}) FROM STDIN`;
    const made = await measure('cells made in Node, not written', async () => {
      let n = 0;
      for (const row of syntheticCells(rows)) if (row) n++;
      return n;
    });
    await control.execute(`TRUNCATE ${snapTable}`);
    const writeAsIs = await measure('write side: bulkWrite (binary COPY)', () => control.bulkWrite(sourceTables(TENANT, config.id).snapshot, columns, syntheticCells(rows)), { control: true });
    await control.execute(`TRUNCATE ${snapTable}`);
    const writeBatched = await measure('write side: the same COPY text, 1,000 rows per chunk', () => control.copyIn(copySql, Readable.from(copyChunks(syntheticCells(rows), 1000))), { control: true });
    await control.execute(`TRUNCATE ${snapTable}`);

    const perM = (x: number) => r2(x / (rows / 1e6));
    const agentCpu = snapshot.cpu + snapshot.controlCpu;
    const figures: Array<Record<string, string | number>> = [
      { step: 'raw tedious stream, SELECT * (native types), 16,383-byte TDS packets as the agent asks', rows: raw.result, 'wall s': r2(raw.seconds), 'Node CPU s per 1M': perM(raw.cpu), 'vs raw': 1, note: '' },
      ...(rawSmall ? [{ step: "raw tedious stream, SELECT *, 4,096-byte packets (tedious' default)", rows: rawSmall.result, 'wall s': r2(rawSmall.seconds), 'Node CPU s per 1M': perM(rawSmall.cpu), 'vs raw': r2(rawSmall.cpu / raw.cpu), note: '' }] : []),
      ...(rawBig ? [{ step: 'raw tedious stream, SELECT *, 32,767-byte packets', rows: rawBig.result, 'wall s': r2(rawBig.seconds), 'Node CPU s per 1M': perM(rawBig.cpu), 'vs raw': r2(rawBig.cpu / raw.cpu), note: '' }] : []),
      { step: "raw stream of the agent's select (16,383-byte packets)", rows: agentRead.result, 'wall s': r2(agentRead.seconds), 'Node CPU s per 1M': perM(agentRead.cpu), 'vs raw': r2(agentRead.cpu / raw.cpu), note: '' },
      { step: "raw stream of the agent's select's values from a table (the server keeps up)", rows: renderedRead.result, 'wall s': r2(renderedRead.seconds), 'Node CPU s per 1M': perM(renderedRead.cpu), 'vs raw': r2(renderedRead.cpu / raw.cpu), note: '' },
      ...(agentSmall ? [{ step: "the agent's select, 4,096-byte packets", rows: agentSmall.result, 'wall s': r2(agentSmall.seconds), 'Node CPU s per 1M': perM(agentSmall.cpu), 'vs raw': r2(agentSmall.cpu / raw.cpu), note: '' }] : []),
      ...(agentBig ? [{ step: "the agent's select, 32,767-byte packets", rows: agentBig.result, 'wall s': r2(agentBig.seconds), 'Node CPU s per 1M': perM(agentBig.cpu), 'vs raw': r2(agentBig.cpu / raw.cpu), note: '' }] : []),
      ...(swappedRead ? [{ step: `the same, ${swapped.label}`, rows: swappedRead.result, 'wall s': r2(swappedRead.seconds), 'Node CPU s per 1M': perM(swappedRead.cpu), 'vs raw': r2(swappedRead.cpu / raw.cpu), note: '' }] : []),
      ...(leverRead ? [{ step: 'native where tedious is exact; CONVERT to nvarchar for decimal, datetime2, date', rows: leverRead.result, 'wall s': r2(leverRead.seconds), 'Node CPU s per 1M': perM(leverRead.cpu), 'vs raw': r2(leverRead.cpu / raw.cpu), note: '' }] : []),
      {
        step: 'agent snapshot phase: readCells → toCell → bulkWrite (binary COPY) into the control database',
        rows: snapshot.result.rows,
        'wall s': r2(snapshot.seconds),
        'Node CPU s per 1M': perM(snapshot.cpu),
        'vs raw': r2(snapshot.cpu / raw.cpu),
        'control db CPU s per 1M': perM(snapshot.controlCpu),
        'agent CPU s per 1M (Node + control db)': perM(agentCpu),
        'agent vs raw': r2(agentCpu / raw.cpu),
        note: 'target ≤ 2 × raw in agent CPU',
      },
      {
        step: 'agent pipeline on those values, the server keeping up: cellReader → bulkWrite (binary COPY)',
        rows: fullSpeed.result,
        'wall s': r2(fullSpeed.seconds),
        'Node CPU s per 1M': perM(fullSpeed.cpu),
        'vs raw': r2(fullSpeed.cpu / raw.cpu),
        'control db CPU s per 1M': perM(fullSpeed.controlCpu),
        'agent CPU s per 1M (Node + control db)': perM(fullSpeed.cpu + fullSpeed.controlCpu),
        'agent vs raw': r2((fullSpeed.cpu + fullSpeed.controlCpu) / raw.cpu),
        note: 'objects by name, where readCells reads arrays',
      },
      { step: 'write side alone: making the cells in Node (no write)', rows: made.result, 'wall s': r2(made.seconds), 'Node CPU s per 1M': perM(made.cpu), note: 'included in the two rows below' },
      {
        step: 'write side alone: bulkWrite of those cells (binary COPY, 256 KiB chunks)',
        rows: writeAsIs.result,
        'wall s': r2(writeAsIs.seconds),
        'Node CPU s per 1M': perM(writeAsIs.cpu),
        'control db CPU s per 1M': perM(writeAsIs.controlCpu),
        'agent CPU s per 1M (Node + control db)': perM(writeAsIs.cpu + writeAsIs.controlCpu),
        note: '',
      },
      {
        step: 'write side alone: the same cells as COPY text, 1,000 rows per chunk (bulkWrite before binary COPY)',
        rows: writeBatched.result,
        'wall s': r2(writeBatched.seconds),
        'Node CPU s per 1M': perM(writeBatched.cpu),
        'control db CPU s per 1M': perM(writeBatched.controlCpu),
        'agent CPU s per 1M (Node + control db)': perM(writeBatched.cpu + writeBatched.controlCpu),
        note: '',
      },
    ];
    console.log(`${engine}: ${version.split('\n')[0]}`);
    console.log(`target: the snapshot's agent CPU ≤ 2 × the raw SELECT * stream's: ${agentCpu <= 2 * raw.cpu ? 'met' : 'not met'} (${r2(agentCpu)} against ${r2(raw.cpu)} CPU-s, ${r2(agentCpu / raw.cpu)} ×)`);
    const fullSpeedCpu = fullSpeed.cpu + fullSpeed.controlCpu;
    console.log(`the same pipeline where the server keeps up: ${r2(fullSpeedCpu)} against ${r2(raw.cpu)} CPU-s, ${r2(fullSpeedCpu / raw.cpu)} × (${fullSpeedCpu <= 2 * raw.cpu ? 'within' : 'over'} 2 ×)`);
    console.log(`control db CPU-s by statement: ${JSON.stringify(snapshot.byStatement)}`);
    if (profile) {
      console.log(`snapshot phase profile: busy ${profile.busyMs} ms (GC ${profile.gcMs}), idle ${profile.idleMs} ms`);
      for (const [f, ms] of profile.functions) console.log(`  ${String(ms).padStart(7)} ms  ${f}`);
    }
    console.log(`agent's select: ${agentSelect}`);
    await report('snapshot-mssql', figures);
  } finally {
    await source.close();
    await control.close();
    await harness.close();
    await server.close();
    if (!keep) {
      const again = await mssqlDb(url);
      await again.execute(`DROP DATABASE ${database}`).catch((e: unknown) => console.warn(`could not drop ${database}: ${String(e)}`));
      await again.close();
    }
  }
}
