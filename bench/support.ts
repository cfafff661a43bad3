/** Shared plumbing for benchmarks: a PostgreSQL server (CDC_BENCH_PG_URL, else embedded) and figures output. */
import { mkdir, writeFile } from 'node:fs/promises';
import { createWriteStream } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import pg from 'pg';
import { startEmbeddedPostgres } from '../src/demo/embedded-postgres.ts';

export interface BenchServer {
  /** URL of a fresh database created for this benchmark. */
  url: string;
  /** A further fresh database on the same server (a source kept apart from the control database), dropped by close. */
  createDatabase(suffix: string): Promise<string>;
  close(): Promise<void>;
}

export async function benchDatabase(label: string): Promise<BenchServer> {
  let adminUrl = process.env.CDC_BENCH_PG_URL;
  let stopServer = async () => {};
  if (!adminUrl) {
    const server = await startEmbeddedPostgres({ label: 'bench' });
    adminUrl = server.url;
    stopServer = () => server.stop();
  }
  const name = `bench_${label}_${randomBytes(3).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const urlOf = (database: string) => {
    const url = new URL(adminUrl!);
    url.pathname = `/${database}`;
    return url.toString();
  };
  const names = [name];
  return {
    url: urlOf(name),
    async createDatabase(suffix: string) {
      const extra = `${name}_${suffix}`;
      const client = new pg.Client({ connectionString: adminUrl });
      await client.connect();
      await client.query(`CREATE DATABASE ${extra}`);
      await client.end();
      names.push(extra);
      return urlOf(extra);
    },
    async close() {
      const again = new pg.Client({ connectionString: adminUrl });
      await again.connect();
      for (const db of names) await again.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
      await again.end();
      await stopServer();
    },
  };
}

/** Print a figures table and write it as JSON under .tmp/. */
export async function report(name: string, rows: Array<Record<string, string | number>>): Promise<void> {
  console.table(rows);
  await mkdir('.tmp', { recursive: true });
  await writeFile(`.tmp/bench-${name}.json`, JSON.stringify({ name, at: new Date().toISOString(), rows }, null, 2));
  console.log(`figures written to .tmp/bench-${name}.json`);
}

/** Peak RSS of this process in MB, sampled. */
export function rssSampler(): { stop(): number } {
  let peak = process.memoryUsage().rss;
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
  }, 50);
  return {
    stop() {
      clearInterval(timer);
      return Math.round((Math.max(peak, process.memoryUsage().rss) / 1024 / 1024) * 10) / 10;
    },
  };
}

/** A bare Node HTTP server that gunzips and parses each body: the loopback limit the agent is compared with. */
export const BARE_SERVER = `
const http = require('node:http'); const zlib = require('node:zlib');
const server = http.createServer((req, res) => {
  const chunks = []; const input = req.headers['content-encoding'] === 'gzip' ? req.pipe(zlib.createGunzip()) : req;
  input.on('data', (c) => chunks.push(c));
  input.on('end', () => { const body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ status: 'applied', upserts: Array.isArray(body.changes) ? body.changes.length : 0, deletes: 0 })); });
});
server.keepAliveTimeout = 60000;
server.listen(0, '127.0.0.1', () => console.log('listening on http://127.0.0.1:' + server.address().port));
`;

/**
 * The agent's processes run what the container image runs: the compiled build (`npm run build`, dist/), made
 * fresh here, unless `--sources` asks for the TypeScript sources through Node's type stripping (≈ 30 MB more RSS).
 * Children started after this inherit the choice (CDC_AGENT_BUILD, read by bin/cdc-agent.js).
 */
export async function chooseAgentBuild(args: string[]): Promise<'dist' | 'src'> {
  if (args.includes('--sources')) {
    process.env.CDC_AGENT_BUILD = 'src';
    return 'src';
  }
  console.log('building dist/ (npm run build)…');
  const tsc = spawn(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json'], { stdio: 'inherit' });
  const [code] = (await once(tsc, 'exit')) as [number | null];
  if (code !== 0) throw new Error(`npm run build failed (exit ${code}); fix the build or pass --sources`);
  process.env.CDC_AGENT_BUILD = 'dist';
  return 'dist';
}

/** A numeric `--name value` option. */
export function option(args: string[], name: string, fallback: number): number {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] ? Number(args[i + 1]) : fallback;
}

/** Start a child Node process and wait for its `listening on URL` line. */
export async function startChild(args: string[]): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  let text = '';
  for await (const chunk of child.stdout!) {
    text += String(chunk);
    const m = /listening on (http:\/\/[^\s]+)/.exec(text);
    if (m) {
      child.stdout!.resume();
      return { child, url: m[1]! };
    }
  }
  throw new Error(`child exited before listening: ${text}`);
}

/** Stop a child process (SIGTERM) and wait for it to exit. */
export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  await once(child, 'exit');
}

/** One line of the agent's JSON log (pino). */
export type LogLine = Record<string, unknown> & { level: number; msg: string; time: string };

export interface AgentProcess {
  child: ChildProcess;
  pid: number;
  /** Every log line so far, parsed (the bench reads the per-phase `ms` of each run's lines). */
  lines: LogLine[];
}

/**
 * `cdc-agent --config <path> run --no-schedule` in its own process (its RSS and CPU its own), its log read as JSON
 * from stderr: warnings and errors are shown, every line is kept for the figures. `execArgv` goes before the
 * script (`--cpu-prof`, `--max-old-space-size`).
 */
export function startAgent(configPath: string, execArgv: string[] = []): AgentProcess {
  const child = spawn(process.execPath, [...execArgv, 'bin/cdc-agent.js', '--config', configPath, 'run', '--no-schedule', '--health-host', '127.0.0.1'], {
    stdio: ['ignore', 'inherit', 'pipe'],
  });
  const lines: LogLine[] = [];
  let rest = '';
  // CDC_BENCH_AGENT_LOG=<file>: every line the agent logs, as it came (with CDC_BENCH_LOG=debug for the most).
  const keep = process.env.CDC_BENCH_AGENT_LOG ? createWriteStream(process.env.CDC_BENCH_AGENT_LOG, { flags: 'a' }) : undefined;
  child.stderr!.on('data', (chunk: Buffer) => {
    keep?.write(chunk);
    const text = rest + chunk.toString('utf8');
    const parts = text.split('\n');
    rest = parts.pop() ?? '';
    for (const part of parts) {
      if (!part.trim()) continue;
      try {
        const line = JSON.parse(part) as LogLine;
        lines.push(line);
        if (line.level >= 40) process.stderr.write(`agent: ${part}\n`);
      } catch {
        process.stderr.write(`agent: ${part}\n`);
      }
    }
  });
  return { child, pid: child.pid!, lines };
}
