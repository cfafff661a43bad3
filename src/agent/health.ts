/** `/healthz` (liveness) and `/readyz` (control database reachable, migrations current) for Kubernetes probes. */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface HealthChecks {
  /** Alive: the process is not wedged. */
  live(): boolean;
  /** Ready: can do work now; the reason when not. */
  ready(): Promise<{ ok: boolean; detail: Record<string, unknown> }>;
  /** Extra endpoints (e.g. /metrics) keyed by path. */
  extra?: Record<string, () => Promise<{ contentType: string; body: string }>>;
}

export async function startHealthServer(port: number, host: string, checks: HealthChecks): Promise<{ server: Server; port: number; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (path === '/healthz') return send(checks.live() ? 200 : 503, { ok: checks.live() });
    if (path === '/readyz') {
      checks.ready().then(
        (r) => send(r.ok ? 200 : 503, { ok: r.ok, ...r.detail }),
        (error: unknown) => send(503, { ok: false, error: error instanceof Error ? error.message : String(error) }),
      );
      return;
    }
    const handler = path ? checks.extra?.[path] : undefined;
    if (handler) {
      handler().then(
        (r) => {
          res.writeHead(200, { 'content-type': r.contentType });
          res.end(r.body);
        },
        () => send(500, { ok: false }),
      );
      return;
    }
    send(404, { error: 'not found' });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return {
    server,
    port: (server.address() as AddressInfo).port,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
