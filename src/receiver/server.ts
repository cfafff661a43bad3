/**
 * `cdc-agent receiver`: the reference implementation of the Data Push API (docs/data-push-api.md). It checks
 * each tenant's token, validates every request strictly (400 with the reason), dedupes by Idempotency-Key,
 * stores rows in PostgreSQL, reconciles run completions, and can inject faults for tests and demos.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { Readable, Transform } from 'node:stream';
import { createGunzip } from 'node:zlib';
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify';
import { connect } from '../dialect/connect.ts';
import { withApplicationName } from '../dialect/postgres.ts';
import type { Db } from '../dialect/types.ts';
import { idempotencyKey, type BatchBody, type CompleteBody } from '../contract/wire.ts';
import { FaultInjector, type FaultOptions } from './faults.ts';
import { scanBatch } from './scan.ts';
import { BufferPool, stageParsed, type StagedBatch } from './staged.ts';
import { ReceiverConflict, ReceiverStore } from './store.ts';
import { batchBodySchema, batchHeaderSchema, batchProblems, completeBodySchema, digestQuerySchema, pathParamsSchema } from './validate.ts';
import { DEFAULT_BUCKETS, MAX_BUCKETS } from '../contract/digest.ts';

export interface ObservedRequest {
  method: string;
  /** Path and query as received. */
  url: string;
  headers: Record<string, string | string[] | undefined>;
  /** The parsed JSON body (after gzip decoding), or undefined when there was none or it did not parse. */
  body: unknown;
}

export interface ReceiverOptions {
  port: number;
  host?: string;
  /** A PostgreSQL Db, or a postgres:// URL the receiver connects to (and closes). */
  db: Db | string;
  /** tenant id -> token; a request is accepted with `Authorization: Bearer <token>` or `X-Api-Key: <token>`. */
  tokens: Record<string, string>;
  faults?: FaultOptions;
  seed?: number;
  /** Serve the optional digest endpoint (default true); false answers it 404, like a receiver without it. */
  digest?: boolean;
  /** Sees every request that reached the API, after parsing and before any check (tests, request logs). */
  observe?: (request: ObservedRequest) => void;
}

export interface Receiver {
  url: string;
  store: ReceiverStore;
  close(): Promise<void>;
}

type Params = { tenant: string; dataset: string; runId?: string };

const DEFAULT_MAX_BODY = 64 * 1024 * 1024;
const BATCHES = '/tenants/:tenant/datasets/:dataset/batches';

function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export async function startReceiver(options: ReceiverOptions): Promise<Receiver> {
  const ownDb = typeof options.db === 'string';
  // Its own application_name, so that its sessions can be told from the agent's (pg_stat_activity, benchmarks).
  const db = typeof options.db === 'string' ? await connect({ dialect: 'postgres', url: withApplicationName(options.db, 'cdc-receiver'), poolMax: 10 }) : options.db;
  const store = new ReceiverStore(db);
  await store.init();
  /** Decoded request bytes, kept for the handler (the body hash). */
  const rawBodies = new WeakMap<FastifyRequest, Buffer>();
  /** Batches the fast path (scan.ts) staged straight from their bytes; their request.body is the header alone. */
  const scannedBatches = new WeakMap<FastifyRequest, StagedBatch>();
  /** The fast path's staging buffers, reused from batch to batch. */
  const stagingBuffers = new BufferPool();
  const faults = new FaultInjector(options.faults ?? {}, options.seed ?? 1);
  const app = Fastify({
    logger: false,
    bodyLimit: options.faults?.maxBodyBytes ?? DEFAULT_MAX_BODY,
    ajv: { customOptions: { allowUnionTypes: true, allErrors: false, coerceTypes: false, removeAdditional: false, useDefaults: false } },
  });

  // Bodies may come gzipped; the body limit counts decoded bytes (a small gzip can hide a large body).
  app.addHook('preParsing', async (request, _reply, payload) => {
    const encoding = String(request.headers['content-encoding'] ?? 'identity').toLowerCase();
    if (encoding === 'identity') return payload;
    if (encoding !== 'gzip') {
      const error = new Error(`Content-Encoding ${encoding} is not supported; send identity or gzip`) as Error & { statusCode: number };
      error.statusCode = 415;
      throw error;
    }
    let encoded = 0;
    const counter = new Transform({
      transform(chunk: Buffer, _enc, callback) {
        encoded += chunk.length;
        callback(null, chunk);
      },
    });
    // Large output chunks: a batch body decodes in a few dozen callbacks instead of one per 16 KiB.
    const gunzip = createGunzip({ chunkSize: 128 * 1024 });
    const decoded = payload.pipe(counter).pipe(gunzip) as unknown as typeof payload & { receivedEncodedLength: number };
    Object.defineProperty(decoded, 'receivedEncodedLength', { get: () => encoded });
    payload.on('error', (e) => gunzip.destroy(e));
    return decoded;
  });

  // Parse JSON ourselves from the decoded bytes so the body's sha256 (the dedupe ledger's same-body check) is
  // taken of those bytes once, instead of re-serialising the parsed body. Prototype-poisoning protection as
  // fastify's own parser.
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, raw, done) => {
    const bytes = raw as Buffer;
    rawBodies.set(request, bytes);
    // A batch in the agent's compact framing is validated and staged from its bytes (scan.ts); anything else,
    // or anything the scan is not sure of, is parsed and judged in full below.
    if (request.method === 'POST' && request.routeOptions.url === BATCHES) {
      const scanned = scanBatch(bytes, request.compileValidationSchema(batchHeaderSchema, 'body'), stagingBuffers);
      if (scanned) {
        scannedBatches.set(request, scanned);
        done(null, scanned.header);
        return;
      }
    }
    const text = bytes.toString('utf8');
    // The secure parser scans the whole text with two regular expressions; a body that cannot spell either
    // name (not even with \u escapes) needs no scan.
    if (bytes.indexOf('proto') >= 0 || bytes.indexOf('constructor') >= 0 || bytes.indexOf('\\u') >= 0 || text.length === 0) {
      parseJson(request, text, done);
      return;
    }
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      parseJson(request, text, done); // the same 400 as fastify's own parser
      return;
    }
    done(null, body);
  });

  app.addHook('preValidation', async (request: FastifyRequest, reply: FastifyReply) => {
    if (options.observe) {
      // An observer sees the whole body, also of a batch the fast path took (whose request.body is its header).
      const raw = scannedBatches.has(request) ? rawBodies.get(request) : undefined;
      options.observe({ method: request.method, url: request.url, headers: { ...request.headers }, body: raw ? JSON.parse(raw.toString('utf8')) : request.body });
    }
    // No such endpoint (the digest with --no-digest, a typo): 404, before credentials are asked for.
    if (request.is404) return undefined;
    const { tenant } = request.params as Params;
    const expected = options.tokens[tenant];
    const auth = request.headers.authorization;
    const presented = typeof auth === 'string' && /^Bearer /i.test(auth) ? auth.slice(7).trim() : (request.headers['x-api-key'] as string | undefined);
    if (expected === undefined || presented === undefined || !sameSecret(presented, expected)) {
      return reply.code(401).send({ error: 'unauthorized', message: `missing or wrong credentials for tenant ${tenant}` });
    }
    if (request.method === 'POST') {
      // Bodies are JSON in UTF-8: another media type or charset is refused, not guessed at.
      const type = String(request.headers['content-type'] ?? '');
      const [media, ...params] = type.split(';').map((p) => p.trim().toLowerCase());
      const charset = params.find((p) => p.startsWith('charset='))?.slice(8).replace(/"/g, '');
      if (media !== 'application/json' || (charset !== undefined && charset !== 'utf-8' && charset !== 'utf8')) {
        return reply.code(415).send({ error: 'unsupported_media_type', message: `Content-Type must be application/json (UTF-8); got ${JSON.stringify(type || null)}` });
      }
    }
    return undefined;
  });

  /** Fault injection; returns true when the request was answered (or its connection destroyed). */
  async function injectFault(reply: FastifyReply, apply: () => Promise<unknown>): Promise<boolean> {
    if (faults.latencyMs > 0) await sleep(faults.latencyMs);
    const fault = faults.decide();
    if (fault.kind === 'reset') {
      if (fault.afterApply) await apply().catch(() => {});
      reply.hijack();
      reply.raw.socket?.destroy();
      return true;
    }
    if (fault.kind === 'fail') {
      await reply.code(500).send({ error: 'injected_failure', message: 'fault injection: internal error' });
      return true;
    }
    if (fault.kind === 'throttle') {
      await reply.code(429).header('Retry-After', fault.retryAfter).send({ error: 'throttled', message: 'fault injection: slow down' });
      return true;
    }
    return false;
  }

  app.setErrorHandler((error: Error & { statusCode?: number; validation?: unknown }, _request, reply) => {
    // A conflict raised inside a store transaction arrives wrapped by the dialect layer.
    const conflict = error instanceof ReceiverConflict ? error : error.cause instanceof ReceiverConflict ? error.cause : undefined;
    if (conflict) return reply.code(conflict.status).send({ error: 'conflict', message: conflict.message });
    const status = error.validation ? 400 : (error.statusCode ?? 500);
    const code = status === 413 ? 'payload_too_large' : status === 415 ? 'unsupported_media_type' : status < 500 ? 'bad_request' : 'internal';
    return reply.code(status).send({ error: code, message: error.message });
  });

  app.post(
    BATCHES,
    // The body's JSON schema is checked here for the full path; a batch the fast path staged was checked by it.
    { schema: { params: pathParamsSchema, body: batchBodySchema }, attachValidation: true },
    async (request: FastifyRequest, reply: FastifyReply) => {
      const { tenant, dataset } = request.params as Params;
      const scanned = scannedBatches.get(request);
      const invalid = request.validationError as (Error & { validationContext?: string }) | undefined;
      if (invalid && !(scanned && invalid.validationContext === 'body')) throw invalid;
      const header = scanned ? scanned.header : (request.body as BatchBody);
      const key = request.headers['idempotency-key'];
      const expectedKey = idempotencyKey(header.runId, header.batch, header.part);
      if (key !== expectedKey) {
        return reply.code(400).send({ error: 'bad_request', message: `Idempotency-Key must be ${expectedKey} for this body (got ${JSON.stringify(key ?? null)})` });
      }
      let staged = scanned;
      if (!staged) {
        const body = request.body as BatchBody;
        const problems = batchProblems(body);
        if (problems.length > 0) return reply.code(400).send({ error: 'bad_request', message: problems.join('; '), problems });
        staged = stageParsed(body);
      }
      const raw = rawBodies.get(request);
      const sha = createHash('sha256')
        .update(raw ?? JSON.stringify(request.body))
        .digest('hex');
      const batch = staged;
      const apply = () => store.applyBatch(tenant, dataset, expectedKey, batch, sha);
      if (await injectFault(reply, apply)) return reply;
      if (faults.rejects(header.batch)) {
        return reply.code(422).send({ error: 'rejected', message: `batch ${header.batch} rejected: the receiver refuses this data (fault injection)` });
      }
      const result = await apply();
      // The COPY has read the staged lines (or a duplicate never needed them): their buffer may serve the next batch.
      // After a failure it is left to the garbage collector, since a broken connection may still hold a write of it.
      batch.release?.();
      return reply.code(result.status === 'applied' ? 201 : 200).send(result);
    },
  );

  app.post(
    '/tenants/:tenant/datasets/:dataset/runs/:runId/complete',
    { schema: { params: pathParamsSchema, body: completeBodySchema } },
    async (request: FastifyRequest, reply: FastifyReply) => {
      const { tenant, dataset, runId } = request.params as Params;
      const body = request.body as CompleteBody;
      if (body.runId !== runId) return reply.code(400).send({ error: 'bad_request', message: `body runId ${body.runId} differs from the path's ${runId}` });
      const key = request.headers['idempotency-key'];
      if (key !== `${runId}.complete`) return reply.code(400).send({ error: 'bad_request', message: `Idempotency-Key must be ${runId}.complete` });
      const apply = () => store.completeRun(tenant, dataset, body);
      if (await injectFault(reply, apply)) return reply;
      const result = await apply();
      return reply.code(200).send(result);
    },
  );

  app.get('/tenants/:tenant/datasets/:dataset/rows', { schema: { params: pathParamsSchema } }, async (request, reply) => {
    const { tenant, dataset } = request.params as Params;
    const lines = Readable.from(
      (async function* () {
        for await (const row of store.rows(tenant, dataset)) yield `${row}\n`;
      })(),
    );
    return reply.type('application/x-ndjson').send(lines);
  });

  if (options.digest !== false) app.get(
    '/tenants/:tenant/datasets/:dataset/digest',
    { schema: { params: pathParamsSchema, querystring: digestQuerySchema } },
    async (request) => {
      const { tenant, dataset } = request.params as Params;
      const query = request.query as { buckets?: string; bucket?: string };
      const buckets = query.buckets === undefined ? DEFAULT_BUCKETS : Number(query.buckets);
      const bucket = query.bucket === undefined ? undefined : Number(query.bucket);
      if (buckets > MAX_BUCKETS || (bucket !== undefined && bucket >= buckets)) {
        const error = new Error(`buckets must be at most ${MAX_BUCKETS} and bucket below buckets (${buckets}); got bucket ${query.bucket ?? 'none'}`) as Error & { statusCode: number };
        error.statusCode = 400;
        throw error;
      }
      return store.digest(tenant, dataset, buckets, bucket);
    },
  );

  app.get('/tenants/:tenant/datasets/:dataset/stats', { schema: { params: pathParamsSchema } }, async (request) => {
    const { tenant, dataset } = request.params as Params;
    return store.stats(tenant, dataset);
  });

  const host = options.host ?? '127.0.0.1';
  const address = await app.listen({ port: options.port, host });
  return {
    url: address,
    store,
    async close() {
      await app.close();
      if (ownDb) await db.close();
    },
  };
}
