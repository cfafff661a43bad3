/** Everything a command that does work needs, built once from the loaded configuration. */
import type { LoadedConfig } from '../config/load.ts';
import { connect } from '../dialect/connect.ts';
import type { Db } from '../dialect/types.ts';
import { createJobQueue } from '../queue-table/queue.ts';
import type { JobQueue } from '../queue-table/queue.ts';
import { createLogger, type Logger } from '../telemetry/logger.ts';
import { SourceConnections } from './connections.ts';

export interface Runtime {
  loaded: LoadedConfig;
  controlDb: Db;
  queue: JobQueue;
  sources: SourceConnections;
  log: Logger;
  close(): Promise<void>;
}

export async function openRuntime(loaded: LoadedConfig, options: { logLevel?: string } = {}): Promise<Runtime> {
  const log = createLogger({ level: options.logLevel ?? loaded.config.telemetry.logLevel, secrets: () => loaded.secrets.values() });
  const controlDb = await connect(loaded.config.control);
  const queue = createJobQueue(controlDb);
  const sources = new SourceConnections(loaded.config);
  return {
    loaded,
    controlDb,
    queue,
    sources,
    log,
    async close() {
      await sources.closeAll();
      await controlDb.close();
    },
  };
}
