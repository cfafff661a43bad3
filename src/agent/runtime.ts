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

export async function openRuntime(loaded: LoadedConfig, options: { logLevel?: string; probe?: boolean } = {}): Promise<Runtime> {
  const log = createLogger({ level: options.logLevel ?? loaded.config.telemetry.logLevel, secrets: () => loaded.secrets.values() });
  const controlDb = await connect(loaded.config.control, { probe: options.probe ?? true });
  const queue = createJobQueue(controlDb);
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
      await controlDb.close();
    },
  };
}
