/**
 * Azure Key Vault as the first secret provider (docs/design.md §3). The identity is whatever
 * `DefaultAzureCredential` finds: workload identity in AKS, a managed identity, or a service principal from
 * the environment. Values are cached for `keyVault.cacheTtl`; `invalidate` drops one so that a rotated secret
 * is read again after an authentication failure.
 */
import { DefaultAzureCredential, type TokenCredential } from '@azure/identity';
import { SecretClient, type SecretClientOptions } from '@azure/keyvault-secrets';
import { CdcError } from '../errors/errors.ts';
import type { SecretProvider } from './secrets.ts';

export interface KeyVaultOptions {
  /** `https://NAME.vault.azure.net`. */
  url: string;
  cacheTtlMs: number;
  /** Default: `new DefaultAzureCredential()`. */
  credential?: TokenCredential;
  /** Passed to the SDK (tests set `disableChallengeResourceVerification` for a local vault). */
  clientOptions?: SecretClientOptions;
  now?: () => number;
}

/** Key Vault secret names allow only letters, digits and dashes: `acme.push_token` is read as `acme-push-token`. */
export function keyVaultSecretName(name: string): string {
  return name.replace(/[._]/g, '-');
}

export class KeyVaultError extends CdcError {
  constructor(message: string, cause: unknown, retryable: boolean) {
    super(message, { cause, retryable });
  }
}

function statusOf(error: unknown): number | undefined {
  const status = typeof error === 'object' && error !== null ? (error as { statusCode?: unknown }).statusCode : undefined;
  return typeof status === 'number' ? status : undefined;
}

export class KeyVaultSecretProvider implements SecretProvider {
  private readonly client: SecretClient;
  private readonly url: string;
  private readonly ttlMs: number;
  private readonly now: () => number;
  private readonly cache = new Map<string, { value: string | undefined; until: number }>();
  private readonly inflight = new Map<string, Promise<string | undefined>>();

  constructor(options: KeyVaultOptions) {
    this.url = options.url.replace(/\/+$/, '');
    this.ttlMs = options.cacheTtlMs;
    this.now = options.now ?? Date.now;
    this.client = new SecretClient(this.url, options.credential ?? new DefaultAzureCredential(), options.clientOptions);
  }

  describe(name: string): string {
    return `Azure Key Vault ${this.url} secret "${keyVaultSecretName(name)}"`;
  }

  async get(name: string): Promise<string | undefined> {
    const cached = this.cache.get(name);
    if (cached && cached.until > this.now()) return cached.value;
    // Concurrent readers of one expired secret share a single request.
    let pending = this.inflight.get(name);
    if (!pending) {
      pending = this.fetch(name).finally(() => this.inflight.delete(name));
      this.inflight.set(name, pending);
    }
    return pending;
  }

  invalidate(name: string): void {
    this.cache.delete(name);
  }

  private async fetch(name: string): Promise<string | undefined> {
    const kvName = keyVaultSecretName(name);
    let value: string | undefined;
    try {
      value = (await this.client.getSecret(kvName)).value;
    } catch (error) {
      const status = statusOf(error);
      if (status === 404) {
        value = undefined;
      } else {
        const hint =
          status === 401 || status === 403
            ? "the agent's identity may not read secrets from this vault (grant it the Key Vault Secrets User role or a get access policy)"
            : 'check the vault URL and the network path to it';
        const detail = error instanceof Error ? error.message.split('\n')[0] : String(error);
        throw new KeyVaultError(
          `Reading secret "${kvName}" from Azure Key Vault ${this.url} failed${status ? ` (HTTP ${status})` : ''}: ${detail}; ${hint}.`,
          error,
          status === undefined || status === 429 || status >= 500,
        );
      }
    }
    this.cache.set(name, { value, until: this.now() + this.ttlMs });
    return value;
  }
}
