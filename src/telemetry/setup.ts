/** Builds the agent's `Telemetry` from the compiled config: Prometheus always, Application Insights when configured. */
import { hostname } from 'node:os';
import type { CompiledConfig } from '../config/load.ts';
import { Telemetry, type TelemetrySink } from './metrics.ts';
import { PrometheusSink } from './prometheus.ts';

export interface TelemetrySetup {
  /** Secret values to redact from every property that leaves. */
  secrets: () => Iterable<string>;
  /** Cloud role instance (default: the host name, the pod name in Kubernetes). */
  roleInstance?: string;
}

/** Application Insights (and OpenTelemetry under it) is loaded only when configured: it costs tens of MB of memory. */
export async function createTelemetry(config: CompiledConfig, setup: TelemetrySetup): Promise<Telemetry> {
  const roleInstance = setup.roleInstance ?? hostname();
  const sinks: TelemetrySink[] = [new PrometheusSink()];
  const connectionString = config.telemetry.appInsights;
  if (connectionString !== undefined) {
    const { AppInsightsSink } = await import('./app-insights.ts');
    sinks.push(new AppInsightsSink({ connectionString, roleName: config.telemetry.roleName, roleInstance }));
  }
  return new Telemetry(sinks, { secrets: setup.secrets });
}
