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
      expect(trigger!.metadata.query).toMatch(/FROM cdc_jobs WHERE \(status = 'queued' AND run_after <= now\(\)\) OR status = 'running'/);
      expect(trigger!.metadata).toMatchObject({ targetQueryValue: '3', activationTargetQueryValue: '0' });
      const auth = only(manifests, 'TriggerAuthentication');
      expect(trigger!.authenticationRef.name).toBe(auth.metadata.name);
      expect(auth.spec).toEqual({ secretTargetRef: [{ parameter: 'connection', name: 'cdc-agent-secrets', key: 'keda-connection' }] });
    });

    it('KEDA on SQL Server: the mssql trigger on dbo.cdc_jobs, its connection string from Key Vault', () => {
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
        "SELECT COUNT(*) FROM dbo.cdc_jobs WHERE (status = N'queued' AND run_after <= SYSUTCDATETIME()) OR status = N'running'",
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

    it('has a values file and a helm upgrade --install command that render, lint and compile', () => {
      const heredoc = /cat > (values-[a-z-]+\.yaml) <<EOF\n([\s\S]*?)\nEOF\n/.exec(doc);
      expect(heredoc, 'a `cat > values-….yaml <<EOF` block').not.toBeNull();
      const valuesName = heredoc![1]!;
      const values = parseYaml(substitute(heredoc![2]!)) as Values;
      const command = /^helm upgrade --install (?:[^\n]*\\\n)*[^\n]*/m.exec(doc);
      expect(command, 'a `helm upgrade --install` command').not.toBeNull();
      const words = substitute(command![0].replace(/\\\n/g, ' ')).split(/\s+/).filter(Boolean);
      expect(words.slice(0, 3)).toEqual(['helm', 'upgrade', '--install']);
      const [release, chart, ...flags] = words.slice(3);
      expect(chart).toBe('./helm/cdc-sync-agent');
      const file = path.join(scratch, valuesName);
      writeFileSync(file, stringify(values));
      const args = flags.map((f) => (f === valuesName ? file : f));
      const rendered = run(['template', release!, CHART, ...args]);
      expect(rendered.stderr).toBe('');
      expect(rendered.status).toBe(0);
      expect(run(['lint', '--strict', CHART, '--namespace', 'cdc', '-f', file]).status).toBe(0);
      const manifests = parseManifests(rendered.stdout);
      const kinds = new Set(manifests.map((m) => m.kind));
      for (const kind of ['Deployment', 'ScaledObject', 'TriggerAuthentication', 'Job', 'ServiceAccount']) expect(kinds).toContain(kind);
      const configMap = manifests.find((m) => m.kind === 'ConfigMap' && !isHook(m))!;
      const config = compileConfig(parseYaml(configMap.data!['cdc-agent.yaml']!));
      expect(config.keyVault?.url).toBe(SAMPLES.VAULT_URL);
      expect(config.telemetry.appInsights).toMatch(/^secret:\/\//);
      expect(podLabels(only(manifests, 'Deployment'))['azure.workload.identity/use']).toBe('true');
      expect(only(manifests, 'ScaledObject').spec).toMatchObject({ minReplicaCount: 2, maxReplicaCount: 8 });
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
