/** The `cdc-agent` command line. Each command lives in commands/; this file wires them and maps errors to exit codes. */
import { Command, CommanderError } from 'commander';
import { ConfigError, CdcError } from '../errors/errors.ts';
import { registerConfigCheck } from './commands/config-check.ts';
import { registerDemo } from './commands/demo.ts';
import { registerMigrate } from './commands/migrate.ts';
import { registerReceiver } from './commands/receiver.ts';
import { registerRun } from './commands/run.ts';
import { registerPlan, registerStatus } from './commands/status.ts';
import { registerSync } from './commands/sync.ts';
import { registerVerify } from './commands/verify.ts';
import type { CliIo } from './context.ts';
import { EXIT } from './exit-codes.ts';

export function buildProgram(io: CliIo, setExit: (code: number) => void): Command {
  const program = new Command('cdc-agent')
    .description('Keeps a SaaS reporting platform in sync with tenants\' legacy SQL Server data (snapshot, diff, push).')
    .option('-c, --config <file>', 'configuration file (default: $CDC_AGENT_CONFIG or ./cdc-agent.yaml)')
    .showHelpAfterError()
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.out(s.trimEnd()), writeErr: (s) => io.err(s.trimEnd()) });
  registerConfigCheck(program, io, setExit);
  registerMigrate(program, io, setExit);
  registerRun(program, io, setExit);
  registerSync(program, io, setExit);
  registerStatus(program, io, setExit);
  registerPlan(program, io, setExit);
  registerVerify(program, io, setExit);
  registerDemo(program, io, setExit);
  registerReceiver(program, io, setExit);
  return program;
}

export async function main(argv: readonly string[], io: CliIo = defaultIo()): Promise<number> {
  let code: number = EXIT.ok;
  const program = buildProgram(io, (c) => {
    code = c;
  });
  try {
    await program.parseAsync(argv as string[]);
    return code;
  } catch (error) {
    if (error instanceof CommanderError) {
      return error.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    if (error instanceof ConfigError) {
      io.err(error.message);
      return EXIT.usage;
    }
    if (error instanceof CdcError) {
      io.err(`Error: ${error.message}`);
      return EXIT.failed;
    }
    io.err(`Unexpected error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    return EXIT.failed;
  }
}

function defaultIo(): CliIo {
  return {
    out: (text) => process.stdout.write(`${text}\n`),
    err: (text) => process.stderr.write(`${text}\n`),
    env: process.env,
  };
}
