/**
 * Azure Key Vault with the real SDK (`@azure/keyvault-secrets` + `DefaultAzureCredential`) against a local
 * HTTPS vault: the managed-identity token flow (IDENTITY_ENDPOINT/IDENTITY_HEADER), the Key Vault
 * authentication challenge, the TTL cache, the fallback to environment secrets, rotation through `refresh`,
 * and a refused read that names what to fix.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { KeyVaultError, KeyVaultSecretProvider } from '../../src/config/keyvault.ts';
import { loadConfig } from '../../src/config/load.ts';
import { isAuthenticationFailure, secretRotation, tenantPushPath } from '../../src/config/rotation.ts';
import { startHttpsStub, type HttpsStub } from '../telemetry/https-stub.ts';

const TOKEN = 'kv-access-token-1';
const IDENTITY_HEADER = 'identity-header-secret';

describe('Azure Key Vault secret provider', () => {
  let vault: HttpsStub;
  const secrets = new Map<string, string>();
  let forbidden = false;
  let dir: string;

  beforeAll(async () => {
    vault = await startHttpsStub((req) => {
      if (req.path === '/msi/token') {
        if (req.headers['x-identity-header'] !== IDENTITY_HEADER) return { status: 401, body: { error: 'bad identity header' } };
        return {
          status: 200,
          body: { access_token: TOKEN, expires_on: String(Math.floor(Date.now() / 1000) + 3600), resource: req.query.get('resource'), token_type: 'Bearer' },
        };
      }
      const match = /^\/secrets\/([A-Za-z0-9-]+)\/?$/.exec(req.path);
      if (!match) return undefined;
      if (req.headers.authorization !== `Bearer ${TOKEN}`) {
        return {
          status: 401,
          headers: { 'WWW-Authenticate': 'Bearer authorization="https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000", resource="https://vault.azure.net"' },
          body: { error: { code: 'Unauthorized', message: 'AKV10000: Request is missing a Bearer or PoP token.' } },
        };
      }
      if (forbidden) return { status: 403, body: { error: { code: 'Forbidden', message: 'The user does not have secrets get permission' } } };
      const name = match[1]!;
      const value = secrets.get(name);
      if (value === undefined) return { status: 404, body: { error: { code: 'SecretNotFound', message: `A secret with (name/id) ${name} was not found in this key vault.` } } };
      return { status: 200, body: { value, id: `${vault.url}/secrets/${name}/0123456789abcdef`, attributes: { enabled: true, created: 1_700_000_000, updated: 1_700_000_000 } } };
    });
    // What AKS/App Service inject for a managed identity; DefaultAzureCredential reads them itself.
    process.env.IDENTITY_ENDPOINT = `${vault.url}/msi/token`;
    process.env.IDENTITY_HEADER = IDENTITY_HEADER;
    dir = await mkdtemp(path.join(tmpdir(), 'cdc-kv-'));
  });
  afterAll(async () => {
    await vault?.close();
    await rm(dir, { recursive: true, force: true });
  });
  beforeEach(() => {
    forbidden = false;
    secrets.clear();
  });

  const provider = (ttlMs = 60_000, now?: () => number) =>
    new KeyVaultSecretProvider({ url: vault.url, cacheTtlMs: ttlMs, clientOptions: { disableChallengeResourceVerification: true }, ...(now ? { now } : {}) });
  const secretReads = (name: string) => vault.requests.filter((r) => r.path.replace(/\/$/, '') === `/secrets/${name}` && r.headers.authorization !== undefined).length;

  it('reads a secret with a managed-identity token, maps dots and underscores to dashes, and caches it for the TTL', async () => {
    secrets.set('acme-push-token', 'token-v1');
    let clock = 1_000_000;
    const kv = provider(300_000, () => clock);
    expect(await kv.get('acme.push_token')).toBe('token-v1');
    expect(vault.requests.some((r) => r.path === '/msi/token')).toBe(true);
    const reads = secretReads('acme-push-token');
    secrets.set('acme-push-token', 'token-v2');
    expect(await kv.get('acme.push_token')).toBe('token-v1');
    expect(secretReads('acme-push-token')).toBe(reads);
    clock += 300_001;
    expect(await kv.get('acme.push_token')).toBe('token-v2');
    expect(secretReads('acme-push-token')).toBe(reads + 1);
  });

  it('answers undefined for a missing secret so the chain falls through, and explains a refused read', async () => {
    const kv = provider();
    expect(await kv.get('nope')).toBeUndefined();
    forbidden = true;
    const error = await kv.get('other').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(KeyVaultError);
    expect((error as Error).message).toMatch(/HTTP 403.*Key Vault Secrets User/);
  });

  it('loadConfig puts Key Vault first, then the environment; rotation refreshes the cached value in place', async () => {
    secrets.set('acme-push-token', 'push-token-old');
    const file = path.join(dir, 'agent.yaml');
    await writeFile(
      file,
      stringify({
        control: { dialect: 'postgres', url: 'secret://control-url' },
        keyVault: { url: vault.url, cacheTtl: '1h' },
        tenants: [
          {
            id: 'acme',
            push: { url: 'https://push.example.com/v1', token: 'secret://acme-push-token' },
            connections: { legacy: { dialect: 'postgres', host: 'db', database: 'legacy', user: 'u', password: 'secret://acme-db-password' } },
            sources: [{ id: 'orders', connection: 'legacy', table: 'public.orders', every: '15m' }],
          },
        ],
      }),
    );
    const env = { CDC_SECRET_CONTROL_URL: 'postgres://agent:pw-from-env@db/control', CDC_SECRET_ACME_DB_PASSWORD: 'db-password-env' };
    const loaded = await loadConfig({ path: file, env, keyVaultClientOptions: { disableChallengeResourceVerification: true } });
    expect(loaded.config.tenants[0]!.push.token).toBe('push-token-old');
    expect(loaded.config.control.url).toBe('postgres://agent:pw-from-env@db/control');
    expect([...loaded.secrets.values()]).toEqual(expect.arrayContaining(['push-token-old', 'db-password-env']));

    // The receiver now wants the rotated token; the cache (1h) still holds the old one until refreshed.
    secrets.set('acme-push-token', 'push-token-new');
    const rotation = secretRotation(loaded);
    expect(await rotation.refresh(tenantPushPath(loaded, 'acme'))).toBe(true);
    expect(loaded.config.tenants[0]!.push.token).toBe('push-token-new');
    // Both values stay redacted; a second refresh with nothing new reports no change.
    expect([...loaded.secrets.values()]).toEqual(expect.arrayContaining(['push-token-old', 'push-token-new']));
    expect(await rotation.refresh(tenantPushPath(loaded, 'acme'))).toBe(false);
  });

  it('recognises the authentication failures that trigger a refresh', () => {
    expect(isAuthenticationFailure(Object.assign(new Error('password authentication failed'), { code: '28P01', severity: 'FATAL' }))).toBe(true);
    expect(isAuthenticationFailure(Object.assign(new Error('Login failed for user'), { code: 'ELOGIN' }))).toBe(true);
    expect(isAuthenticationFailure(new Error('wrapped', { cause: Object.assign(new Error('x'), { number: 18456 }) }))).toBe(true);
    expect(isAuthenticationFailure(Object.assign(new Error('401'), { status: 401 }))).toBe(true);
    expect(isAuthenticationFailure(Object.assign(new Error('403'), { status: 403 }))).toBe(false);
    expect(isAuthenticationFailure(Object.assign(new Error('deadlock'), { code: '40P01', severity: 'ERROR' }))).toBe(false);
  });
});
