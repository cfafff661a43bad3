/**
 * The sink receiver (issue 20): a minimal receiver of the Data Push API (docs/data-push-api.md,
 * docs/openapi.yaml) that stores no row, so that a benchmark measures the agent's own cost and not a database's.
 * Run as its own process: `node bench/sink.ts --port 0 --token tenant=TOKEN [--token …] [--host 127.0.0.1]`; it
 * prints `listening on URL`.
 *
 * What it does, per the contract:
 * - checks the tenant's credential on every request (`Authorization: Bearer …` or `X-Api-Key`; 401 otherwise);
 * - POSTs: `Content-Type: application/json` in UTF-8 and `Content-Encoding` identity or gzip (415 otherwise); the
 *   body limit (64 MiB) counts decoded bytes (413); the body must be UTF-8 and JSON (400);
 * - a batch must have the contract's shape (BatchBody: every property and no other, ids, mode, the schema block,
 *   each change an upsert with a row or a delete with a key of JSON scalars) and the Idempotency-Key built from
 *   its runId, batch and part (400 with the reason);
 * - dedupes by Idempotency-Key per tenant and dataset, by the SHA-256 of the decoded bytes: the same bytes again
 *   answer 200 `duplicate`, other bytes under the same key 422; a first one 201 `applied` with its counts;
 * - counts each run's batch numbers, upserts and deletes (in memory: the only state it keeps), and answers the
 *   completion `reconciled` when the body's counts are those, else `mismatch` with the problems. It holds no
 *   rows, so it cannot check `sourceRows` against rows held, the one check a receiver that does not track rows
 *   leaves out; a full run's `removed` is 0, as it removed nothing. A replayed completion answers `duplicate`
 *   with the first answer's problems;
 * - the optional digest endpoint is absent (404: `cdc-agent verify` reports "receiver cannot verify");
 *   `GET …/stats` reports its counts (the benchmarks check them).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { gunzip } from 'node:zlib';

const MAX_BODY = 64 * 1024 * 1024;
const ID = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/;
const PART = /^[12](\.[12])*$/;
const VERSION = /^sha256:[0-9a-f]{64}$/;
const MODES = new Set(['initial', 'incremental', 'resync']);
const TYPES = new Set(['boolean', 'int16', 'int32', 'int64', 'decimal', 'float32', 'float64', 'string', 'binary', 'uuid', 'date', 'time', 'timestamp', 'timestamptz']);
const utf8 = new TextDecoder('utf-8', { fatal: true });

class Refused extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const bad = (message: string) => new Refused(400, 'bad_request', message);

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

function isObject(v: unknown): v is Record<string, Json> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Exactly these properties: `required` present, nothing beyond `required` and `optional`. */
function properties(v: unknown, at: string, required: readonly string[], optional: readonly string[] = []): Record<string, Json> {
  if (!isObject(v)) throw bad(`${at} must be an object`);
  for (const k of required) if (!(k in v)) throw bad(`${at}.${k} is required`);
  for (const k in v) if (!required.includes(k) && !optional.includes(k)) throw bad(`${at} has an unknown property ${JSON.stringify(k)}`);
  return v;
}

const isInteger = (v: unknown, min: number) => typeof v === 'number' && Number.isInteger(v) && v >= min;

function checkSchema(v: unknown): void {
  const s = properties(v, 'schema', ['version', 'key', 'columns']);
  if (typeof s.version !== 'string' || !VERSION.test(s.version)) throw bad('schema.version must be sha256: and 64 hex digits');
  if (!Array.isArray(s.key) || s.key.length === 0 || s.key.some((k) => typeof k !== 'string' || k.length === 0)) throw bad('schema.key must be a non-empty array of column names');
  if (!Array.isArray(s.columns) || s.columns.length === 0) throw bad('schema.columns must be a non-empty array');
  s.columns.forEach((c, i) => {
    const col = properties(c, `schema.columns[${i}]`, ['name', 'type', 'nullable'], ['precision', 'scale', 'maxLength']);
    if (typeof col.name !== 'string' || col.name.length === 0) throw bad(`schema.columns[${i}].name must be a non-empty string`);
    if (typeof col.type !== 'string' || !TYPES.has(col.type)) throw bad(`schema.columns[${i}].type ${JSON.stringify(col.type)} is not a contract type`);
    if (typeof col.nullable !== 'boolean') throw bad(`schema.columns[${i}].nullable must be a boolean`);
    for (const p of ['precision', 'scale'] as const) if (p in col && !(isInteger(col[p], 0) && (col[p] as number) <= 38)) throw bad(`schema.columns[${i}].${p} must be an integer 0–38`);
    if ('maxLength' in col && col.maxLength !== null && !isInteger(col.maxLength, 1)) throw bad(`schema.columns[${i}].maxLength must be a positive integer or null`);
  });
}

/** An upsert's row or a delete's key: an object of JSON scalars. */
function checkValues(v: unknown, at: string): void {
  if (!isObject(v)) throw bad(`${at} must be an object`);
  for (const k in v) {
    const x = v[k];
    if (x !== null && typeof x === 'object') throw bad(`${at}.${k} must be a string, number, boolean or null`);
  }
}

/** A batch body of the contract's shape; returns its counts. */
function checkBatch(body: unknown, key: string | undefined): { runId: string; batch: number; upserts: number; deletes: number } {
  const b = properties(body, 'body', ['runId', 'mode', 'batch', 'schema', 'changes'], ['part']);
  if (typeof b.runId !== 'string' || !ID.test(b.runId)) throw bad('runId must match ^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$');
  if (typeof b.mode !== 'string' || !MODES.has(b.mode)) throw bad('mode must be initial, incremental or resync');
  if (!isInteger(b.batch, 1)) throw bad('batch must be an integer ≥ 1');
  if ('part' in b && (typeof b.part !== 'string' || !PART.test(b.part))) throw bad('part must match ^[12](\\.[12])*$');
  const expected = `${b.runId}.${b.batch as number}${typeof b.part === 'string' ? `.${b.part}` : ''}`;
  if (key !== expected) throw bad(`Idempotency-Key must be ${expected} for this body (got ${JSON.stringify(key ?? null)})`);
  checkSchema(b.schema);
  if (!Array.isArray(b.changes) || b.changes.length === 0) throw bad('changes must be a non-empty array');
  let upserts = 0;
  let deletes = 0;
  const changes = b.changes;
  for (let i = 0; i < changes.length; i++) {
    const c = changes[i];
    if (!isObject(c)) throw bad(`changes[${i}] must be an object`);
    if (c.op === 'upsert') {
      properties(c, `changes[${i}]`, ['op', 'row']);
      checkValues(c.row, `changes[${i}].row`);
      upserts++;
    } else if (c.op === 'delete') {
      properties(c, `changes[${i}]`, ['op', 'key']);
      checkValues(c.key, `changes[${i}].key`);
      deletes++;
    } else throw bad(`changes[${i}].op must be upsert or delete`);
  }
  return { runId: b.runId, batch: b.batch as number, upserts, deletes };
}

function checkComplete(body: unknown, runId: string, key: string | undefined) {
  const b = properties(body, 'body', ['runId', 'mode', 'schemaVersion', 'batches', 'upserts', 'deletes', 'sourceRows']);
  if (b.runId !== runId) throw bad(`body runId ${JSON.stringify(b.runId)} differs from the path's ${runId}`);
  if (typeof b.mode !== 'string' || !MODES.has(b.mode)) throw bad('mode must be initial, incremental or resync');
  if (typeof b.schemaVersion !== 'string' || !VERSION.test(b.schemaVersion)) throw bad('schemaVersion must be sha256: and 64 hex digits');
  for (const k of ['batches', 'upserts', 'deletes', 'sourceRows'] as const) if (!isInteger(b[k], 0)) throw bad(`${k} must be an integer ≥ 0`);
  if (key !== `${runId}.complete`) throw bad(`Idempotency-Key must be ${runId}.complete`);
  return b as { mode: string; batches: number; upserts: number; deletes: number };
}

interface RunCounts {
  batches: Set<number>;
  upserts: number;
  deletes: number;
}

interface DatasetStats {
  batchesApplied: number;
  replaysDeduped: number;
  upserts: number;
  deletes: number;
  runsCompleted: number;
  mismatches: number;
}

function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const encoding = String(req.headers['content-encoding'] ?? 'identity').toLowerCase();
  if (encoding !== 'identity' && encoding !== 'gzip') throw new Refused(415, 'unsupported_media_type', `Content-Encoding ${encoding} is not supported; send identity or gzip`);
  const chunks: Buffer[] = [];
  let length = 0;
  for await (const chunk of req) {
    length += (chunk as Buffer).length;
    if (length > MAX_BODY) throw new Refused(413, 'payload_too_large', `the body is larger than ${MAX_BODY} bytes`);
    chunks.push(chunk as Buffer);
  }
  const raw = Buffer.concat(chunks, length);
  if (encoding === 'identity') return raw;
  return new Promise((resolve, reject) =>
    gunzip(raw, { maxOutputLength: MAX_BODY }, (error, out) => {
      if (!error) resolve(out);
      else if ((error as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') reject(new Refused(413, 'payload_too_large', `the decoded body is larger than ${MAX_BODY} bytes`));
      else reject(bad(`the body is not valid gzip: ${error.message}`));
    }),
  );
}

function parseJson(bytes: Buffer): unknown {
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    throw bad('the body is not UTF-8');
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw bad(`the body is not JSON: ${(error as Error).message}`);
  }
}

export function startSink(options: { port: number; host: string; tokens: Record<string, string> }) {
  const ledger = new Map<string, { sha: string }>();
  const runs = new Map<string, RunCounts>();
  const completions = new Map<string, string[]>();
  const stats = new Map<string, DatasetStats>();
  const statsOf = (dataset: string) => {
    let s = stats.get(dataset);
    if (!s) stats.set(dataset, (s = { batchesApplied: 0, replaysDeduped: 0, upserts: 0, deletes: 0, runsCompleted: 0, mismatches: 0 }));
    return s;
  };

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://sink');
    const m = /^\/tenants\/([^/]+)\/datasets\/([^/]+)\/(batches|stats|digest|runs\/([^/]+)\/complete)$/.exec(url.pathname);
    const route = m ? (m[3]!.startsWith('runs/') ? 'complete' : m[3]!) : null;
    const method = route === 'stats' || route === 'digest' ? 'GET' : 'POST';
    if (!m || route === 'digest' || req.method !== method) throw new Refused(404, 'not_found', `no ${req.method} ${url.pathname} here`);
    const [tenant, dataset, runId] = [m[1]!, m[2]!, m[4]].map((p) => (p === undefined ? undefined : decodeURIComponent(p)));
    for (const id of [tenant, dataset, runId]) if (id !== undefined && !ID.test(id)) throw bad(`path id ${JSON.stringify(id)} must match ${ID.source}`);
    const expected = options.tokens[tenant!];
    const auth = req.headers.authorization;
    const presented = typeof auth === 'string' && /^Bearer /i.test(auth) ? auth.slice(7).trim() : (req.headers['x-api-key'] as string | undefined);
    if (expected === undefined || presented === undefined || !sameSecret(presented, expected)) throw new Refused(401, 'unauthorized', `missing or wrong credentials for tenant ${tenant}`);
    const scope = `${tenant}\u0000${dataset}`;
    if (route === 'stats') return send(res, 200, statsOf(scope));

    const type = String(req.headers['content-type'] ?? '');
    const [media, ...params] = type.split(';').map((p) => p.trim().toLowerCase());
    const charset = params.find((p) => p.startsWith('charset='))?.slice(8).replace(/"/g, '');
    if (media !== 'application/json' || (charset !== undefined && charset !== 'utf-8' && charset !== 'utf8')) {
      throw new Refused(415, 'unsupported_media_type', `Content-Type must be application/json (UTF-8); got ${JSON.stringify(type || null)}`);
    }
    const bytes = await readBody(req);
    const body = parseJson(bytes);
    const key = req.headers['idempotency-key'] as string | undefined;
    const s = statsOf(scope);

    if (route === 'batches') {
      const batch = checkBatch(body, key);
      const sha = createHash('sha256').update(bytes).digest('hex');
      const seen = ledger.get(`${scope}\u0000${key}`);
      if (seen) {
        if (seen.sha !== sha) throw new Refused(422, 'conflict', `Idempotency-Key ${key} was applied with a different body`);
        s.replaysDeduped++;
        return send(res, 200, { status: 'duplicate' });
      }
      ledger.set(`${scope}\u0000${key}`, { sha });
      const runKey = `${scope}\u0000${batch.runId}`;
      let counts = runs.get(runKey);
      if (!counts) runs.set(runKey, (counts = { batches: new Set(), upserts: 0, deletes: 0 }));
      counts.batches.add(batch.batch);
      counts.upserts += batch.upserts;
      counts.deletes += batch.deletes;
      s.batchesApplied++;
      s.upserts += batch.upserts;
      s.deletes += batch.deletes;
      return send(res, 201, { status: 'applied', upserts: batch.upserts, deletes: batch.deletes });
    }

    const done = checkComplete(body, runId!, key);
    const runKey = `${scope}\u0000${runId}`;
    const prior = completions.get(runKey);
    if (prior) return send(res, 200, { status: 'duplicate', problems: prior });
    const counts = runs.get(runKey) ?? { batches: new Set<number>(), upserts: 0, deletes: 0 };
    const problems: string[] = [];
    if (counts.batches.size !== done.batches) problems.push(`batches: agent sent ${done.batches}, receiver holds ${counts.batches.size}`);
    if (counts.upserts !== done.upserts) problems.push(`upserts: agent sent ${done.upserts}, receiver applied ${counts.upserts}`);
    if (counts.deletes !== done.deletes) problems.push(`deletes: agent sent ${done.deletes}, receiver applied ${counts.deletes}`);
    completions.set(runKey, problems);
    runs.delete(runKey);
    s.runsCompleted++;
    if (problems.length) s.mismatches++;
    const full = done.mode === 'initial' || done.mode === 'resync';
    return send(res, 200, { status: problems.length ? 'mismatch' : 'reconciled', problems, ...(full ? { removed: 0 } : {}) });
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      if (res.headersSent) return void res.destroy();
      if (error instanceof Refused) return send(res, error.status, { error: error.code, message: error.message });
      send(res, 500, { error: 'internal', message: String((error as Error)?.message ?? error) });
    });
  });
  server.keepAliveTimeout = 60_000;
  server.listen(options.port, options.host, () => {
    const address = server.address();
    const port = typeof address === 'object' && address ? address.port : options.port;
    console.log(`listening on http://${options.host}:${port}`);
  });
  return server;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const value = (name: string) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const tokens: Record<string, string> = {};
  args.forEach((a, i) => {
    if (a !== '--token') return;
    const [tenant, ...rest] = (args[i + 1] ?? '').split('=');
    if (!tenant || rest.length === 0) throw new Error('--token tenant=TOKEN');
    tokens[tenant] = rest.join('=');
  });
  startSink({ port: Number(value('--port') ?? 0), host: value('--host') ?? '127.0.0.1', tokens });
  const stop = () => process.exit(0);
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
