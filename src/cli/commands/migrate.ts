/**
 * `cdc-agent migrate`: bring the control database's schema up to this build's version. SIGTERM/SIGINT exit 1 at once,
 * also while the configuration and Key Vault load (the Helm hook pod is PID 1, which ignores SIGTERM without a handler):
 * each migration is its own transaction, so the one in progress rolls back when the connection drops.
 */
import type { Command } from 'commander';
import { connect } from '../../dialect/connect.ts';
import { migrate } from '../../migrations/migrate.ts';
import { EXIT } from '../exit-codes.ts';
import { loadFromCli, type CliIo } from '../context.ts';

export function registerMigrate(program: Command, io: CliIo, setExit: (code: number) => void): void {
  program
    .command('migrate')
    .description('apply pending control-database migrations (safe to run from several replicas at once)')
    .action(async (_options: unknown, command: Command) => {
      const stop = (signal: string) => {
        io.err(`${signal}: migrate stopped; migrations already applied stay, the one in progress (if any) rolls back. Run cdc-agent migrate again.`);
        process.exit(EXIT.failed);
      };
      process.on('SIGTERM', () => stop('SIGTERM'));
      process.on('SIGINT', () => stop('SIGINT'));
      const { config } = await loadFromCli(command, io);
      const db = await connect(config.control);
      try {
        const result = await migrate(db, { onApply: (name) => io.err(`applied ${name}`) });
        io.out(
          result.applied.length === 0
            ? `Control database is up to date (migration ${result.current}).`
            : `Applied ${result.applied.length} migration(s); control database is at migration ${result.current}.`,
        );
        setExit(EXIT.ok);
      } finally {
        await db.close();
      }
    });
}
