/** `cdc-agent demo`: the one-command demo (its own issue). Until it is built it says so and fails. */
import type { Command } from 'commander';
import { EXIT } from '../exit-codes.ts';
import type { CliIo } from '../context.ts';

export function registerDemo(program: Command, io: CliIo, setExit: (code: number) => void): void {
  program
    .command('demo')
    .description('run the self-contained demo (not built yet)')
    .action(() => {
      io.err('The demo is not built yet: `cdc-agent demo` will start an embedded database, onboard two tenants and verify them.');
      io.err('Meanwhile `npm test` exercises the agent against real databases.');
      setExit(EXIT.failed);
    });
}
