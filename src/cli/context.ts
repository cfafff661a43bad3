/** What every command needs: the loaded configuration and a way to print. */
import type { Command } from 'commander';
import { loadConfig, type LoadedConfig } from '../config/load.ts';

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

export async function loadFromCli(command: Command, io: CliIo): Promise<LoadedConfig> {
  const { config } = globalOptions(command);
  return loadConfig({ ...(config !== undefined ? { path: config } : {}), env: io.env });
}
