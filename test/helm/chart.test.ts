/**
 * The Helm chart, rendered by a real Helm binary (see helm-binary.ts): `helm lint --strict` and
 * `helm template` for the default values and each variant operators use, with the rendered manifests
 * checked, and the ConfigMap's configuration checked by the agent's own config compiler. The values
 * and the `helm upgrade --install` command of docs/deploy.md are rendered the same way.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { parseAllDocuments, parse as parseYaml, stringify } from 'yaml';
import { compileConfig } from '../../src/config/load.ts';
import { helmEnv, obtainHelm } from './helm-binary.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CHART = path.join(ROOT, 'helm/cdc-sync-agent');
const helm = obtainHelm();

interface Container {
  name: string;
  image: string;
  args?: string[];
  env?: Array<{ name: string; value?: string }>;
  ports?: Array<{ name: string; containerPort: number }>;
  livenessProbe?: { httpGet: { path: string; port: string | number } };
  readinessProbe?: { httpGet: { path: string; port: string | number } };
  securityContext?: Record<string, unknown> & { capabilities?: { drop?: string[] } };
  volumeMounts?: Array<{ name: string; mountPath: string; readOnly?: boolean }>;
}
interface PodSpec {
  serviceAccountName?: string;
  terminationGracePeriodSeconds?: number;
  securityContext?: Record<string, unknown>;
  containers: Container[];
  volumes?: Array<{ name: string; configMap?: { name: string }; secret?: { secretName: string }; emptyDir?: Record<string, unknown> }>;
}
interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  data?: Record<string, string>;
  // The rest of each kind is read through the accessors below.
  spec?: Record<string, unknown>;
}

type Values = Record<string, unknown>;

function run(args: string[]): { status: number; stdout: string; stderr: string } {
  const result = spawnSync(helm.path!, args, { encoding: 'utf8', env: helmEnv(path.dirname(helm.path!)), maxBuffer: 64 * 1024 * 1024 });
  return { status: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
}

const scratch = mkdtempSync(path.join(tmpdir(), 'cdc-helm-test-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
let fileNo = 0;
function valuesFile(values: Values): string {
  const file = path.join(scratch, `values-${fileNo++}.yaml`);
  writeFileSync(file, stringify(values));
  return file;
}

function lint(values: Values): { status: number; output: string } {
  const r = run(['lint', '--strict', CHART, '-f', valuesFile(values)]);
  return { status: r.status, output: r.stdout + r.stderr };
}

function template(values: Values, extra: string[] = []): Manifest[] {
  const r = run(['template', 'cdc', CHART, '--namespace', 'sync', '-f', valuesFile(values), ...extra]);
  if (r.status !== 0) throw new Error(`helm template failed: ${r.stderr}`);
  return parseManifests(r.stdout);
}

function templateError(values: Values): string {
  const r = run(['template', 'cdc', CHART, '-f', valuesFile(values)]);
  expect(r.status).not.toBe(0);
  return r.stderr;
}

function parseManifests(text: string): Manifest[] {
  return parseAllDocuments(text)
    .map((doc) => doc.toJS() as Manifest | null)
    .filter((m): m is Manifest => m !== null);
}

function only(manifests: Manifest[], kind: string, name?: string): Manifest {
  const found = manifests.filter((m) => m.kind === kind && (name === undefined || m.metadata.name === name));
  expect(found.map((m) => `${m.kind}/${m.metadata.name}`)).toHaveLength(1);
  return found[0]!;
}

function podSpec(m: Manifest): PodSpec {
  return (m.spec as { template: { spec: PodSpec } }).template.spec;
}
function podLabels(m: Manifest): Record<string, string> {
  return (m.spec as { template: { metadata: { labels: Record<string, string> } } }).template.metadata.labels;
}
function isHook(m: Manifest): boolean {
  return m.metadata.annotations?.['helm.sh/hook'] !== undefined;
}
function configOf(manifests: Manifest[], name: string): unknown {
  const text = only(manifests, 'ConfigMap', name).data?.['cdc-agent.yaml'];
  expect(text).toBeTypeOf('string');
  return parseYaml(text!);
}

interface SchemaNode {
  type?: string | string[];
  properties?: Record<string, SchemaNode>;
  additionalProperties?: boolean | SchemaNode;
}

/** Paths of the objects values.schema.json closes with additionalProperties: false. */
function closedObjects(node: SchemaNode, at: string[]): string[][] {
  const here = node.additionalProperties === false ? [at] : [];
  return [...here, ...Object.entries(node.properties ?? {}).flatMap(([key, child]) => closedObjects(child, [...at, key]))];
}

interface RenderedAlert {
  alert: string;
  expr: string;
  labels: Record<string, string>;
  annotations: { summary: string; description: string };
}

/** docs/operations.md's "Suggested alerts" table: | Alert | Rule | PromQL | Severity | What to do |. */
function documentedAlerts(): Array<{ alert: string; summary: string; expr: string; severity: string; description: string }> {
  const doc = readFileSync(path.join(ROOT, 'docs/operations.md'), 'utf8');
  const start = doc.indexOf('## Suggested alerts');
  const section = doc.slice(start, doc.indexOf('\n## ', start + 1));
  const lines = section.split('\n');
  const first = lines.findIndex((line) => line.startsWith('|'));
  const end = lines.findIndex((line, i) => i > first && !line.startsWith('|'));
  const [header, , ...rows] = lines.slice(first, end);
  expect(header).toBe('| Alert | Rule | PromQL | Severity | What to do |');
  const code = (cell: string) => /^`([^`]+)`$/.exec(cell)?.[1] ?? `not code: ${cell}`;
  return rows.map((row) => {
    const [summary, rule, expr, severity, description] = row.slice(2, -2).split(' | ');
    return { alert: code(rule!), summary: summary!, expr: code(expr!), severity: severity!, description: description! };
  });
}

/**
 * What Pod Security "restricted" (Kubernetes docs, Pod Security Standards) refuses in a pod spec: the checks the
 * kind install test's namespace enforces, so that a chart change breaks here before it breaks there.
 */
function restrictedViolations(spec: PodSpec): string[] {
  const pod = spec as PodSpec & { hostNetwork?: boolean; hostPID?: boolean; hostIPC?: boolean; initContainers?: Container[] };
  const podContext = (pod.securityContext ?? {}) as { runAsNonRoot?: boolean; runAsUser?: number; seccompProfile?: { type?: string } };
  const out: string[] = [];
  if (pod.hostNetwork || pod.hostPID || pod.hostIPC) out.push('host namespaces');
  const allowedVolumes = ['configMap', 'csi', 'downwardAPI', 'emptyDir', 'ephemeral', 'persistentVolumeClaim', 'projected', 'secret'];
  for (const v of pod.volumes ?? []) {
    const kinds = Object.keys(v).filter((k) => k !== 'name');
    if (!kinds.every((k) => allowedVolumes.includes(k))) out.push(`volume ${v.name}: ${kinds.join(',')}`);
  }
  if (podContext.runAsUser === 0) out.push('pod runAsUser 0');
  for (const c of [...(pod.initContainers ?? []), ...pod.containers]) {
    const sc = (c.securityContext ?? {}) as { allowPrivilegeEscalation?: boolean; privileged?: boolean; runAsNonRoot?: boolean; runAsUser?: number; seccompProfile?: { type?: string }; capabilities?: { drop?: string[]; add?: string[] } };
    if (sc.privileged) out.push(`${c.name}: privileged`);
    if (sc.allowPrivilegeEscalation !== false) out.push(`${c.name}: allowPrivilegeEscalation is not false`);
    if (!(sc.runAsNonRoot ?? podContext.runAsNonRoot)) out.push(`${c.name}: runAsNonRoot is not true`);
    if (sc.runAsUser === 0) out.push(`${c.name}: runAsUser 0`);
    const seccomp = sc.seccompProfile?.type ?? podContext.seccompProfile?.type;
    if (seccomp !== 'RuntimeDefault' && seccomp !== 'Localhost') out.push(`${c.name}: seccompProfile ${seccomp ?? 'unset'}`);
    if (!(sc.capabilities?.drop ?? []).includes('ALL')) out.push(`${c.name}: capabilities do not drop ALL`);
    if ((sc.capabilities?.add ?? []).some((a) => a !== 'NET_BIND_SERVICE')) out.push(`${c.name}: adds capabilities`);
    for (const p of (c.ports ?? []) as Array<{ hostPort?: number }>) if (p.hostPort) out.push(`${c.name}: hostPort`);
  }
  return out;
}

const TENANT = {
  id: 'acme',
  push: { url: 'https://push.example.com/v1', token: 'secret://acme-push-token' },
  connections: { legacy: { dialect: 'mssql', host: 'sql01.acme.local', database: 'Sales', user: 'sync_reader', password: 'secret://acme-sql-password' } },
  sources: [{ id: 'orders', connection: 'legacy', table: 'dbo.Orders', key: ['OrderID'], schedule: '*/15 * * * *' }],
};

const describeHelm = helm.path === undefined ? describe.skip : describe;
const title = helm.path === undefined ? `Helm chart (skipped: ${helm.reason})` : `Helm chart (helm ${helm.version})`;

describeHelm(title, () => {
  describe('default values', () => {
    const manifests = helm.path === undefined ? [] : template({});

    it('passes helm lint --strict', () => {
      const r = lint({});
      expect(r.output).toContain('0 chart(s) failed');
      expect(r.status).toBe(0);
    });

    it('renders the release resources, and the migration Job with its hook copies', () => {
      const release = manifests.filter((m) => !isHook(m)).map((m) => `${m.kind}/${m.metadata.name}`).sort();
      expect(release).toEqual([
        'ConfigMap/cdc-cdc-sync-agent',
        'Deployment/cdc-cdc-sync-agent',
        'PodDisruptionBudget/cdc-cdc-sync-agent',
        'Service/cdc-cdc-sync-agent',
        'ServiceAccount/cdc-cdc-sync-agent',
      ]);
      const hooks = manifests.filter(isHook);
      expect(hooks.map((m) => `${m.kind}/${m.metadata.name}`).sort()).toEqual([
        'ConfigMap/cdc-cdc-sync-agent-migrate',
        'Job/cdc-cdc-sync-agent-migrate',
        'ServiceAccount/cdc-cdc-sync-agent-migrate',
      ]);
      for (const hook of hooks) expect(hook.metadata.annotations?.['helm.sh/hook']).toBe('pre-install,pre-upgrade');
      // The Job's dependencies are created before it.
      const weight = (m: Manifest) => Number(m.metadata.annotations?.['helm.sh/hook-weight']);
      const job = only(manifests, 'Job');
      for (const hook of hooks.filter((m) => m.kind !== 'Job')) expect(weight(hook)).toBeLessThan(weight(job));
    });

    it('runs the agent with probes on /healthz and /readyz on the health port, and 2 replicas', () => {
      const deployment = only(manifests, 'Deployment');
      expect((deployment.spec as { replicas: number }).replicas).toBe(2);
      const [agent] = podSpec(deployment).containers;
      expect(agent!.args).toEqual(['run']);
      expect(agent!.image).toBe('cdc-sync-agent:0.1.0');
      expect(agent!.ports).toEqual([{ name: 'http', containerPort: 8080, protocol: 'TCP' }]);
      expect(agent!.livenessProbe!.httpGet).toEqual({ path: '/healthz', port: 'http' });
      expect(agent!.readinessProbe!.httpGet).toEqual({ path: '/readyz', port: 'http' });
      const service = only(manifests, 'Service');
      expect(service.spec?.ports).toEqual([{ name: 'http', port: 8080, targetPort: 'http', protocol: 'TCP' }]);
      expect(service.spec?.selector).toEqual((deployment.spec as { selector: { matchLabels: unknown } }).selector.matchLabels);
    });

    it('runs non-root on a read-only root filesystem with /tmp on an emptyDir', () => {
      for (const m of [only(manifests, 'Deployment'), only(manifests, 'Job')]) {
        const spec = podSpec(m);
        expect(spec.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 1000, seccompProfile: { type: 'RuntimeDefault' } });
        const [container] = spec.containers;
        expect(container!.securityContext).toMatchObject({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, runAsNonRoot: true });
        expect(container!.securityContext!.capabilities!.drop).toEqual(['ALL']);
        const tmp = container!.volumeMounts!.find((v) => v.mountPath === '/tmp');
        expect(spec.volumes!.find((v) => v.name === tmp!.name)!.emptyDir).toBeDefined();
      }
    });

    it('gives SIGTERM more time than the agent drains', () => {
      const spec = podSpec(only(manifests, 'Deployment'));
      const config = compileConfig(configOf(manifests, 'cdc-cdc-sync-agent'));
      expect(spec.terminationGracePeriodSeconds).toBeGreaterThan(config.worker.drainGraceSeconds);
      const longer = template({ config: { control: { dialect: 'postgres', url: 'secret://control-db-url' }, worker: { drainGraceSeconds: 600 } } });
      expect(podSpec(only(longer, 'Deployment')).terminationGracePeriodSeconds).toBeGreaterThan(600);
    });

    it("holds a configuration the agent's own compiler accepts, read through CDC_AGENT_CONFIG", () => {
      const config = compileConfig(configOf(manifests, 'cdc-cdc-sync-agent'));
      expect(config.control).toMatchObject({ dialect: 'postgres', url: 'secret://control-db-url' });
      expect(configOf(manifests, 'cdc-cdc-sync-agent-migrate')).toEqual(configOf(manifests, 'cdc-cdc-sync-agent'));
      const spec = podSpec(only(manifests, 'Deployment'));
      const [agent] = spec.containers;
      const configPath = agent!.env!.find((e) => e.name === 'CDC_AGENT_CONFIG')!.value!;
      const mount = agent!.volumeMounts!.find((v) => configPath.startsWith(`${v.mountPath}/`))!;
      expect(spec.volumes!.find((v) => v.name === mount.name)!.configMap!.name).toBe('cdc-cdc-sync-agent');
      expect(Object.keys(only(manifests, 'ConfigMap', 'cdc-cdc-sync-agent').data!)).toEqual([path.basename(configPath)]);
    });

    it('runs `cdc-agent migrate` in the hook Job, whose pod the Service and the PDB do not select', () => {
      const job = only(manifests, 'Job');
      const [migrate] = podSpec(job).containers;
      expect(migrate!.args).toEqual(['migrate']);
      expect((podSpec(job) as { restartPolicy?: string }).restartPolicy).toBe('Never');
      const selector = only(manifests, 'Service').spec?.selector as Record<string, string>;
      const labels = podLabels(job);
      expect(Object.entries(selector).every(([k, v]) => labels[k] === v)).toBe(false);
    });

    it('rolls the pods when the configuration changes', () => {
      const checksum = (ms: Manifest[]) =>
        (only(ms, 'Deployment').spec as { template: { metadata: { annotations: Record<string, string> } } }).template.metadata.annotations['checksum/config'];
      const other = template({ config: { control: { dialect: 'postgres', url: 'secret://control-db-url' }, worker: { concurrency: 4 } } });
      expect(checksum(other)).toMatch(/^[0-9a-f]{64}$/);
      expect(checksum(other)).not.toBe(checksum(manifests));
    });
  });

  describe('configuration the agent would refuse', () => {
    it('is caught by the ConfigMap check (the check can fail)', () => {
      const manifests = template({ config: { control: { dialect: 'postgres', url: 'secret://control-db-url' }, tenants: [{ ...TENANT, sources: [{ id: 'orders', connection: 'nope', table: 'dbo.Orders' }] }] } });
      expect(() => compileConfig(configOf(manifests, 'cdc-cdc-sync-agent'))).toThrow(/unknown connection "nope"/);
    });

    it('is refused by values.schema.json where the chart relies on it', () => {
      expect(templateError({ replicaCount: -1 })).toContain('replicaCount');
      expect(templateError({ config: { control: { dialect: 'oracle' } } })).toContain('/config/control/dialect');
      expect(templateError({ config: { control: { dialect: 'postgres' }, keyVault: { url: 'https://x.vault.azure.net' } } })).toContain('/config/keyVault');
      expect(lint({ image: { repository: '' } }).status).not.toBe(0);
    });

    it('fails combinations that cannot work with a message naming the values', () => {
      expect(templateError({ autoscaling: { enabled: true }, keda: { enabled: true }, secrets: { existingSecret: 's' } })).toContain('mutually exclusive');
      expect(templateError({ keyVault: { enabled: true, url: 'https://v.vault.azure.net/' } })).toContain('workloadIdentity.enabled');
      expect(templateError({ keyVault: { enabled: true }, workloadIdentity: { enabled: true, clientId: 'c' } })).toContain('keyVault.url is required');
      expect(templateError({ workloadIdentity: { enabled: true } })).toContain('workloadIdentity.clientId is required');
      expect(templateError({ keda: { enabled: true } })).toContain('KEDA needs its own connection');
    });
  });

  describe('chart-managed secret and existing secret', () => {
    const MOUNT = '/var/run/secrets/cdc-agent';
    const secretVolume = (m: Manifest) => {
      const spec = podSpec(m);
      const mount = spec.containers[0]!.volumeMounts!.find((v) => v.mountPath === MOUNT);
      return mount === undefined ? undefined : spec.volumes!.find((v) => v.name === mount.name)!.secret?.secretName;
    };

    it('mounts a chart-managed Secret, with a hook copy for the migration Job', () => {
      const values = { secrets: { values: { 'control-db-url': 'postgres://agent:pw@db/control', 'acme-push-token': 't0k' } } };
      expect(lint(values).status).toBe(0);
      const manifests = template(values);
      const secret = only(manifests, 'Secret', 'cdc-cdc-sync-agent');
      expect(Buffer.from((secret as { data?: Record<string, string> }).data!['control-db-url']!, 'base64').toString()).toBe('postgres://agent:pw@db/control');
      expect(isHook(only(manifests, 'Secret', 'cdc-cdc-sync-agent-migrate'))).toBe(true);
      expect(secretVolume(only(manifests, 'Deployment'))).toBe('cdc-cdc-sync-agent');
      expect(secretVolume(only(manifests, 'Job'))).toBe('cdc-cdc-sync-agent-migrate');
    });

    it('mounts an existing Secret in the agent and the migration Job, and renders none', () => {
      const values = { secrets: { existingSecret: 'cdc-agent-secrets' } };
      expect(lint(values).status).toBe(0);
      const manifests = template(values);
      expect(manifests.filter((m) => m.kind === 'Secret')).toEqual([]);
      expect(secretVolume(only(manifests, 'Deployment'))).toBe('cdc-agent-secrets');
      expect(secretVolume(only(manifests, 'Job'))).toBe('cdc-agent-secrets');
      expect(templateError({ secrets: { existingSecret: 'a', values: { b: 'c' } } })).toContain('not both');
    });
  });

  describe('Key Vault with workload identity', () => {
    const values = {
      keyVault: { enabled: true, url: 'https://cdc-vault.vault.azure.net/' },
      workloadIdentity: { enabled: true, clientId: '00000000-0000-0000-0000-000000000001', tenantId: '00000000-0000-0000-0000-0000000000aa' },
      config: {
        control: { dialect: 'mssql', url: 'secret://control-db-url' },
        telemetry: { appInsights: 'secret://appinsights-connection-string' },
        tenants: [TENANT],
      },
    };
    const manifests = helm.path === undefined ? [] : template(values);

    it('passes lint and puts the vault in the configuration the agent compiles', () => {
      expect(lint(values).status).toBe(0);
      const config = compileConfig(configOf(manifests, 'cdc-cdc-sync-agent'));
      expect(config.keyVault).toEqual({ url: 'https://cdc-vault.vault.azure.net/', cacheTtl: 300_000 });
      expect(config.tenants.map((t) => t.id)).toEqual(['acme']);
    });

    it('federates the ServiceAccounts and labels the pods for the workload identity webhook', () => {
      for (const name of ['cdc-cdc-sync-agent', 'cdc-cdc-sync-agent-migrate']) {
        expect(only(manifests, 'ServiceAccount', name).metadata.annotations).toMatchObject({
          'azure.workload.identity/client-id': '00000000-0000-0000-0000-000000000001',
          'azure.workload.identity/tenant-id': '00000000-0000-0000-0000-0000000000aa',
        });
      }
      for (const m of [only(manifests, 'Deployment'), only(manifests, 'Job')]) {
        expect(podLabels(m)['azure.workload.identity/use']).toBe('true');
      }
      expect(podSpec(only(manifests, 'Deployment')).serviceAccountName).toBe('cdc-cdc-sync-agent');
      expect(podSpec(only(manifests, 'Job')).serviceAccountName).toBe('cdc-cdc-sync-agent-migrate');
      expect(manifests.filter((m) => m.kind === 'Secret')).toEqual([]);
    });

    it('uses an existing ServiceAccount for both when the chart does not create one', () => {
      const ms = template({ ...values, serviceAccount: { create: false, name: 'cdc-agent' } });
      expect(ms.filter((m) => m.kind === 'ServiceAccount')).toEqual([]);
      expect(podSpec(only(ms, 'Deployment')).serviceAccountName).toBe('cdc-agent');
      expect(podSpec(only(ms, 'Job')).serviceAccountName).toBe('cdc-agent');
    });
  });

  describe('autoscaling', () => {
    it('HPA: scales the Deployment on CPU and leaves the replica count to it', () => {
      const values = { autoscaling: { enabled: true, minReplicas: 3, maxReplicas: 10 } };
      expect(lint(values).status).toBe(0);
      const manifests = template(values);
      const hpa = only(manifests, 'HorizontalPodAutoscaler');
      expect(hpa.apiVersion).toBe('autoscaling/v2');
      expect(hpa.spec).toMatchObject({ scaleTargetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'cdc-cdc-sync-agent' }, minReplicas: 3, maxReplicas: 10 });
      expect(only(manifests, 'Deployment').spec).not.toHaveProperty('replicas');
      expect(manifests.filter((m) => m.kind === 'ScaledObject')).toEqual([]);
    });

    interface Trigger {
      type: string;
      authenticationRef: { name: string };
      metadata: Record<string, string>;
    }
    const triggerOf = (ms: Manifest[]) => (only(ms, 'ScaledObject').spec as { triggers: Trigger[] }).triggers;

    it('KEDA on PostgreSQL: counts ready and running jobs in cdc_jobs, authenticated from a Secret', () => {
      const values = { keda: { enabled: true, maxReplicaCount: 12, targetJobsPerReplica: 3 }, secrets: { existingSecret: 'cdc-agent-secrets' } };
      expect(lint(values).status).toBe(0);
      const manifests = template(values);
      const scaled = only(manifests, 'ScaledObject');
      expect(scaled.apiVersion).toBe('keda.sh/v1alpha1');
      expect(scaled.spec).toMatchObject({ scaleTargetRef: { kind: 'Deployment', name: 'cdc-cdc-sync-agent' }, minReplicaCount: 1, maxReplicaCount: 12 });
      expect(only(manifests, 'Deployment').spec).not.toHaveProperty('replicas');
      const [trigger] = triggerOf(manifests);
      expect(trigger!.type).toBe('postgresql');
      expect(trigger!.metadata.query).toBe(`SELECT COUNT(*) FROM "public".cdc_jobs WHERE (status = 'queued' AND run_after <= now()) OR status = 'running'`);
      expect(trigger!.metadata).toMatchObject({ targetQueryValue: '3', activationTargetQueryValue: '0' });
      const auth = only(manifests, 'TriggerAuthentication');
      expect(trigger!.authenticationRef.name).toBe(auth.metadata.name);
      expect(auth.spec).toEqual({ secretTargetRef: [{ parameter: 'connection', name: 'cdc-agent-secrets', key: 'keda-connection' }] });
    });

    it('KEDA on SQL Server: the mssql trigger on [dbo].cdc_jobs, its connection string from Key Vault', () => {
      const values = {
        keyVault: { enabled: true, url: 'https://cdc-vault.vault.azure.net/' },
        workloadIdentity: { enabled: true, clientId: '00000000-0000-0000-0000-000000000001' },
        config: { control: { dialect: 'mssql', url: 'secret://control-db-url' } },
        keda: { enabled: true, auth: { azureKeyVault: { enabled: true, secretName: 'keda-connection', identityId: '00000000-0000-0000-0000-000000000002' } } },
      };
      expect(lint(values).status).toBe(0);
      const manifests = template(values);
      const [trigger] = triggerOf(manifests);
      expect(trigger!.type).toBe('mssql');
      expect(trigger!.metadata.query).toBe(
        "SELECT COUNT(*) FROM [dbo].cdc_jobs WHERE (status = N'queued' AND run_after <= SYSUTCDATETIME()) OR status = N'running'",
      );
      expect(trigger!.metadata).toMatchObject({ targetValue: '2', activationTargetValue: '0' });
      expect(only(manifests, 'TriggerAuthentication').spec).toEqual({
        azureKeyVault: {
          vaultUri: 'https://cdc-vault.vault.azure.net/',
          podIdentity: { provider: 'azure-workload', identityId: '00000000-0000-0000-0000-000000000002' },
          secrets: [{ parameter: 'connectionString', name: 'keda-connection' }],
        },
      });
    });
  });

  describe('values that cannot be wrong quietly', () => {
    const schema = JSON.parse(readFileSync(path.join(CHART, 'values.schema.json'), 'utf8')) as SchemaNode;

    it('refuses a misspelled key in every object of the chart its schema closes', () => {
      const closed = closedObjects(schema, []);
      // The chart's own sections, down to the nested ones (keda.auth.azureKeyVault, networkPolicy.egress.https, …).
      for (const section of ['image', 'secrets', 'keyVault', 'podDisruptionBudget', 'migration', 'keda.fallback', 'keda.auth.azureKeyVault', 'networkPolicy.egress.sqlServer', 'metrics.prometheusRule']) {
        expect(closed.map((p) => p.join('.'))).toContain(section);
      }
      expect(closed.length).toBeGreaterThan(20);
      for (const at of closed) {
        const values = at.reduceRight<Values>((inner, key) => ({ [key]: inner }), { misspeled: 1 });
        expect(templateError(values), at.join('.') || '(top level)').toContain(`at '${at.length ? `/${at.join('/')}` : ''}': additional properties 'misspeled' not allowed`);
      }
      expect(templateError({ replicaCont: 3 })).toContain("additional properties 'replicaCont' not allowed");
    });

    it('leaves the agent configuration and the Kubernetes objects it passes through open', () => {
      expect(lint({ config: { control: { dialect: 'postgres', url: 'secret://control-db-url' }, worker: { pollInterval: '2s' } }, resources: { limits: { cpu: '2' } } }).status).toBe(0);
    });

    it('takes only a Helm hook deletion policy', () => {
      expect(templateError({ migration: { deletePolicy: 'before-hook-creation,hook-succeded' } })).toContain('/migration/deletePolicy');
      const job = only(template({ migration: { deletePolicy: 'before-hook-creation,hook-failed' } }), 'Job');
      expect(job.metadata.annotations?.['helm.sh/hook-delete-policy']).toBe('before-hook-creation,hook-failed');
    });

    it('fails a minimum above the maximum, for the HPA and for KEDA', () => {
      expect(templateError({ autoscaling: { enabled: true, minReplicas: 9, maxReplicas: 4 } })).toContain('autoscaling.minReplicas (9) is above autoscaling.maxReplicas (4)');
      expect(templateError({ keda: { enabled: true, minReplicaCount: 3, maxReplicaCount: 2 }, secrets: { existingSecret: 's' } })).toContain('keda.minReplicaCount (3) is above keda.maxReplicaCount (2)');
      expect(only(template({ autoscaling: { enabled: true, minReplicas: 4, maxReplicas: 4 } }), 'HorizontalPodAutoscaler').spec).toMatchObject({ minReplicas: 4, maxReplicas: 4 });
    });

    const withPrometheus = (prometheus: Record<string, unknown>, extra: Values = {}) => ({
      config: { control: { dialect: 'postgres', url: 'secret://control-db-url' }, telemetry: { prometheus } },
      ...extra,
    });
    const containerPorts = (ms: Manifest[]) => podSpec(only(ms, 'Deployment')).containers[0]!.ports;
    const servicePorts = (ms: Manifest[]) => only(ms, 'Service').spec?.ports as Array<{ name: string; port: number }>;

    it('telemetry.prometheus.port: a port of its own on the container and the Service, none when it is the health port', () => {
      const own = template(withPrometheus({ port: 9464 }));
      expect(containerPorts(own)).toEqual([
        { name: 'http', containerPort: 8080, protocol: 'TCP' },
        { name: 'metrics', containerPort: 9464, protocol: 'TCP' },
      ]);
      expect(servicePorts(own).map((p) => [p.name, p.port])).toEqual([['http', 8080], ['metrics', 9464]]);
      // `prometheus: {}` is the agent's default port, 9464.
      expect(containerPorts(template(withPrometheus({})))).toContainEqual({ name: 'metrics', containerPort: 9464, protocol: 'TCP' });
      // The health port: the agent serves /metrics there once, so the chart renders no second port of 8080.
      const same = template(withPrometheus({ port: 8080 }));
      expect(containerPorts(same)).toEqual([{ name: 'http', containerPort: 8080, protocol: 'TCP' }]);
      expect(servicePorts(same).map((p) => p.port)).toEqual([8080]);
      expect(templateError(withPrometheus({ port: 9090 }, { service: { port: 9090 } }))).toContain('config.telemetry.prometheus.port (9090) is service.port');
      expect(templateError(withPrometheus({ port: 0 }))).toContain('/config/telemetry/prometheus/port');
    });

    it("KEDA: jobs per replica default to the agent's worker.concurrency; an explicit value wins", () => {
      const values = (keda: Values, concurrency?: number) => ({
        keda: { enabled: true, ...keda },
        secrets: { existingSecret: 's' },
        config: { control: { dialect: 'postgres', url: 'secret://control-db-url' }, ...(concurrency ? { worker: { concurrency } } : {}) },
      });
      const target = (ms: Manifest[]) => (only(ms, 'ScaledObject').spec as { triggers: Array<{ metadata: Record<string, string> }> }).triggers[0]!.metadata.targetQueryValue;
      expect(target(template(values({})))).toBe('2');
      expect(target(template(values({}, 5)))).toBe('5');
      expect(target(template(values({ targetJobsPerReplica: 3 }, 5)))).toBe('3');
    });

    it("KEDA: a fallback replica count while the depth query fails, off by default", () => {
      const base = { keda: { enabled: true }, secrets: { existingSecret: 's' } };
      expect(only(template(base), 'ScaledObject').spec).not.toHaveProperty('fallback');
      const on = template({ ...base, keda: { enabled: true, fallback: { enabled: true, failureThreshold: 5, replicas: 3 } } });
      expect(only(on, 'ScaledObject').spec?.fallback).toEqual({ failureThreshold: 5, replicas: 3 });
      expect(templateError({ ...base, keda: { enabled: true, fallback: { enabled: true, replica: 3 } } })).toContain('/keda/fallback');
    });

    it("KEDA: the query names cdc_jobs's schema, public or dbo unless keda.tableSchema says otherwise", () => {
      const query = (values: Values) => (only(template(values), 'ScaledObject').spec as { triggers: Array<{ metadata: { query: string } }> }).triggers[0]!.metadata.query;
      const pg = { keda: { enabled: true }, secrets: { existingSecret: 's' } };
      const ms = { ...pg, config: { control: { dialect: 'mssql', url: 'secret://control-db-url' } } };
      expect(query(pg)).toContain('FROM "public".cdc_jobs WHERE');
      expect(query(ms)).toContain('FROM [dbo].cdc_jobs WHERE');
      expect(query({ ...pg, keda: { enabled: true, tableSchema: 'cdc' } })).toContain('FROM "cdc".cdc_jobs WHERE');
      expect(query({ ...ms, keda: { enabled: true, tableSchema: 'sync' } })).toContain('FROM [sync].cdc_jobs WHERE');
      expect(templateError({ ...pg, keda: { enabled: true, tableSchema: 'x"; DROP TABLE cdc_jobs; --' } })).toContain('/keda/tableSchema');
    });
  });

  describe('network policy', () => {
    const values = {
      networkPolicy: {
        enabled: true,
        ingress: { namespaces: ['monitoring'] },
        egress: { sqlServer: { cidrs: ['10.20.0.0/16', '192.168.5.10/32'] }, https: { cidrs: ['0.0.0.0/0'] } },
      },
    };
    interface Rule {
      ports?: Array<{ port: number | string; protocol: string }>;
      from?: unknown[];
      to?: Array<{ ipBlock: { cidr: string } }>;
    }
    const policy = (ms: Manifest[], name = 'cdc-cdc-sync-agent') => only(ms, 'NetworkPolicy', name).spec as { podSelector: { matchLabels: Record<string, string> }; policyTypes: string[]; ingress: Rule[]; egress: Rule[] };
    const ports = (rules: Rule[]) => rules.map((r) => (r.ports ?? []).map((p) => `${p.port}/${p.protocol}`).join(' '));

    it('is off by default', () => {
      expect(template({}).filter((m) => m.kind === 'NetworkPolicy')).toEqual([]);
    });

    it('selects the replicas; ingress only to the http port, from the namespaces named', () => {
      expect(lint(values).status).toBe(0);
      const ms = template(values);
      const spec = policy(ms);
      expect(spec.podSelector.matchLabels).toEqual((only(ms, 'Deployment').spec as { selector: { matchLabels: unknown } }).selector.matchLabels);
      expect(spec.policyTypes).toEqual(['Ingress', 'Egress']);
      expect(spec.ingress).toEqual([{ ports: [{ port: 'http', protocol: 'TCP' }], from: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } }] }]);
      // With no namespace named, nothing may connect (the kubelet's probes are not subject to the policy).
      expect(policy(template({ networkPolicy: { enabled: true } })).ingress).toEqual([]);
      // The metrics port too, when telemetry.prometheus.port is a port of its own.
      const metrics = template({ ...values, config: { control: { dialect: 'postgres', url: 'secret://control-db-url' }, telemetry: { prometheus: { port: 9464 } } } });
      expect(ports(policy(metrics).ingress)).toEqual(['http/TCP metrics/TCP']);
    });

    it('egress: DNS, the control database port, the SQL Servers on 1433 and 443, each to the CIDRs given', () => {
      const egress = policy(template(values)).egress;
      expect(ports(egress)).toEqual(['53/UDP 53/TCP', '5432/TCP', '1433/TCP', '443/TCP']);
      expect(egress.map((r) => r.to?.map((t) => t.ipBlock.cidr))).toEqual([undefined, undefined, ['10.20.0.0/16', '192.168.5.10/32'], ['0.0.0.0/0']]);
      // The control database's port from its dialect, its configured port, or the policy's own.
      const mssql = { ...values, config: { control: { dialect: 'mssql', url: 'secret://control-db-url' } } };
      expect(ports(policy(template(mssql)).egress)[1]).toBe('1433/TCP');
      expect(ports(policy(template({ ...values, config: { control: { dialect: 'postgres', host: 'db', port: 6543 } } })).egress)[1]).toBe('6543/TCP');
      const own = { networkPolicy: { ...values.networkPolicy, egress: { ...values.networkPolicy.egress, controlDatabase: { port: 6432, cidrs: ['10.1.2.0/24'] } } } };
      expect(policy(template(own)).egress[1]).toEqual({ ports: [{ port: 6432, protocol: 'TCP' }], to: [{ ipBlock: { cidr: '10.1.2.0/24' } }] });
    });

    it('allowExternalEgress allows all egress: a NetworkPolicy cannot name hosts', () => {
      const open = template({ networkPolicy: { ...values.networkPolicy, allowExternalEgress: true } });
      expect(policy(open).egress).toEqual([{}]);
    });

    it("gives the migration Job's pod its own hook policy: no ingress, no SQL Server, created before the Job", () => {
      const ms = template(values);
      const hook = only(ms, 'NetworkPolicy', 'cdc-cdc-sync-agent-migrate');
      const job = only(ms, 'Job');
      expect(isHook(hook)).toBe(true);
      expect(Number(hook.metadata.annotations?.['helm.sh/hook-weight'])).toBeLessThan(Number(job.metadata.annotations?.['helm.sh/hook-weight']));
      const spec = policy(ms, 'cdc-cdc-sync-agent-migrate');
      const labels = podLabels(job);
      expect(Object.entries(spec.podSelector.matchLabels).every(([k, v]) => labels[k] === v)).toBe(true);
      expect(spec.ingress).toEqual([]);
      expect(ports(spec.egress)).toEqual(['53/UDP 53/TCP', '5432/TCP', '443/TCP']);
    });

    it('refuses what it cannot render', () => {
      expect(templateError({ networkPolicy: { enabled: true, egress: { sqlServer: { cidrs: ['sql01.acme.local'] } } } })).toContain('/networkPolicy/egress/sqlServer/cidrs/0');
      expect(templateError({ networkPolicy: { enabled: true, ingress: { namespaces: ['Monitoring'] } } })).toContain('/networkPolicy/ingress/namespaces/0');
      expect(templateError({ networkPolicy: { enabled: true, allowExternalEgres: true } })).toContain("additional properties 'allowExternalEgres' not allowed");
    });
  });

  describe('disruption budget and spreading', () => {
    const pdb = (ms: Manifest[]) => only(ms, 'PodDisruptionBudget').spec as Record<string, unknown>;

    it('lets unready pods be evicted (AlwaysAllow) so that they never block a drain, on Kubernetes 1.27+', () => {
      expect(pdb(template({}))).toMatchObject({ maxUnavailable: 1, unhealthyPodEvictionPolicy: 'AlwaysAllow' });
      expect(pdb(template({}, ['--kube-version', '1.27.0']))).toHaveProperty('unhealthyPodEvictionPolicy', 'AlwaysAllow');
      expect(pdb(template({}, ['--kube-version', '1.26.5']))).not.toHaveProperty('unhealthyPodEvictionPolicy');
      expect(pdb(template({ podDisruptionBudget: { unhealthyPodEvictionPolicy: '' } }))).not.toHaveProperty('unhealthyPodEvictionPolicy');
      expect(pdb(template({ podDisruptionBudget: { minAvailable: 1 } }))).toMatchObject({ minAvailable: 1, unhealthyPodEvictionPolicy: 'AlwaysAllow' });
      expect(templateError({ podDisruptionBudget: { unhealthyPodEvictionPolicy: 'Always' } })).toContain('/podDisruptionBudget/unhealthyPodEvictionPolicy');
    });

    const SELECTOR = { 'app.kubernetes.io/name': 'cdc-sync-agent', 'app.kubernetes.io/instance': 'cdc' };
    const affinity = (ms: Manifest[]) => (podSpec(only(ms, 'Deployment')) as { affinity?: Record<string, unknown> }).affinity;

    it('prefers another node and another zone for each replica by default', () => {
      expect(affinity(template({}))).toEqual({
        podAntiAffinity: {
          preferredDuringSchedulingIgnoredDuringExecution: [
            { weight: 100, podAffinityTerm: { topologyKey: 'kubernetes.io/hostname', labelSelector: { matchLabels: SELECTOR } } },
            { weight: 50, podAffinityTerm: { topologyKey: 'topology.kubernetes.io/zone', labelSelector: { matchLabels: SELECTOR } } },
          ],
        },
      });
    });

    it('requires another node with the hard preset, none with none, and takes an affinity as given', () => {
      expect(affinity(template({ podAntiAffinityPreset: 'hard' }))).toEqual({
        podAntiAffinity: {
          requiredDuringSchedulingIgnoredDuringExecution: [{ topologyKey: 'kubernetes.io/hostname', labelSelector: { matchLabels: SELECTOR } }],
          preferredDuringSchedulingIgnoredDuringExecution: [{ weight: 50, podAffinityTerm: { topologyKey: 'topology.kubernetes.io/zone', labelSelector: { matchLabels: SELECTOR } } }],
        },
      });
      expect(affinity(template({ podAntiAffinityPreset: 'none' }))).toBeUndefined();
      const own = { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: 'pool', operator: 'In', values: ['sync'] }] }] } } };
      expect(affinity(template({ affinity: own }))).toEqual(own);
      expect(templateError({ podAntiAffinityPreset: 'soft-ish' })).toContain('/podAntiAffinityPreset');
    });

    it('renders topologySpreadConstraints through tpl, counting this release when no labelSelector is given', () => {
      const constraints = [
        { maxSkew: 1, topologyKey: 'topology.kubernetes.io/zone', whenUnsatisfiable: 'ScheduleAnyway' },
        { maxSkew: 2, topologyKey: 'kubernetes.io/hostname', whenUnsatisfiable: 'DoNotSchedule', labelSelector: { matchLabels: { 'app.kubernetes.io/instance': '{{ .Release.Name }}' } } },
      ];
      expect(lint({ topologySpreadConstraints: constraints }).status).toBe(0);
      const spec = podSpec(only(template({ topologySpreadConstraints: constraints }), 'Deployment')) as { topologySpreadConstraints?: unknown[] };
      expect(spec.topologySpreadConstraints).toEqual([
        { ...constraints[0], labelSelector: { matchLabels: SELECTOR } },
        { ...constraints[1], labelSelector: { matchLabels: { 'app.kubernetes.io/instance': 'cdc' } } },
      ]);
      expect(podSpec(only(template({}), 'Deployment'))).not.toHaveProperty('topologySpreadConstraints');
    });
  });

  describe('Prometheus and Grafana wiring', () => {
    const all = { metrics: { serviceMonitor: { enabled: true, labels: { release: 'kps' } }, prometheusRule: { enabled: true, labels: { release: 'kps' } }, grafanaDashboard: { enabled: true } } };

    it('is off by default', () => {
      const kinds = template({}).map((m) => m.kind);
      expect(kinds).not.toContain('ServiceMonitor');
      expect(kinds).not.toContain('PrometheusRule');
      expect(template({}).filter((m) => m.kind === 'ConfigMap').map((m) => m.metadata.name)).not.toContain('cdc-cdc-sync-agent-dashboard');
    });

    it('ServiceMonitor: /metrics on the http port of the Service it selects', () => {
      expect(lint(all).status).toBe(0);
      const ms = template(all);
      const monitor = only(ms, 'ServiceMonitor');
      expect(monitor.apiVersion).toBe('monitoring.coreos.com/v1');
      expect(monitor.metadata.labels).toMatchObject({ release: 'kps' });
      const spec = monitor.spec as { selector: { matchLabels: Record<string, string> }; namespaceSelector: unknown; endpoints: Array<Record<string, unknown>> };
      const service = only(ms, 'Service');
      expect(Object.entries(spec.selector.matchLabels).every(([k, v]) => service.metadata.labels?.[k] === v)).toBe(true);
      expect(spec.namespaceSelector).toEqual({ matchNames: ['sync'] });
      expect(spec.endpoints).toEqual([{ port: 'http', path: '/metrics', interval: '30s', scrapeTimeout: '10s' }]);
      const portNames = (service.spec?.ports as Array<{ name: string }>).map((p) => p.name);
      expect(portNames).toContain(spec.endpoints[0]!.port);
    });

    it('ServiceMonitor: the metrics port when there is one, refused when there is none', () => {
      const metrics = { metrics: { serviceMonitor: { enabled: true, port: 'metrics' } } };
      const ms = template({ ...metrics, config: { control: { dialect: 'postgres', url: 'secret://control-db-url' }, telemetry: { prometheus: { port: 9464 } } } });
      expect((only(ms, 'ServiceMonitor').spec as { endpoints: Array<{ port: string }> }).endpoints[0]!.port).toBe('metrics');
      expect(templateError(metrics)).toContain('metrics.serviceMonitor.port is metrics, but there is no metrics port');
      expect(templateError({ metrics: { serviceMonitor: { enabled: true, port: 9464 } } })).toContain('/metrics/serviceMonitor/port');
      expect(templateError({ metrics: { serviceMonitor: { enabled: true, interval: '30 seconds' } } })).toContain('/metrics/serviceMonitor/interval');
    });

    it('PrometheusRule: exactly the alerts docs/operations.md lists, with their severity and what to do', () => {
      const rule = only(template(all), 'PrometheusRule');
      expect(rule.metadata.labels).toMatchObject({ release: 'kps' });
      const rendered = (rule.spec as { groups: Array<{ rules: RenderedAlert[] }> }).groups.flatMap((g) => g.rules);
      const documented = documentedAlerts();
      expect(documented.length).toBeGreaterThanOrEqual(8);
      expect(rendered.map((r) => ({ alert: r.alert, summary: r.annotations.summary, expr: r.expr, severity: r.labels.severity, description: r.annotations.description }))).toEqual(documented);
      // Each alert queries series the agent exports (the page's metric table lists them; its own test ties it to the code).
      const metricsDoc = readFileSync(path.join(ROOT, 'docs/operations.md'), 'utf8');
      for (const r of rendered) for (const series of r.expr.match(/\bcdc_[a-z0-9_]+/g) ?? []) expect(metricsDoc, `${r.alert}: ${series}`).toContain(`| \`${series}\` |`);
    });

    it('PrometheusRule: alertLabels on every alert, the severity its own', () => {
      const rule = only(template({ metrics: { prometheusRule: { enabled: true, alertLabels: { team: 'data', severity: 'none' } } } }), 'PrometheusRule');
      const rules = (rule.spec as { groups: Array<{ rules: RenderedAlert[] }> }).groups.flatMap((g) => g.rules);
      for (const r of rules) expect(r.labels.team).toBe('data');
      expect(rules.map((r) => r.labels.severity)).toEqual(documentedAlerts().map((a) => a.severity));
      expect(templateError({ metrics: { prometheusRule: { enabled: true, alertLabels: { team: 1 } } } })).toContain('/metrics/prometheusRule/alertLabels/team');
    });

    it('Grafana: the dashboard file in a ConfigMap labelled for the sidecar', () => {
      const configMap = only(template({ metrics: { grafanaDashboard: { enabled: true, annotations: { grafana_folder: 'CDC' } } } }), 'ConfigMap', 'cdc-cdc-sync-agent-dashboard');
      expect(configMap.metadata.labels).toMatchObject({ grafana_dashboard: '1' });
      expect(configMap.metadata.annotations).toEqual({ grafana_folder: 'CDC' });
      const file = readFileSync(path.join(CHART, 'dashboards/cdc-sync-agent.json'), 'utf8');
      expect(JSON.parse(configMap.data!['cdc-sync-agent.json']!)).toEqual(JSON.parse(file));
      const elsewhere = only(template({ metrics: { grafanaDashboard: { enabled: true, namespace: 'grafana', labels: { dashboards: 'cdc' } } } }), 'ConfigMap', 'cdc-cdc-sync-agent-dashboard');
      expect(elsewhere.metadata).toMatchObject({ namespace: 'grafana', labels: { grafana_dashboard: '1', dashboards: 'cdc' } });
    });
  });

  describe('the migration hook pod', () => {
    it('has its own annotations, labels and priority class (to keep a sidecar out of it)', () => {
      const values = { migration: { podAnnotations: { 'linkerd.io/inject': 'disabled' }, podLabels: { 'sidecar.istio.io/inject': 'false' }, priorityClassName: 'batch-high' }, podAnnotations: { 'replica-only': 'x' } };
      expect(lint(values).status).toBe(0);
      const job = only(template(values), 'Job');
      const meta = (job.spec as { template: { metadata: { labels: Record<string, string>; annotations?: Record<string, string> } } }).template.metadata;
      expect(meta.annotations).toEqual({ 'linkerd.io/inject': 'disabled' });
      expect(meta.labels).toMatchObject({ 'sidecar.istio.io/inject': 'false', 'app.kubernetes.io/component': 'migration' });
      expect((podSpec(job) as { priorityClassName?: string }).priorityClassName).toBe('batch-high');
      // Without its own, the replicas' priority class; their annotations never.
      const inherited = only(template({ priorityClassName: 'sync', podAnnotations: { 'replica-only': 'x' } }), 'Job');
      expect((podSpec(inherited) as { priorityClassName?: string }).priorityClassName).toBe('sync');
      expect((inherited.spec as { template: { metadata: Record<string, unknown> } }).template.metadata).not.toHaveProperty('annotations');
    });
  });

  describe('Pod Security "restricted", as the CI install test enforces it', () => {
    const kindValues = parseYaml(readFileSync(path.join(ROOT, 'test/helm/kind/values.yaml'), 'utf8')) as Values;
    const everything = {
      ...kindValues,
      metrics: { serviceMonitor: { enabled: true }, prometheusRule: { enabled: true }, grafanaDashboard: { enabled: true } },
      topologySpreadConstraints: [{ maxSkew: 1, topologyKey: 'kubernetes.io/hostname', whenUnsatisfiable: 'ScheduleAnyway' }],
    };

    it('renders and lints the install test values, which the agent compiles', () => {
      expect(lint(kindValues).status).toBe(0);
      const ms = template(kindValues);
      compileConfig(configOf(ms, 'cdc-cdc-sync-agent'));
      expect(only(ms, 'Deployment').spec).toMatchObject({ replicas: 2 });
      expect(ms.filter((m) => m.kind === 'NetworkPolicy').map((m) => m.metadata.name).sort()).toEqual(['cdc-cdc-sync-agent', 'cdc-cdc-sync-agent-migrate']);
    });

    it('every pod the chart renders meets it, and so does the install test PostgreSQL', () => {
      const pods = template(everything).filter((m) => m.kind === 'Deployment' || m.kind === 'Job');
      expect(pods.map((m) => m.kind).sort()).toEqual(['Deployment', 'Job']);
      for (const m of pods) expect(restrictedViolations(podSpec(m)), `${m.kind}/${m.metadata.name}`).toEqual([]);
      const postgres = parseManifests(readFileSync(path.join(ROOT, 'test/helm/kind/postgres.yaml'), 'utf8'));
      expect(restrictedViolations(podSpec(only(postgres, 'Deployment')))).toEqual([]);
      // The check can fail: a container that may escalate, a root user.
      const bad = { ...podSpec(only(template({}), 'Deployment')) };
      bad.containers = [{ ...bad.containers[0]!, securityContext: { allowPrivilegeEscalation: true, runAsUser: 0 } }];
      expect(restrictedViolations(bad)).toEqual(expect.arrayContaining([expect.stringContaining('allowPrivilegeEscalation'), expect.stringContaining('runAsUser')]));
    });
  });

  describe('docs/deploy.md', () => {
    const doc = readFileSync(path.join(ROOT, 'docs/deploy.md'), 'utf8');
    // Sample values for the shell variables the guide sets; an unknown variable fails the test.
    const SAMPLES: Record<string, string> = {
      REGISTRY: 'myregistry.example',
      IMAGE_TAG: '0.1.0',
      NAMESPACE: 'cdc',
      RELEASE: 'cdc-agent',
      VAULT_URL: 'https://cdc-vault.vault.azure.net/',
      CLIENT_ID: '00000000-0000-0000-0000-000000000001',
      TENANT_ID: '00000000-0000-0000-0000-0000000000aa',
      KEDA_CLIENT_ID: '00000000-0000-0000-0000-000000000002',
      REPLICAS_MIN: '2',
      REPLICAS_MAX: '8',
    };
    const substitute = (text: string) =>
      text.replace(/\$\{([A-Z_]+)\}|\$([A-Z_]+)/g, (_m, a: string | undefined, b: string | undefined) => {
        const name = (a ?? b)!;
        const value = SAMPLES[name];
        if (value === undefined) throw new Error(`docs/deploy.md uses $${name}, which the test has no sample for`);
        return value;
      });

    // Every `cat > values-….yaml <<EOF` block, by file name, and every `helm upgrade --install` command.
    const heredocs = new Map([...doc.matchAll(/cat > (values-[a-z-]+\.yaml) <<EOF\n([\s\S]*?)\nEOF\n/g)].map((m) => [m[1]!, parseYaml(substitute(m[2]!)) as Values]));
    const commands = [...doc.matchAll(/^helm upgrade --install (?:[^\n]*\\\n)*[^\n]*/gm)].map((m) => substitute(m[0].replace(/\\\n/g, ' ')).split(/\s+/).filter(Boolean));

    /** Render a command of the guide as Helm would run it, each `-f` naming the guide's own values file. */
    function renderCommand(words: string[]): { manifests: Manifest[]; files: string[]; timeoutSeconds: number } {
      expect(words.slice(0, 3)).toEqual(['helm', 'upgrade', '--install']);
      const [release, chart, ...flags] = words.slice(3);
      expect(chart).toBe('./helm/cdc-sync-agent');
      const files: string[] = [];
      const args = flags.map((f, i) => {
        if (flags[i - 1] !== '-f') return f;
        const values = heredocs.get(f);
        expect(values, `${f} is written by the guide`).toBeDefined();
        const file = path.join(scratch, f);
        writeFileSync(file, stringify(values));
        files.push(file);
        return file;
      });
      const rendered = run(['template', release!, CHART, ...args]);
      expect(rendered.stderr).toBe('');
      expect(rendered.status).toBe(0);
      expect(run(['lint', '--strict', CHART, '--namespace', 'cdc', ...files.flatMap((f) => ['-f', f])]).status).toBe(0);
      const timeout = /^(\d+)m$/.exec(flags[flags.indexOf('--timeout') + 1] ?? '');
      expect(timeout, 'the command gives --timeout in minutes').not.toBeNull();
      return { manifests: parseManifests(rendered.stdout), files, timeoutSeconds: Number(timeout![1]) * 60 };
    }

    it('has a values file and a helm upgrade --install command that render, lint and compile', () => {
      expect(heredocs.size).toBeGreaterThanOrEqual(2);
      expect(commands.length).toBeGreaterThanOrEqual(2);
      const { manifests, timeoutSeconds } = renderCommand(commands[0]!);
      const kinds = new Set(manifests.map((m) => m.kind));
      for (const kind of ['Deployment', 'ScaledObject', 'TriggerAuthentication', 'Job', 'ServiceAccount']) expect(kinds).toContain(kind);
      const configMap = manifests.find((m) => m.kind === 'ConfigMap' && !isHook(m))!;
      const config = compileConfig(parseYaml(configMap.data!['cdc-agent.yaml']!));
      expect(config.keyVault?.url).toBe(SAMPLES.VAULT_URL);
      expect(config.telemetry.appInsights).toMatch(/^secret:\/\//);
      expect(podLabels(only(manifests, 'Deployment'))['azure.workload.identity/use']).toBe('true');
      expect(only(manifests, 'ScaledObject').spec).toMatchObject({ minReplicaCount: 2, maxReplicaCount: 8, fallback: { failureThreshold: 3, replicas: 2 } });
      // KEDA's target defaults to the guide's worker.concurrency.
      const trigger = (only(manifests, 'ScaledObject').spec as { triggers: Array<{ metadata: Record<string, string> }> }).triggers[0]!;
      expect(trigger.metadata.targetValue).toBe(String(config.worker.concurrency));
      // The migration Job gives up before Helm stops waiting for it.
      expect((only(manifests, 'Job').spec as { activeDeadlineSeconds: number }).activeDeadlineSeconds).toBeLessThan(timeoutSeconds);
    });

    it('adds the network policy, Prometheus and Grafana wiring and spreading with a second values file', () => {
      const platform = commands.find((words) => words.includes('values-platform.yaml'));
      expect(platform, 'a command with -f values-platform.yaml').toBeDefined();
      const { manifests, timeoutSeconds } = renderCommand(platform!);
      const kinds = manifests.map((m) => `${m.kind}/${m.metadata.name}`);
      for (const kind of ['NetworkPolicy/cdc-agent-cdc-sync-agent', 'NetworkPolicy/cdc-agent-cdc-sync-agent-migrate', 'ServiceMonitor/cdc-agent-cdc-sync-agent', 'PrometheusRule/cdc-agent-cdc-sync-agent', 'ConfigMap/cdc-agent-cdc-sync-agent-dashboard', 'ScaledObject/cdc-agent-cdc-sync-agent']) {
        expect(kinds).toContain(kind);
      }
      const egress = (only(manifests, 'NetworkPolicy', 'cdc-agent-cdc-sync-agent').spec as { egress: Array<{ ports: Array<{ port: number }>; to?: unknown }> }).egress;
      // The guide's control database is SQL Server: its port, to its subnet.
      expect(egress.find((r) => r.ports[0]!.port === 1433 && JSON.stringify(r.to).includes('10.40.0.0/24'))).toBeDefined();
      expect((podSpec(only(manifests, 'Deployment')) as { topologySpreadConstraints?: unknown[] }).topologySpreadConstraints).toHaveLength(1);
      expect((only(manifests, 'Job').spec as { activeDeadlineSeconds: number }).activeDeadlineSeconds).toBeLessThan(timeoutSeconds);
    });

    it("lists values the chart has, with the defaults the chart has", () => {
      const table = doc.slice(doc.indexOf('| value | default | what it renders |'));
      const rows = table.split('\n').slice(2).filter((l) => l.startsWith('| `'));
      expect(rows.length).toBeGreaterThan(15);
      const defaults = parseYaml(readFileSync(path.join(CHART, 'values.yaml'), 'utf8')) as Values;
      const schema = JSON.parse(readFileSync(path.join(CHART, 'values.schema.json'), 'utf8')) as SchemaNode;
      const known = (dotted: string) => dotted.split('.').reduce<SchemaNode | undefined>((node, key) => node?.properties?.[key], schema) !== undefined;
      for (const row of rows) {
        const [names, shownDefault] = row.slice(2, -2).split(' | ');
        const first = /^`([^`]+)`/.exec(names!)![1]!;
        // `a.b.c` / `.d` names a.b.c and a.b.d.
        for (const extra of [...names!.matchAll(/\/ `\.?([a-zA-Z]+)`/g)].map((m) => m[1]!)) expect(known(first.replace(/[^.]+$/, extra)), `${first} / ${extra}`).toBe(true);
        expect(known(first), first).toBe(true);
        const value = first.split('.').reduce<unknown>((node, key) => (node as Record<string, unknown> | undefined)?.[key], defaults);
        if (typeof value === 'boolean' || typeof value === 'number' || (typeof value === 'string' && value !== '')) expect(shownDefault, first).toContain(String(value));
      }
      for (const value of ['networkPolicy.allowExternalEgress', 'metrics.serviceMonitor.enabled', 'metrics.prometheusRule.enabled', 'metrics.grafanaDashboard.enabled', 'podDisruptionBudget.unhealthyPodEvictionPolicy', 'podAntiAffinityPreset', 'keda.fallback', 'keda.tableSchema']) {
        expect(rows.some((r) => r.startsWith(`| \`${value}\``)), value).toBe(true);
      }
    });

    it('names only secrets the guide stores in the vault', () => {
      const stored = new Set([...doc.matchAll(/az keyvault secret set [^\n]*--name ([a-z0-9-]+)/g)].map((m) => m[1]));
      const heredoc = /cat > values-[a-z-]+\.yaml <<EOF\n([\s\S]*?)\nEOF\n/.exec(doc)!;
      const referenced = new Set([...heredoc[1]!.matchAll(/secret:\/\/([a-z0-9-]+)/g)].map((m) => m[1]));
      expect(referenced.size).toBeGreaterThan(0);
      for (const name of referenced) expect(stored, `secret://${name} is never stored`).toContain(name);
      const kedaSecret = /azureKeyVault:[\s\S]*?secretName: ([a-z0-9-]+)/.exec(heredoc[1]!)?.[1];
      expect(stored).toContain(kedaSecret);
    });
  });
});

if (helm.path !== undefined) {
  describe('npm run helm', () => {
    it('runs the same Helm binary', () => {
      const out = execFileSync(process.execPath, [path.join(ROOT, 'test/helm/helm-binary.ts'), 'version', '--short'], { encoding: 'utf8' });
      expect(out.trim()).toBe(helm.version);
    });
  });
}
