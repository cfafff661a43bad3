/**
 * Application Insights with the real SDK against a local HTTPS ingestion endpoint: after a flush, the
 * agent's metrics, events and dependencies arrive with the cloud role name and instance, and no secret.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppInsightsSink } from '../../src/telemetry/app-insights.ts';
import { Telemetry } from '../../src/telemetry/metrics.ts';
import { startIngestionStub } from './https-stub.ts';

process.env.APPLICATIONINSIGHTS_STATSBEAT_DISABLED = 'true';

type Envelope = { name: string; tags?: Record<string, string>; data?: { baseType?: string; baseData?: Record<string, unknown> } };

describe('Application Insights', () => {
  let ingestion: Awaited<ReturnType<typeof startIngestionStub>>;
  beforeAll(async () => {
    ingestion = await startIngestionStub();
  });
  afterAll(() => ingestion?.close());

  it('sends the metrics, events and dependencies of a run, with the cloud role, redacted', async () => {
    const secret = 'sekrit-push-token-4711';
    const sink = new AppInsightsSink({
      connectionString: `InstrumentationKey=00000000-0000-0000-0000-000000000001;IngestionEndpoint=${ingestion.url}/`,
      roleName: 'cdc-sync-agent-test',
      roleInstance: 'replica-7',
      offlineStorage: false,
    });
    const telemetry = new Telemetry([sink], { secrets: () => [secret] });
    const l = { tenant: 'acme', source: 'orders' };
    telemetry.snapshotTaken(l, 1234);
    telemetry.diffComputed(l, 10, 3);
    telemetry.pushed(l, 2, 850);
    telemetry.schemaChanged(l, [{ column: 'note', change: 'added' }]);
    telemetry.runUnreconciled(l, { runId: 'r-1', mode: 'incremental', problems: ['rows: source has 10, receiver holds 7'], action: 'resync' });
    telemetry.tenantsNotServed(['beta']);
    telemetry.jobFailed({ ...l, kind: 'incremental' }, 900, Object.assign(new Error(`receiver refused token ${secret}`), { status: 403 }), 'dead');
    telemetry.sampled({ queue: { depth: { queued: 4, running: 1, dead: 1 }, oldestQueuedSeconds: 42 }, sources: [{ ...l, lagSeconds: 120, dead: 1 }] });
    telemetry.dependency({ type: 'HTTP', name: 'push acme/orders', target: '127.0.0.1:9', data: 'https://127.0.0.1:9/v1/tenants/acme/datasets/orders', durationMs: 850, success: true, resultCode: '200' });
    telemetry.dependency({ type: 'SQL', name: 'snapshot acme/orders', target: 'sql01 | Sales', durationMs: 120, success: true });
    await telemetry.flush();
    await telemetry.close();

    const envelopes = ingestion.envelopes as Envelope[];
    const metricNames = new Set(
      envelopes.filter((e) => e.data?.baseType === 'MetricData').flatMap((e) => ((e.data?.baseData?.metrics ?? []) as Array<{ name: string }>).map((m) => m.name)),
    );
    for (const name of ['cdc_rows_snapshotted_total', 'cdc_changes_total', 'cdc_batches_pushed_total', 'cdc_push_duration_seconds', 'cdc_job_duration_seconds', 'cdc_job_failures_total', 'cdc_dead_letters_total', 'cdc_push_rejections_total', 'cdc_queue_depth', 'cdc_source_lag_seconds', 'cdc_runs_unreconciled_total', 'cdc_tenant_not_served']) {
      expect(metricNames, name).toContain(name);
    }
    const events = envelopes.filter((e) => e.data?.baseType === 'EventData').map((e) => e.data!.baseData!);
    expect(events.map((e) => e.name)).toEqual(expect.arrayContaining(['schema_changed', 'job_dead_lettered', 'run_unreconciled']));
    expect(events.find((e) => e.name === 'run_unreconciled')!.properties).toMatchObject({
      tenant: 'acme',
      source: 'orders',
      runId: 'r-1',
      mode: 'incremental',
      action: 'resync',
      problems: JSON.stringify(['rows: source has 10, receiver holds 7']),
    });
    const dead = events.find((e) => e.name === 'job_dead_lettered')!;
    expect(dead.properties).toMatchObject({ tenant: 'acme', source: 'orders', status: '403', error: 'receiver refused token ***' });
    const deps = envelopes.filter((e) => e.data?.baseType === 'RemoteDependencyData').map((e) => e.data!.baseData!);
    expect(deps.find((d) => d.name === 'snapshot acme/orders')).toMatchObject({ type: 'SQL', target: 'sql01 | Sales', success: true });
    expect(deps.find((d) => d.type === 'Http'), JSON.stringify(deps)).toMatchObject({ type: 'Http', target: '127.0.0.1:9', success: true, resultCode: '200' });
    for (const e of envelopes) {
      expect(e.tags?.['ai.cloud.role']).toBe('cdc-sync-agent-test');
      expect(e.tags?.['ai.cloud.roleInstance']).toBe('replica-7');
    }
    expect(JSON.stringify(envelopes)).not.toContain(secret);
  });
});
