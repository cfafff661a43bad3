/** What every command needs: the loaded configuration and a way to print. */
import type { Command } from 'commander';
import { loadConfig, type LoadedConfig } from '../config/load.ts';
import type { TenantConfig } from '../config/schema.ts';
import { ConfigError } from '../errors/errors.ts';

export interface GlobalOptions {
  config?: string;
}

export interface CliIo {
  out: (text: string) => void;
  err: (text: string) => void;
  env: Readonly<Record<string, string | undefined>>;
}

export function globalOptions(command: Command): GlobalOptions {
  return command.optsWithGlobals<GlobalOptions>();
}

/** `skipBrokenTenants`: the daemon and `status` serve the other tenants when one tenant's secrets are missing. */
export async function loadFromCli(command: Command, io: CliIo, options: { skipBrokenTenants?: boolean } = {}): Promise<LoadedConfig> {
  const { config } = globalOptions(command);
  return loadConfig({ ...(config !== undefined ? { path: config } : {}), env: io.env, ...(options.skipBrokenTenants ? { skipBrokenTenants: true } : {}) });
}

/**
 * The configuration for a command about one tenant: other tenants' missing secrets do not stop it, the
 * tenant's own do (exit 2, with every missing secret by path).
 */
export async function loadForTenant(
  command: Command,
  io: CliIo,
  tenantId: string,
  sourceId?: string,
): Promise<{ loaded: LoadedConfig; tenant: TenantConfig; sources: TenantConfig['sources'] }> {
  const loaded = await loadFromCli(command, io, { skipBrokenTenants: true });
  const broken = loaded.brokenTenants.find((b) => b.tenant === tenantId);
  if (broken) throw new ConfigError(broken.problems, `Tenant ${tenantId} cannot be used: its secrets cannot be resolved`);
  const tenant = loaded.config.tenants.find((t) => t.id === tenantId);
  if (!tenant) {
    throw new ConfigError([`--tenant ${tenantId}: no such tenant (configured: ${loaded.config.tenants.map((t) => t.id).join(', ') || 'none'})`], 'Unknown tenant');
  }
  // One source with `--source`, else all of the tenant's.
  const sources = sourceId !== undefined ? tenant.sources.filter((s) => s.id === sourceId) : tenant.sources;
  if (sources.length === 0) {
    throw new ConfigError([`--source ${sourceId}: tenant ${tenant.id} has no such source (configured: ${tenant.sources.map((s) => s.id).join(', ')})`], 'Unknown source');
  }
  return { loaded, tenant, sources };
}
