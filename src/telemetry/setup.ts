/** Builds the agent's `Telemetry` from the compiled config: Prometheus always, Application Insights when configured. */
import { hostname } from 'node:os';
import type { CompiledConfig } from '../config/load.ts';
import { AppInsightsSink } from './app-insights.ts';
import { Telemetry, type TelemetrySink } from './metrics.ts';
import { PrometheusSink } from './prometheus.ts';

export interface TelemetrySetup {
  /** Secret values to redact from every property that leaves. */
  secrets: () => Iterable<string>;
  /** Cloud role instance (default: the host name, the pod name in Kubernetes). */
  roleInstance?: string;
}

export function createTelemetry(config: CompiledConfig, setup: TelemetrySetup): Telemetry {
  const roleInstance = setup.roleInstance ?? hostname();
  const sinks: TelemetrySink[] = [new PrometheusSink()];
  const connectionString = config.telemetry.appInsights;
  if (connectionString !== undefined) {
    sinks.push(new AppInsightsSink({ connectionString, roleName: config.telemetry.roleName, roleInstance }));
  }
  return new Telemetry(sinks, { secrets: setup.secrets });
}
