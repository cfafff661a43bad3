/**
 * Loads the YAML configuration, validates it and compiles it (docs/design.md §3). This is the only module that
 * reads `process.env`; everything downstream receives the compiled config.
 */
import { readFile } from 'node:fs/promises';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { ConfigError, SecretNotFoundError } from '../errors/errors.ts';
import type { SecretClientOptions } from '@azure/keyvault-secrets';
import { configSchema, crossCheck, type ParsedConfig } from './schema.ts';
import { EnvSecretProvider, FileSecretProvider, SecretResolver, type SecretProvider } from './secrets.ts';

export const DEFAULT_CONFIG_PATH = './cdc-agent.yaml';
export const DEFAULT_SECRET_DIRS = ['/var/run/secrets/cdc-agent'];

export type CompiledConfig = ParsedConfig & {
  /** Where the file was read from. */
  readonly path: string;
  readonly worker: ParsedConfig['worker'] & { leaseMs: number; heartbeatMs: number; drainGraceMs: number };
};

export interface LoadOptions {
  /** `--config` from the command line. */
  path?: string;
  env?: Readonly<Record<string, string | undefined>>;
  /** Providers placed first in the chain instead of the Azure Key Vault one that `keyVault` configures. */
  providers?: readonly SecretProvider[];
  /** Options for the Key Vault client (tests point it at a local vault with `disableChallengeResourceVerification`). */
  keyVaultClientOptions?: SecretClientOptions;
  /**
   * A tenant whose secrets cannot be resolved is left out (and listed in `brokenTenants`) instead of failing the
   * whole load: the daemon and `status` keep serving the other tenants. A missing secret outside `tenants` still fails.
   */
  skipBrokenTenants?: boolean;
}

/** A configured tenant left out because its secrets could not be resolved; `problems` as `config check` says them. */
export interface BrokenTenant {
  tenant: string;
  problems: string[];
}

export interface LoadedConfig {
  config: CompiledConfig;
  /** The config before secrets were resolved: what `config check` prints. */
  unresolved: CompiledConfig;
  secrets: SecretResolver;
  /** Tenants left out (only with `skipBrokenTenants`). */
  brokenTenants: BrokenTenant[];
}

function formatPath(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out === '' ? String(part) : `.${String(part)}`;
  }
  return out === '' ? '(root)' : out;
}

function formatIssue(issue: z.core.$ZodIssue): string {
  const where = formatPath(issue.path);
  if (issue.code === 'invalid_type' && (issue as { input?: unknown }).input === undefined) return `${where}: Required`;
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map((k) => `${where === '(root)' ? k : `${where}.${k}`}: unknown setting (check the spelling)`).join('\n');
  }
  return `${where}: ${issue.message}`;
}

/** Validate an already-parsed document. Every problem is reported at once. */
export function compileConfig(raw: unknown, path = '(inline)'): CompiledConfig {
  const result = configSchema.safeParse(raw ?? {}, { reportInput: true });
  const problems = [
    ...(result.success ? [] : result.error.issues.flatMap((i) => formatIssue(i).split('\n'))),
    ...crossCheck(raw).map((p) => `${formatPath(p.path)}: ${p.message}`),
  ];
  if (!result.success || problems.length > 0) throw new ConfigError(problems, `Invalid configuration in ${path}`);
  const parsed = result.data;
  const leaseMs = parsed.worker.leaseSeconds * 1000;
  return {
    ...parsed,
    path,
    worker: {
      ...parsed.worker,
      leaseMs,
      heartbeatMs: Math.max(1000, Math.floor(leaseMs / 5)),
      drainGraceMs: parsed.worker.drainGraceSeconds * 1000,
    },
  };
}

export function configPathFrom(options: { path?: string; env?: Readonly<Record<string, string | undefined>> }): string {
  return options.path ?? options.env?.CDC_AGENT_CONFIG ?? DEFAULT_CONFIG_PATH;
}

export async function readConfigFile(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new ConfigError(
        [`${path}: file not found. Pass --config FILE, set CDC_AGENT_CONFIG, or create ${DEFAULT_CONFIG_PATH} (see examples/).`],
        'No configuration',
      );
    }
    throw error;
  }
  const doc = parseDocument(text, { prettyErrors: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      doc.errors.map((e) => `${path}:${e.linePos?.[0]?.line ?? '?'}: ${e.message.split('\n')[0]}`),
      'Configuration is not valid YAML',
    );
  }
  return doc.toJS();
}

async function resolveTree(node: unknown, secrets: SecretResolver, at: PropertyKey[], problems: string[]): Promise<unknown> {
  if (SecretResolver.isReference(node)) {
    try {
      return await secrets.resolve(node);
    } catch (error) {
      if (error instanceof SecretNotFoundError) {
        problems.push(`${formatPath(at)}: ${error.message}`);
        return node;
      }
      throw error;
    }
  }
  if (Array.isArray(node)) {
    return Promise.all(node.map((item, i) => resolveTree(item, secrets, [...at, i], problems)));
  }
  if (node !== null && typeof node === 'object') {
    const out: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(node)) {
      out[key] = await resolveTree(value, secrets, [...at, key], problems);
      if (typeof value === 'string' && isSensitiveKey(key) && !SecretResolver.isReference(value)) secrets.remember(value);
    }
    return out;
  }
  return node;
}

/** Resolve every `secret://` reference in the config; all missing secrets are reported together. */
export async function resolveSecrets(config: CompiledConfig, secrets: SecretResolver): Promise<CompiledConfig> {
  return (await resolveSecretsSkipping(config, secrets, false)).config;
}

/** As resolveSecrets; with `skip`, tenants whose own secrets are missing are left out and returned instead. */
async function resolveSecretsSkipping(config: CompiledConfig, secrets: SecretResolver, skip: boolean): Promise<{ config: CompiledConfig; broken: BrokenTenant[] }> {
  const problems: string[] = [];
  const resolved = (await resolveTree(config, secrets, [], problems)) as CompiledConfig;
  if (problems.length === 0) return { config: resolved, broken: [] };
  const tenantOf = (problem: string) => /^tenants\[(\d+)\]/.exec(problem)?.[1];
  if (!skip || problems.some((p) => tenantOf(p) === undefined)) throw new ConfigError(problems, 'Missing secrets');
  const badIndexes = new Set(problems.map((p) => Number(tenantOf(p))));
  const broken = [...badIndexes].sort((a, b) => a - b).map((i) => ({ tenant: config.tenants[i]!.id, problems: problems.filter((p) => Number(tenantOf(p)) === i) }));
  return { config: { ...resolved, tenants: resolved.tenants.filter((_t, i) => !badIndexes.has(i)) }, broken };
}

export function defaultProviders(config: CompiledConfig, env: Readonly<Record<string, string | undefined>>): SecretProvider[] {
  const dirs = [...config.secrets.dirs, ...(env.CDC_SECRETS_DIR ? [env.CDC_SECRETS_DIR] : []), ...DEFAULT_SECRET_DIRS];
  return [new EnvSecretProvider(env), ...[...new Set(dirs)].map((d) => new FileSecretProvider(d))];
}

export async function loadConfig(options: LoadOptions = {}): Promise<LoadedConfig> {
  const env = options.env ?? process.env;
  const path = configPathFrom({ ...options, env });
  const unresolved = compileConfig(await readConfigFile(path), path);
  // The Azure SDKs are loaded only when Key Vault is configured: they cost tens of MB of memory.
  const keyVault =
    unresolved.keyVault !== undefined && options.providers === undefined
      ? [
          new (await import('./keyvault.ts')).KeyVaultSecretProvider({
            url: unresolved.keyVault.url,
            cacheTtlMs: unresolved.keyVault.cacheTtl,
            ...(options.keyVaultClientOptions ? { clientOptions: options.keyVaultClientOptions } : {}),
          }),
        ]
      : [];
  const secrets = new SecretResolver([...(options.providers ?? keyVault), ...defaultProviders(unresolved, env)]);
  const { config, broken } = await resolveSecretsSkipping(unresolved, secrets, options.skipBrokenTenants === true);
  return { config, unresolved, secrets, brokenTenants: broken };
}

const SENSITIVE_KEY = /password|token|apikey|appinsights|secret|^ca$/i;

export function isSensitiveKey(key: string): boolean {
  return SENSITIVE_KEY.test(key) && key !== 'apiKeyHeader';
}

/** The config as `config check` prints it: secret references kept, literal credentials masked. */
export function maskConfig(node: unknown, key = ''): unknown {
  if (typeof node === 'string') {
    if (SecretResolver.isReference(node)) return node;
    if (isSensitiveKey(key)) return '***';
    return maskUrlPassword(node);
  }
  if (Array.isArray(node)) return node.map((item) => maskConfig(item));
  if (node !== null && typeof node === 'object') {
    return Object.fromEntries(Object.entries(node).map(([k, v]) => [k, maskConfig(v, k)]));
  }
  return node;
}

function maskUrlPassword(value: string): string {
  return value.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/@\s]*:)([^@\s]+)(@)/i, '$1***$3');
}
