/**
 * Local HTTPS servers for the Azure SDKs under test: a self-signed certificate for 127.0.0.1 made with
 * openssl and added to this process's trusted CAs, and a tiny request router. Both the Key Vault and the
 * Application Insights tests talk to these with the real SDKs.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { gunzipSync } from 'node:zlib';

export interface Certificate {
  key: string;
  cert: string;
}

let trusted: Certificate | undefined;

/** A certificate for 127.0.0.1/localhost, trusted by every TLS client in this process from now on. */
export function trustedLoopbackCertificate(): Certificate {
  if (trusted) return trusted;
  const dir = mkdtempSync(path.join(tmpdir(), 'cdc-tls-'));
  try {
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2',
      '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem'),
      '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
    ], { stdio: 'ignore' });
    trusted = { key: readFileSync(path.join(dir, 'key.pem'), 'utf8'), cert: readFileSync(path.join(dir, 'cert.pem'), 'utf8') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  // Node 24: the process-wide default CA list (what NODE_EXTRA_CA_CERTS would do at start-up).
  tls.setDefaultCACertificates([...tls.getCACertificates('default'), trusted.cert]);
  return trusted;
}

export interface StubRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: IncomingMessage['headers'];
  body: string;
}

export type StubHandler = (req: StubRequest) => { status: number; headers?: Record<string, string>; body?: unknown } | undefined;

export interface HttpsStub {
  url: string;
  requests: StubRequest[];
  close(): Promise<void>;
}

export async function startHttpsStub(handler: StubHandler): Promise<HttpsStub> {
  const cert = trustedLoopbackCertificate();
  const requests: StubRequest[] = [];
  const server = createServer({ key: cert.key, cert: cert.cert }, (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let raw = Buffer.concat(chunks);
      if (req.headers['content-encoding'] === 'gzip') raw = gunzipSync(raw);
      const url = new URL(req.url ?? '/', 'https://127.0.0.1');
      const request: StubRequest = { method: req.method ?? 'GET', path: url.pathname, query: url.searchParams, headers: req.headers, body: raw.toString('utf8') };
      requests.push(request);
      const answer = handler(request) ?? { status: 404, body: { error: 'not found' } };
      res.writeHead(answer.status, { 'content-type': 'application/json', ...answer.headers });
      res.end(answer.body === undefined ? '' : JSON.stringify(answer.body));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `https://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Application Insights ingestion (`/v2.1/track`): accepts every envelope and keeps it. */
export async function startIngestionStub(): Promise<HttpsStub & { envelopes: Array<Record<string, unknown>> }> {
  const envelopes: Array<Record<string, unknown>> = [];
  const stub = await startHttpsStub((req) => {
    if (req.method !== 'POST' || !req.path.endsWith('/track')) return undefined;
    const items = JSON.parse(req.body) as Array<Record<string, unknown>>;
    envelopes.push(...items);
    return { status: 200, body: { itemsReceived: items.length, itemsAccepted: items.length, errors: [] } };
  });
  return { ...stub, envelopes };
}
