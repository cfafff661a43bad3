/**
 * The Data Push API client for one tenant (docs/design.md §6): axios over keep-alive agents, at most
 * `push.maxInFlight` requests in flight (p-queue), each attempt bounded by `push.timeout`, bodies gzipped
 * above `push.gzipAboveBytes`, retried with p-retry by class: 429/503 wait for `Retry-After`; 408, 409,
 * 5xx, resets and timeouts back off exponentially; 413 and other 4xx are returned to the caller at once.
 */
import http from 'node:http';
import https from 'node:https';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import axios, { type AxiosInstance, type AxiosResponse } from 'axios';
import PQueue from 'p-queue';
import pRetry from 'p-retry';
import type { TenantConfig } from '../config/schema.ts';
import { CdcError, type ErrorContext } from '../errors/errors.ts';
import { classifyError, classifyHttpStatus } from '../errors/classify.ts';
import { batchesPath, completePath, type BatchAccepted, type CompleteBody, type RunCompleted } from '../contract/wire.ts';
import { digestPath, type DatasetDigest, type KeyHash } from '../contract/digest.ts';
import { PayloadTooLargeError, PushRejectedError, PushUnavailableError, ReceiverCannotVerifyError, parseRetryAfter } from './errors.ts';

const gzipAsync = promisify(gzip);
const GZIP_MIN_CHUNK = 16 * 1024;

export interface RetryOptions {
  /** Retries after the first attempt, for retryable failures. */
  retries: number;
  /** First backoff; doubles per retry, with jitter, up to maxBackoffMs. */
  minBackoffMs: number;
  maxBackoffMs: number;
  /** Longest `Retry-After` honoured; longer ones are cut to this. */
  maxRetryAfterMs: number;
}

/** How long a receiver may take to answer a digest request (it reads the whole dataset). */
export const DIGEST_TIMEOUT_MS = 30 * 60_000;

export const DEFAULT_RETRY: RetryOptions = { retries: 8, minBackoffMs: 500, maxBackoffMs: 30_000, maxRetryAfterMs: 300_000 };

export interface Sent<T> {
  body: T;
  status: number;
  /** Attempts it took, 1 when the first one was accepted. */
  attempts: number;
}

export interface PushClient {
  readonly tenant: string;
  readonly baseUrl: string;
  /** POST a batch body (already framed JSON, as text or UTF-8 bytes) under its idempotency key. */
  postBatch(dataset: string, idempotencyKey: string, body: string | Buffer, options?: { signal?: AbortSignal; context?: ErrorContext }): Promise<Sent<BatchAccepted>>;
  postComplete(dataset: string, body: CompleteBody, options?: { signal?: AbortSignal; context?: ErrorContext }): Promise<Sent<RunCompleted>>;
  /**
   * The dataset's digest (optional endpoint; `bucket` adds that bucket's keys). ReceiverCannotVerifyError when the
   * receiver does not have the endpoint; other failures are retried like a push, then thrown.
   */
  getDigest(dataset: string, query: { buckets: number; bucket?: number }): Promise<DatasetDigest & { bucket?: number; keys?: KeyHash[] }>;
  close(): void;
}

/** The receiver's own words from an error response: `message`, else `error`, else the text. */
function receiverMessage(response: AxiosResponse<string>): string {
  const text = typeof response.data === 'string' ? response.data : String(response.data ?? '');
  try {
    const parsed = JSON.parse(text) as { message?: unknown; error?: unknown };
    const message = typeof parsed.message === 'string' ? parsed.message : typeof parsed.error === 'string' ? parsed.error : undefined;
    if (message !== undefined) return message.slice(0, 2_000);
  } catch {
    // not JSON: use the text
  }
  return text.slice(0, 2_000) || `HTTP ${response.status}`;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason as Error);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason as Error);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** A failed attempt that will be retried: told to the caller at once, so that a stuck push is visible in seconds. */
export interface FailedAttempt {
  what: string;
  /** 1 for the first attempt. */
  attempt: number;
  retriesLeft: number;
  error: Error;
}

export function createPushClient(tenant: TenantConfig, retry: Partial<RetryOptions> = {}, hooks: { onFailedAttempt?: (failed: FailedAttempt) => void } = {}): PushClient {
  const policy = { ...DEFAULT_RETRY, ...retry };
  const push = tenant.push;
  const baseUrl = push.url.replace(/\/+$/, '');
  const agentOptions = { keepAlive: true, maxSockets: push.maxInFlight, maxFreeSockets: push.maxInFlight };
  const httpAgent = new http.Agent(agentOptions);
  const httpsAgent = new https.Agent(agentOptions);
  const auth: Record<string, string> =
    push.token !== undefined ? { Authorization: `Bearer ${push.token}` } : push.apiKey !== undefined ? { [push.apiKeyHeader]: push.apiKey } : {};
  const api: AxiosInstance = axios.create({
    baseURL: baseUrl,
    httpAgent,
    httpsAgent,
    timeout: push.timeout,
    maxBodyLength: Infinity,
    maxContentLength: 16 * 1024 * 1024,
    maxRedirects: 0,
    responseType: 'text',
    transformResponse: [(data: unknown) => data],
    validateStatus: () => true,
    headers: { 'User-Agent': 'cdc-sync-agent', Accept: 'application/json', ...auth },
  });
  const queue = new PQueue({ concurrency: push.maxInFlight });

  async function post<T>(path: string, idempotencyKey: string, json: string | Buffer, what: string, options: { signal?: AbortSignal; context?: ErrorContext }): Promise<Sent<T>> {
    const raw = typeof json === 'string' ? Buffer.from(json, 'utf8') : json;
    const gzipped = raw.length > push.gzipAboveBytes;
    // One output chunk of half the body (JSON shrinks 3-4 x at level 1) instead of zlib's 16 KiB: each chunk is a
    // hop back from the thread pool and a Buffer to concatenate (zlib's processCallback was 0.56 s of the agent's
    // 5.1 s busy main thread in a 1M-row onboarding).
    const body = gzipped ? await gzipAsync(raw, { level: push.gzipLevel, chunkSize: Math.max(GZIP_MIN_CHUNK, Math.ceil(raw.length / 2)) }) : raw;
    const headers: Record<string, string> = { 'Content-Type': 'application/json', 'Idempotency-Key': idempotencyKey };
    if (gzipped) headers['Content-Encoding'] = 'gzip';
    const context = { tenant: tenant.id, ...options.context };
    let attempts = 0;

    const attempt = async (): Promise<Sent<T>> => {
      attempts++;
      let response: AxiosResponse<string>;
      try {
        response = await queue.add(() => api.post<string>(path, body, { headers, ...(options.signal ? { signal: options.signal } : {}) }));
      } catch (error) {
        if (options.signal?.aborted) throw options.signal.reason ?? error;
        const { retryable, reason } = classifyError(error);
        const detail = error instanceof Error ? error.message : String(error);
        // No answer at all: say it once, with where the agent tried and what to check.
        const where = `The receiver of tenant "${tenant.id}" at push.url ${baseUrl} did not answer: check that URL, that the receiver runs, and the network path to it (DNS, proxy, firewall).`;
        if (!retryable) throw new PushRejectedError(`${what} failed: ${reason} (${detail}). ${where}`, { status: 0, receiverMessage: detail, context });
        throw new PushUnavailableError(`${what} failed: ${reason} (${detail}). ${where}`, { context });
      }
      const status = response.status;
      if (status >= 200 && status < 300) {
        let parsed: T;
        try {
          parsed = (response.data ? JSON.parse(response.data) : {}) as T;
        } catch {
          // A 2xx that is not the API's JSON (a proxy or login page, a wrong push.url) is no acknowledgement:
          // counting it as one would advance staging past what the receiver holds.
          const type = String(response.headers['content-type'] ?? 'no content type');
          const start = JSON.stringify(String(response.data).replace(/\s+/g, ' ').slice(0, 80));
          throw new PushRejectedError(
            `${what}: the receiver answered HTTP ${status} (${type}) with a body that is not JSON, starting ${start}. ` +
              `This is not the Data Push API's answer; check push.url of tenant "${tenant.id}" (${baseUrl}): it must reach the API directly, not a proxy or login page. ` +
              'Nothing was recorded as delivered.',
            { status, receiverMessage: String(response.data).slice(0, 2_000), context },
          );
        }
        return { body: parsed, status, attempts };
      }
      const message = receiverMessage(response);
      if (status === 413) {
        throw new PayloadTooLargeError(`${what}: the receiver refused ${body.length} bytes as too large (413): ${message}`, { bytes: body.length, context });
      }
      const { retryable, reason } = classifyHttpStatus(status);
      if (!retryable) {
        const hint =
          status === 401 || status === 403
            ? ` The receiver refused the credentials of tenant "${tenant.id}": put the current token (push.token) or API key (push.apiKey) in the secret the configuration names, then \`cdc-agent jobs retry-dead --tenant ${tenant.id}\`.`
            : '';
        throw new PushRejectedError(`${what} was rejected by the receiver with HTTP ${status}: ${message}.${hint}`, { status, receiverMessage: message, context });
      }
      const retryAfter = status === 429 || status === 503 ? parseRetryAfter(response.headers['retry-after'] as string | undefined) : undefined;
      throw new PushUnavailableError(`${what} failed (${reason}, HTTP ${status}): ${message}`, {
        status,
        ...(retryAfter !== undefined ? { retryAfterMs: Math.min(retryAfter, policy.maxRetryAfterMs) } : {}),
        context,
      });
    };

    return pRetry(attempt, {
      retries: policy.retries,
      minTimeout: policy.minBackoffMs,
      maxTimeout: policy.maxBackoffMs,
      factor: 2,
      randomize: true,
      ...(options.signal ? { signal: options.signal } : {}),
      shouldRetry: ({ error }) => error instanceof CdcError && error.retryable && !options.signal?.aborted,
      onFailedAttempt: async ({ error, attemptNumber, retriesLeft }) => {
        if (retriesLeft > 0 && error instanceof CdcError && error.retryable) hooks.onFailedAttempt?.({ what, attempt: attemptNumber, retriesLeft, error });
        // The receiver said when: wait that long before the (short) backoff.
        if (error instanceof PushUnavailableError && error.retryAfterMs !== undefined) await sleep(error.retryAfterMs, options.signal);
      },
    });
  }

  return {
    tenant: tenant.id,
    baseUrl,
    postBatch(dataset, idempotencyKey, body, options = {}) {
      return post<BatchAccepted>(batchesPath(tenant.id, dataset), idempotencyKey, body, `Pushing ${idempotencyKey} to ${tenant.id}/${dataset}`, options);
    },
    postComplete(dataset, body, options = {}) {
      return post<RunCompleted>(
        completePath(tenant.id, dataset, body.runId),
        `${body.runId}.complete`,
        JSON.stringify(body),
        `Completing run ${body.runId} of ${tenant.id}/${dataset}`,
        options,
      );
    },
    async getDigest(dataset, query) {
      const path = `${digestPath(tenant.id, dataset)}?buckets=${query.buckets}${query.bucket !== undefined ? `&bucket=${query.bucket}` : ''}`;
      const what = `Reading the digest of ${tenant.id}/${dataset}`;
      const context = { tenant: tenant.id, source: dataset };
      const attempt = async () => {
        let response: AxiosResponse<string>;
        try {
          // A receiver reads its whole dataset to answer (149 s for 10M rows in bench/verify.ts): push.timeout,
          // sized for one batch, would cut it off. The digest gets DIGEST_TIMEOUT_MS unless push.timeout is longer.
          response = await api.get<string>(path, { maxContentLength: 512 * 1024 * 1024, timeout: Math.max(push.timeout, DIGEST_TIMEOUT_MS) });
        } catch (error) {
          throw new PushUnavailableError(`${what} failed: ${error instanceof Error ? error.message : String(error)}`, { cause: error, context });
        }
        const status = response.status;
        if (status === 404 || status === 405 || status === 501) {
          throw new ReceiverCannotVerifyError(
            `the receiver of tenant "${tenant.id}" (${baseUrl}) cannot verify: it answered HTTP ${status} to GET ${digestPath(tenant.id, dataset)}, the optional digest endpoint of the Data Push API`,
            { status, context },
          );
        }
        if (status >= 200 && status < 300) {
          try {
            return JSON.parse(response.data) as DatasetDigest & { bucket?: number; keys?: KeyHash[] };
          } catch {
            throw new PushRejectedError(`${what}: HTTP ${status} with a body that is not JSON; check push.url of tenant "${tenant.id}" (${baseUrl})`, { status, receiverMessage: String(response.data).slice(0, 500), context });
          }
        }
        const message = receiverMessage(response);
        if (!classifyHttpStatus(status).retryable) throw new PushRejectedError(`${what} was refused with HTTP ${status}: ${message}`, { status, receiverMessage: message, context });
        throw new PushUnavailableError(`${what} failed with HTTP ${status}: ${message}`, { status, context });
      };
      return pRetry(attempt, { retries: 3, minTimeout: policy.minBackoffMs, factor: 2, shouldRetry: ({ error }) => error instanceof CdcError && error.retryable });
    },
    close() {
      queue.clear();
      httpAgent.destroy();
      httpsAgent.destroy();
    },
  };
}
