/**
 * Prometheus exposition of the agent's metrics (prom-client), served at `/metrics` by the daemon's health
 * server. Each sink has its own registry, so two agents in one process (tests) do not share counters.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, type Metric } from 'prom-client';
import type { DependencyRecord, EventName, Labels, MetricDef, TelemetrySink } from './metrics.ts';

export class PrometheusSink implements TelemetrySink {
  readonly registry = new Registry();
  private readonly metrics = new Map<string, Metric>();

  constructor(options: { defaultMetrics?: boolean; roleInstance?: string } = {}) {
    if (options.roleInstance !== undefined) this.registry.setDefaultLabels({ instance_id: options.roleInstance });
    // Process CPU, memory, event-loop lag and GC, prefixed so dashboards can tell them apart.
    if (options.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: 'cdc_agent_' });
  }

  private get(def: MetricDef): Metric {
    let metric = this.metrics.get(def.name);
    if (!metric) {
      const common = { name: def.name, help: `${def.help} Unit: ${def.unit}.`, labelNames: [...def.labels], registers: [this.registry] };
      metric =
        def.kind === 'counter'
          ? new Counter(common)
          : def.kind === 'gauge'
            ? new Gauge(common)
            : new Histogram({ ...common, ...(def.buckets ? { buckets: [...def.buckets] } : {}) });
      this.metrics.set(def.name, metric);
    }
    return metric;
  }

  metric(def: MetricDef, value: number, labels: Labels): void {
    const metric = this.get(def);
    if (metric instanceof Counter) metric.inc(labels, value);
    else if (metric instanceof Gauge) metric.set(labels, value);
    else if (metric instanceof Histogram) metric.observe(labels, value);
  }

  // Events are counted by their metrics (dead letters, lease losses, schema changes); dependencies are an
  // Application Insights notion.
  event(_name: EventName, _properties: Labels, _measurements: Record<string, number>): void {}
  dependency(_record: DependencyRecord): void {}

  async flush(): Promise<void> {}
  async close(): Promise<void> {}

  /** The `/metrics` handler for the health server's `extra` map. */
  endpoint(): Record<string, () => Promise<{ contentType: string; body: string }>> {
    return { '/metrics': async () => ({ contentType: this.registry.contentType, body: await this.registry.metrics() }) };
  }
}

/** A dedicated `/metrics` listener for `telemetry.prometheus.port`, when it differs from the health port. */
export async function startMetricsServer(sink: PrometheusSink, port: number, host: string): Promise<{ port: number; close(): Promise<void> }> {
  const handler = sink.endpoint()['/metrics']!;
  const server: Server = createServer((req, res) => {
    if ((req.url ?? '/').split('?')[0] !== '/metrics') {
      res.writeHead(404).end();
      return;
    }
    handler().then(
      (r) => res.writeHead(200, { 'content-type': r.contentType }).end(r.body),
      () => res.writeHead(500).end(),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return { port: (server.address() as AddressInfo).port, close: () => new Promise((resolve) => server.close(() => resolve())) };
}
