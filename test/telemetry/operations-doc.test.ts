/**
 * docs/operations.md and the Grafana dashboard stay true to the code: every metric is documented with its
 * type, unit and labels, every event is documented, and every series the dashboard queries exists.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { EVENTS, METRICS, Telemetry } from '../../src/telemetry/metrics.ts';
import { PrometheusSink } from '../../src/telemetry/prometheus.ts';

const doc = readFileSync(new URL('../../docs/operations.md', import.meta.url), 'utf8');
const dashboard = JSON.parse(readFileSync(new URL('../../helm/cdc-sync-agent/dashboards/cdc-sync-agent.json', import.meta.url), 'utf8')) as {
  panels: Array<{ title: string; targets: Array<{ expr: string }> }>;
};

describe('docs/operations.md', () => {
  it('documents every metric with its type, unit and labels', () => {
    for (const def of Object.values(METRICS)) {
      const row = doc.split('\n').find((line) => line.startsWith(`| \`${def.name}\` |`));
      expect(row, `${def.name} has a row in the metrics table`).toBeDefined();
      const [, , type, unit, labels] = row!.split('|').map((c) => c.trim());
      expect(type, def.name).toContain(def.kind);
      expect(unit, def.name).toBe(def.unit);
      expect(labels === '(none)' ? [] : labels!.split(',').map((l) => l.trim()), def.name).toEqual([...def.labels]);
    }
  });

  it('documents every event and the four suggested alerts', () => {
    for (const name of Object.keys(EVENTS)) expect(doc, name).toContain(`| \`${name}\` |`);
    for (const alert of ['Dead letters', 'Lag over twice the interval', 'Push 4xx', 'Lease losses']) expect(doc).toContain(`| ${alert} |`);
  });
});

describe('Grafana dashboard', () => {
  it('queries only series the agent exposes, and shows the alerting ones', async () => {
    const sink = new PrometheusSink();
    const telemetry = new Telemetry([sink]);
    // One of each so that every series is exposed.
    const l = { tenant: 't', source: 's', kind: 'incremental' };
    telemetry.snapshotTaken(l, 1);
    telemetry.diffComputed(l, 1, 1);
    telemetry.pushed(l, 1, 10);
    telemetry.schemaChanged(l, []);
    telemetry.runUnreconciled(l, { runId: 'r', mode: 'incremental', problems: [], action: 'alert' });
    telemetry.tenantsNotServed(['t']);
    telemetry.secretRefreshed('push', l, true);
    telemetry.jobSucceeded(l, 10, {});
    telemetry.jobFailed(l, 10, Object.assign(new Error('x'), { status: 401 }), 'dead');
    telemetry.leaseLost(l, 10);
    telemetry.sampled({ queue: { depth: { queued: 1 }, oldestQueuedSeconds: 1 }, sources: [{ ...l, lagSeconds: 1, dead: 1 }] }, [{ ...l, seconds: 60 }]);
    const exposed = await sink.registry.metrics();
    const queried = new Set(dashboard.panels.flatMap((p) => p.targets.flatMap((t) => t.expr.match(/\bcdc_[a-z0-9_]+/g) ?? [])));
    for (const series of queried) expect(exposed, `dashboard series ${series}`).toMatch(new RegExp(`^${series}[{ ]`, 'm'));
    for (const alerting of ['cdc_dead_jobs', 'cdc_source_lag_seconds', 'cdc_push_rejections_total', 'cdc_lease_losses_total']) expect(queried).toContain(alerting);
  });
});
