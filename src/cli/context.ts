/** What every command needs: the loaded configuration and a way to print. */
import type { Command } from 'commander';
import { loadConfig, type LoadedConfig } from '../config/load.ts';
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
export async function loadForTenant(command: Command, io: CliIo, tenant: string): Promise<LoadedConfig> {
  const loaded = await loadFromCli(command, io, { skipBrokenTenants: true });
  const broken = loaded.brokenTenants.find((b) => b.tenant === tenant);
  if (broken) throw new ConfigError(broken.problems, `Tenant ${tenant} cannot be used: its secrets cannot be resolved`);
  return loaded;
}
