/**
 * Secret rotation: when a source login or the receiver answers with an authentication failure, the secrets
 * behind that part of the configuration are read again (Key Vault's cache dropped) and written into the
 * compiled config in place, so the connection or push client made for the retry uses the new values.
 */
import type { LoadedConfig } from './load.ts';
import { SecretResolver } from './secrets.ts';

/** PostgreSQL SQLSTATE class 28 (invalid authorization), SQL Server 18456 / tedious ELOGIN, HTTP 401. */
export function isAuthenticationFailure(error: unknown): boolean {
  const seen = new Set<unknown>();
  let current: unknown = error;
  while (typeof current === 'object' && current !== null && !seen.has(current)) {
    seen.add(current);
    const e = current as { code?: unknown; number?: unknown; status?: unknown; severity?: unknown; originalError?: unknown; cause?: unknown };
    if (typeof e.code === 'string' && e.severity !== undefined && e.code.startsWith('28')) return true;
    if (e.number === 18456 || e.code === 'ELOGIN') return true;
    if (e.status === 401) return true;
    current = e.originalError ?? e.cause;
  }
  return false;
}

export type SecretPath = ReadonlyArray<string | number>;

export interface SecretRotation {
  /**
   * Refresh every `secret://` reference under `path` of the configuration (e.g. `['tenants', 0, 'push']`).
   * Returns true when at least one value changed, i.e. a retry has a chance.
   */
  refresh(path: SecretPath): Promise<boolean>;
}

function at(node: unknown, path: SecretPath): unknown {
  let current = node;
  for (const part of path) {
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<string | number, unknown>)[part];
  }
  return current;
}

function references(node: unknown, path: Array<string | number>, out: Array<{ path: Array<string | number>; ref: string }>): void {
  if (SecretResolver.isReference(node)) out.push({ path, ref: node });
  else if (Array.isArray(node)) node.forEach((item, i) => references(item, [...path, i], out));
  else if (node !== null && typeof node === 'object') for (const [k, v] of Object.entries(node)) references(v, [...path, k], out);
}

export function secretRotation(loaded: Pick<LoadedConfig, 'config' | 'unresolved' | 'secrets'>): SecretRotation {
  return {
    async refresh(path) {
      const found: Array<{ path: Array<string | number>; ref: string }> = [];
      references(at(loaded.unresolved, path), [...path], found);
      let changed = false;
      for (const { path: where, ref } of found) {
        const fresh = await loaded.secrets.refresh(ref);
        if (!fresh.changed) continue;
        const parent = at(loaded.config, where.slice(0, -1));
        if (parent !== null && typeof parent === 'object') {
          (parent as Record<string | number, unknown>)[where[where.length - 1]!] = fresh.value;
          changed = true;
        }
      }
      return changed;
    },
  };
}

/** Tenant paths, as the compiled config lays them out. */
export function tenantPushPath(loaded: Pick<LoadedConfig, 'config'>, tenantId: string): SecretPath {
  return ['tenants', loaded.config.tenants.findIndex((t) => t.id === tenantId), 'push'];
}

export function connectionPath(loaded: Pick<LoadedConfig, 'config'>, tenantId: string, connection: string): SecretPath {
  return ['tenants', loaded.config.tenants.findIndex((t) => t.id === tenantId), 'connections', connection];
}
