/** Everything a command that does work needs, built once from the loaded configuration. */
import type { LoadedConfig } from '../config/load.ts';
import { connect } from '../dialect/connect.ts';
import type { Db } from '../dialect/types.ts';
import { createJobQueue } from '../queue-table/queue.ts';
import type { JobQueue } from '../queue-table/queue.ts';
import { secretRotation, type SecretRotation } from '../config/rotation.ts';
import { createLogger, type Logger } from '../telemetry/logger.ts';
import type { Telemetry } from '../telemetry/metrics.ts';
import { createTelemetry } from '../telemetry/setup.ts';
import { connectionTarget } from '../telemetry/metrics.ts';
import { assertSchemaUsable } from '../migrations/migrate.ts';
import { CdcError, PermanentError, TransientError } from '../errors/errors.ts';
import { SourceConnections } from './connections.ts';

export interface Runtime {
  loaded: LoadedConfig;
  controlDb: Db;
  queue: JobQueue;
  sources: SourceConnections;
  log: Logger;
  telemetry: Telemetry;
  /** Re-reads rotated secrets after an authentication failure. */
  rotation: SecretRotation;
  close(): Promise<void>;
}

/**
 * The control database, said so when it cannot be reached or has no agent tables yet: a command's own errors
 * (a driver's `ECONNREFUSED 10.0.0.5:5432`, `relation "cdc_jobs" does not exist`) do not say which database.
 */
async function openControl(loaded: LoadedConfig, probe: boolean, requireSchema: boolean): Promise<Db> {
  const control = loaded.config.control;
  const where = `the control database (${control.dialect} ${connectionTarget(control)}, \`control\` in ${loaded.config.path})`;
  const sentenceStart = `${where[0]!.toUpperCase()}${where.slice(1)}`;
  let db: Db;
  try {
    db = await connect(control, { probe });
  } catch (error) {
    const detail = error instanceof Error ? error.message : String(error);
    throw new TransientError(`Cannot reach ${where}: ${detail}. Check that it runs and that control.url (or host, port, user, password) is right.`, { cause: error });
  }
  if (!requireSchema) return db;
  try {
    const status = await assertSchemaUsable(db);
    if (status.current === 0) throw new PermanentError(`${sentenceStart} has no agent tables: run \`cdc-agent migrate\` first.`);
    if (status.pending.length > 0) {
      throw new PermanentError(`${sentenceStart} has ${status.pending.length} pending migration(s) (at ${status.current}, this agent knows ${status.latest}): run \`cdc-agent migrate\`.`);
    }
  } catch (error) {
    await db.close().catch(() => {});
    if (error instanceof CdcError && !error.retryable) throw error;
    const detail = error instanceof Error ? error.message : String(error);
    throw new TransientError(`Cannot read ${where}: ${detail}`, { cause: error });
  }
  return db;
}

export async function openRuntime(loaded: LoadedConfig, options: { logLevel?: string; probe?: boolean; requireSchema?: boolean } = {}): Promise<Runtime> {
  const log = createLogger({ level: options.logLevel ?? loaded.config.telemetry.logLevel, secrets: () => loaded.secrets.values() });
  // The daemon (probe: false) waits for its database and migrations itself; every other command needs both now.
  const probe = options.probe ?? true;
  const controlDb = await openControl(loaded, probe, options.requireSchema ?? probe);
  // Heartbeats get a connection of their own (opened at the first one), so that job work never delays a lease.
  const leaseDb = await connect({ ...loaded.config.control, poolMax: 1 }, { probe: false });
  const queue = createJobQueue(controlDb, { leaseDb });
  const sources = new SourceConnections(loaded.config);
  const telemetry = await createTelemetry(loaded.config, { secrets: () => loaded.secrets.values() });
  return {
    loaded,
    controlDb,
    queue,
    sources,
    log,
    telemetry,
    rotation: secretRotation(loaded),
    async close() {
      await telemetry.flush().catch(() => {});
      await telemetry.close().catch(() => {});
      await sources.closeAll();
      await leaseDb.close().catch(() => {});
      await controlDb.close();
    },
  };
}
