/**
 * What the chart deploys and how CI proves it (issue 22), checked where no container engine runs: the image is
 * pinned to the Node the tests run on and carries no package manager; the workflow pins its actions by commit and
 * its images by digest or cumulative update. CI's `docker` and `kind` jobs build and run what is checked here.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const read = (file: string) => readFileSync(path.join(ROOT, file), 'utf8');
const pkg = JSON.parse(read('package.json')) as { version: string; devDependencies: Record<string, string> };
const dockerfile = read('Dockerfile');

/** The Dockerfile's stages by name, each its lines. */
function stages(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let current: string[] | undefined;
  for (const line of text.replace(/\\\n/g, ' ').split('\n')) {
    const from = /^FROM\s+\S+(?:\s+AS\s+(\S+))?/i.exec(line);
    if (from) out.set(from[1] ?? `stage${out.size}`, (current = []));
    else current?.push(line);
  }
  return out;
}

describe('Dockerfile', () => {
  it("builds on the Node the tests run on (the `node` devDependency), pinned by version and digest", () => {
    const image = /^ARG NODE_IMAGE=(\S+)$/m.exec(dockerfile)?.[1];
    expect(image).toBeDefined();
    const pinned = /^node:(\d+\.\d+\.\d+)-[a-z]+-slim@sha256:[0-9a-f]{64}$/.exec(image!);
    expect(pinned, `${image} is not node:X.Y.Z-<debian>-slim@sha256:…`).not.toBeNull();
    expect(pinned![1]).toBe(pkg.devDependencies.node);
    // Every stage starts from it.
    for (const from of dockerfile.match(/^FROM\s+\S+/gim) ?? []) expect(from).toBe('FROM ${NODE_IMAGE}');
  });

  it('leaves npm, npx and corepack out of the image it runs from, which runs as uid 1000', () => {
    const runtime = stages(dockerfile).get('runtime')!.join('\n');
    for (const tool of ['/usr/local/lib/node_modules/npm', '/usr/local/lib/node_modules/corepack', '/usr/local/bin/npm', '/usr/local/bin/npx', '/usr/local/bin/corepack']) {
      expect(runtime, tool).toMatch(new RegExp(`^RUN rm -rf .*${tool.replace(/[/.]/g, '\\$&')}(\\s|$)`, 'm'));
    }
    expect(runtime).toMatch(/^USER 1000:1000$/m);
    expect(runtime).toMatch(/^ENTRYPOINT \["node", "bin\/cdc-agent\.js"\]$/m);
  });

  it('labels the image with the OCI annotations, version and revision from build arguments', () => {
    const runtime = stages(dockerfile).get('runtime')!.join('\n');
    const labels = Object.fromEntries([...runtime.matchAll(/(org\.opencontainers\.image\.[a-z.]+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    expect(labels).toMatchObject({
      'org.opencontainers.image.title': 'cdc-sync-agent',
      'org.opencontainers.image.version': '${VERSION}',
      'org.opencontainers.image.revision': '${REVISION}',
      'org.opencontainers.image.created': '${CREATED}',
      'org.opencontainers.image.source': '${SOURCE}',
      'org.opencontainers.image.base.name': '${NODE_IMAGE}',
    });
    expect(runtime).toContain(`ARG VERSION=${pkg.version}`);
  });
});

interface Step {
  uses?: string;
  run?: string;
  with?: Record<string, string>;
}
interface Workflow {
  env?: Record<string, string>;
  jobs: Record<string, { env?: Record<string, string>; steps: Step[] }>;
}

describe('CI workflow', () => {
  const text = read('.github/workflows/ci.yml');
  const workflow = parseYaml(text) as Workflow;
  const steps = Object.values(workflow.jobs).flatMap((j) => j.steps);

  it('pins every action by commit SHA', () => {
    const uses = steps.flatMap((s) => (s.uses ? [s.uses] : []));
    expect(uses.length).toBeGreaterThan(10);
    for (const u of uses) expect(u, u).toMatch(/^[\w.-]+\/[\w.-]+@[0-9a-f]{40}$/);
  });

  it('pins every image it pulls by digest, SQL Server by cumulative update', () => {
    const envImages = [workflow.env ?? {}, ...Object.values(workflow.jobs).map((j) => j.env ?? {})].flatMap((env) => Object.entries(env).filter(([k]) => k.endsWith('_IMAGE')).map(([, v]) => v));
    const pulled = [...text.matchAll(/docker pull (\S+)/g)].map((m) => m[1]!).filter((r) => !r.startsWith('"$'));
    const nodes = steps.flatMap((s) => (s.with?.node_image ? [s.with.node_image] : []));
    const refs = [...envImages, ...pulled, ...nodes];
    expect(refs.some((r) => r.startsWith('kindest/node:'))).toBe(true);
    expect(refs.some((r) => r.startsWith('postgres:'))).toBe(true);
    for (const ref of refs) expect(ref, ref).toMatch(/^[a-z0-9./-]+:[\w.-]+@sha256:[0-9a-f]{64}$/);
    const mssql = refs.filter((r) => r.includes('mssql/server:'));
    expect(mssql.length).toBeGreaterThan(0);
    for (const ref of mssql) expect(ref).toMatch(/mssql\/server:20\d\d-CU\d+-/);
    // The only floating tag: the one testcontainers asks for, given to the pinned CU with docker tag.
    const floating = text.split('\n').filter((line) => /:\S*latest\b/.test(line) && !line.trim().startsWith('#'));
    expect(floating.map((l) => l.trim())).toEqual(['docker tag "$MSSQL_IMAGE" "${MSSQL_IMAGE%%:*}:2022-latest"']);
  });

  it('installs the chart into kind, in a namespace enforcing Pod Security "restricted", with the values the chart tests render', () => {
    const kind = workflow.jobs.kind!;
    const script = kind.steps.map((s) => s.run ?? '').join('\n');
    expect(kind.steps.some((s) => s.uses?.startsWith('helm/kind-action@'))).toBe(true);
    expect(script).toContain('pod-security.kubernetes.io/enforce=restricted');
    expect(script).toContain('-f test/helm/kind/values.yaml --wait --timeout 10m');
    expect(script).toContain('kubectl -n "$NAMESPACE" apply -f test/helm/kind/postgres.yaml');
    expect(script).toContain('/readyz');
    const docker = workflow.jobs.docker!.steps.map((s) => s.run ?? '').join('\n');
    expect(docker).toContain('docker stop --time 30 agent');
    expect(docker).toContain('docker stop --time 30 starting');
  });
});
