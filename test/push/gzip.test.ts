/**
 * The push client's gzip (src/push/client.ts): bodies above push.gzipAboveBytes travel gzipped, written by zlib into
 * output chunks of half the body. Whether a body shrinks to one chunk (JSON) or needs several (bytes that do not
 * compress), a real HTTP server on 127.0.0.1 that gunzips what it got reads exactly the bytes that were posted.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPushClient } from '../../src/push/client.ts';
import { tenantConfig } from './support.ts';

describe('push client gzip', () => {
  const received: Array<{ encoding: string | undefined; body: Buffer }> = [];
  let server: http.Server;
  let url: string;
  beforeAll(async () => {
    server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const raw = Buffer.concat(chunks);
        const encoding = req.headers['content-encoding'];
        received.push({ encoding, body: encoding === 'gzip' ? gunzipSync(raw) : raw });
        res.writeHead(201, { 'Content-Type': 'application/json' }).end('{"status":"applied","upserts":0,"deletes":0}');
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('a body that compresses, one that does not, and one below the threshold arrive byte for byte', async () => {
    const client = createPushClient(tenantConfig('acme', url, { gzipAboveBytes: 1024 }), { retries: 0 });
    const json = Buffer.from(JSON.stringify({ changes: Array.from({ length: 20_000 }, (_, i) => ({ op: 'upsert', row: { id: i, name: `name ${i}` } })) }));
    // Random bytes as base64 shrink to ≈ 75 % at best, more than the half that one output chunk holds.
    const incompressible = Buffer.from(JSON.stringify({ blob: randomBytes(1_500_000).toString('base64') }));
    const small = Buffer.from('{"changes":[]}');
    try {
      for (const [i, body] of [json, incompressible, small].entries()) await client.postBatch('orders', `run-1.${i + 1}`, body);
    } finally {
      client.close();
    }
    expect(received.map((r) => r.encoding)).toEqual(['gzip', 'gzip', undefined]);
    expect(received[0]!.body.equals(json)).toBe(true);
    expect(received[1]!.body.equals(incompressible)).toBe(true);
    expect(received[2]!.body.equals(small)).toBe(true);
  });
});
