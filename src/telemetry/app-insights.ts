/**
 * Application Insights (`applicationinsights` 3.x, built on OpenTelemetry and the Azure Monitor exporter).
 * The client runs on its own providers (`useGlobalProviders: false`): nothing is monkey-patched, and the
 * agent reports exactly what docs/design.md §7 lists: custom metrics, custom events, and dependencies for the SQL
 * and HTTP calls of each run. Cloud role name and instance come from the OpenTelemetry resource
 * (`service.name`, `service.instance.id`), which the exporter maps to `ai.cloud.role`/`ai.cloud.roleInstance`.
 */
import { resourceFromAttributes } from '@opentelemetry/resources';
import { TelemetryClient } from 'applicationinsights';
import type { DependencyRecord, EventName, Labels, MetricDef, TelemetrySink } from './metrics.ts';

export interface AppInsightsOptions {
  connectionString: string;
  roleName: string;
  roleInstance: string;
  /** Keep unsent telemetry on disk across restarts (default true; tests turn it off). */
  offlineStorage?: boolean;
}

export class AppInsightsSink implements TelemetrySink {
  private readonly client: TelemetryClient;

  constructor(options: AppInsightsOptions) {
    this.client = new TelemetryClient(options.connectionString, { useGlobalProviders: false });
    this.client.config.azureMonitorOpenTelemetryOptions = {
      ...this.client.config.azureMonitorOpenTelemetryOptions,
      azureMonitorExporterOptions: { connectionString: options.connectionString, disableOfflineStorage: options.offlineStorage === false },
      resource: resourceFromAttributes({ 'service.name': options.roleName, 'service.instance.id': options.roleInstance }),
      enableLiveMetrics: false,
      enableStandardMetrics: false,
      enablePerformanceCounters: false,
    };
    this.client.initialize();
  }

  metric(def: MetricDef, value: number, labels: Labels): void {
    // Counters are sent as the increment; Application Insights sums them per interval.
    this.client.trackMetric({ name: def.name, value, properties: { ...labels, unit: def.unit } });
  }

  event(name: EventName, properties: Labels, measurements: Record<string, number>): void {
    this.client.trackEvent({ name, properties, measurements });
  }

  dependency(record: DependencyRecord): void {
    this.client.trackDependency({
      dependencyTypeName: record.type,
      name: record.name,
      data: record.data ?? record.name,
      target: record.target,
      duration: record.durationMs,
      success: record.success,
      resultCode: record.resultCode ?? (record.success ? '0' : '1'),
      properties: { ...record.properties, ...(record.type === 'HTTP' ? { 'http.method': 'POST' } : {}) },
    });
  }

  flush(): Promise<void> {
    return this.client.flush();
  }

  close(): Promise<void> {
    return this.client.shutdown();
  }
}
