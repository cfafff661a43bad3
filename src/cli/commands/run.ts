/**
 * `cdc-agent run`: the daemon. SIGTERM/SIGINT drain within the grace period, then exit 0. A signal during start-up
 * (configuration, Key Vault, control database) exits 0 at once: nothing is claimed yet.
 */
import type { Command } from 'commander';
import type { AgentDaemon } from '../../agent/daemon.ts';
import { EXIT } from '../exit-codes.ts';
import { loadFromCli, type CliIo } from '../context.ts';

export function registerRun(program: Command, io: CliIo, setExit: (code: number) => void): void {
  program
    .command('run')
    .description('run the agent: claim and execute sync jobs, fire schedules, serve /healthz, /readyz and /metrics')
    .option('--worker-id <id>', 'name of this replica in the job table (default: host:pid:random)')
    .option('--no-schedule', 'do not fire schedules (only run jobs enqueued by onboard/sync)')
    .option('--health-host <host>', 'address for the health server', '0.0.0.0')
    .action(async (options: { workerId?: string; schedule: boolean; healthHost: string }, command: Command) => {
      // Handlers first: as PID 1 in a container, Node ignores SIGTERM until one is registered, so a pod stopped while
      // Key Vault or the control database does not answer would wait out its whole grace period.
      let started: AgentDaemon | undefined = undefined;
      let stopping: Promise<void> | undefined;
      const stop = (signal: string) => {
        if (started === undefined) {
          io.err(`${signal} during start-up: exiting before any job was claimed.`);
          process.exit(EXIT.ok);
        }
        if (stopping) {
          runtime.log.warn({ signal }, 'second signal: exiting now; unfinished leases will expire');
          process.exit(EXIT.failed);
        }
        stopping = started.stop(signal);
      };
      process.on('SIGTERM', () => stop('SIGTERM'));
      process.on('SIGINT', () => stop('SIGINT'));
      // A tenant whose secrets are missing is reported and left out; the others are served.
      const loaded = await loadFromCli(command, io, { skipBrokenTenants: true });
      const { AgentDaemon } = await import('../../agent/daemon.ts');
      const { openRuntime } = await import('../../agent/runtime.ts');
      // The daemon waits for its control database (not ready, backing off) rather than exiting.
      const runtime = await openRuntime(loaded, { probe: false });
      const daemon = new AgentDaemon({
        ...runtime,
        config: loaded.config,
        schedule: options.schedule,
        healthHost: options.healthHost,
        brokenTenants: loaded.brokenTenants,
        ...(options.workerId !== undefined ? { workerId: options.workerId } : {}),
      });
      started = daemon;
      await daemon.start();
      // `telemetry.prometheus.port`: /metrics on its own port as well (it is always on the health port).
      const { PrometheusSink, startMetricsServer } = await import('../../telemetry/prometheus.ts');
      const prometheus = runtime.telemetry.find(PrometheusSink);
      const metricsPort = loaded.config.telemetry.prometheus?.port;
      const metrics = prometheus && metricsPort !== undefined && metricsPort !== daemon.healthPort ? await startMetricsServer(prometheus, metricsPort, options.healthHost) : undefined;
      await new Promise<void>((resolve) => {
        const check = setInterval(() => {
          if (daemon.state === 'stopped') {
            clearInterval(check);
            resolve();
          }
        }, 100);
      });
      await metrics?.close();
      await runtime.close();
      setExit(EXIT.ok);
    });
}
