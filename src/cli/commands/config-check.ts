/** `cdc-agent config check`: validate the configuration, resolve its secrets, print it masked. */
import type { Command } from 'commander';
import { stringify } from 'yaml';
import { configPathFrom, maskConfig } from '../../config/load.ts';
import { EXIT } from '../exit-codes.ts';
import { globalOptions, loadFromCli, type CliIo } from '../context.ts';

export function registerConfigCheck(program: Command, io: CliIo, setExit: (code: number) => void): void {
  const config = program.command('config').description('inspect the configuration');
  config
    .command('check')
    .description('validate the configuration file, resolve every secret, and print the compiled result with secrets masked')
    .option('--json', 'print JSON instead of YAML')
    .action(async (options: { json?: boolean }, command: Command) => {
      const loaded = await loadFromCli(command, io);
      const { path: _path, ...rest } = loaded.unresolved;
      const masked = maskConfig(rest);
      io.out(options.json ? JSON.stringify(masked, null, 2) : stringify(masked));
      io.err(`Configuration ${configPathFrom({ ...globalOptions(command), env: io.env })} is valid; all secrets resolved.`);
      setExit(EXIT.ok);
    });
}
