/** `cdc-agent config check`: validate the configuration, resolve its secrets, print it masked. */
import type { Command } from 'commander';
import { stringify } from 'yaml';
import { maskConfig } from '../../config/load.ts';
import { DURATION_KEYS, formatDurationMs } from '../../config/duration.ts';
import { EXIT } from '../exit-codes.ts';
import { loadFromCli, type CliIo } from '../context.ts';

/** Fields the compiler derives for the code (milliseconds of settings given in seconds); not the operator's. */
const DERIVED = new Set(['leaseMs', 'heartbeatMs', 'drainGraceMs']);

/** The compiled configuration as an operator wrote it: durations spelt `15m`, derived fields left out. */
function asWritten(node: unknown, key = ''): unknown {
  if (typeof node === 'number' && DURATION_KEYS.has(key)) return formatDurationMs(node);
  if (Array.isArray(node)) return node.map((item) => asWritten(item));
  if (node !== null && typeof node === 'object') {
    return Object.fromEntries(Object.entries(node).filter(([k]) => !DERIVED.has(k)).map(([k, v]) => [k, asWritten(v, k)]));
  }
  return node;
}

export function registerConfigCheck(program: Command, io: CliIo, setExit: (code: number) => void): void {
  const config = program.command('config').description('inspect the configuration');
  config
    .command('check')
    .description('validate the configuration file, resolve every secret, and print the compiled result with secrets masked')
    .option('--json', 'print JSON instead of YAML')
    .action(async (options: { json?: boolean }, command: Command) => {
      const loaded = await loadFromCli(command, io);
      const { path: _path, ...rest } = loaded.unresolved;
      const masked = asWritten(maskConfig(rest));
      io.out(options.json ? JSON.stringify(masked, null, 2) : stringify(masked));
      io.err(`Configuration ${loaded.unresolved.path} is valid; all secrets resolved.`);
      setExit(EXIT.ok);
    });
}
