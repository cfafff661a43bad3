/**
 * Per-source schedules (cron or interval). Every replica ticks; the database decides which tick enqueues,
 * through a unique slot key per (tenant, source, slot), and coalesces a tick for a source whose previous run
 * is unfinished (docs/design.md §4).
 */
import { createHash } from 'node:crypto';
import cron, { type ScheduledTask } from 'node-cron';
import type { CompiledConfig } from '../config/load.ts';
import type { SourceConfig } from '../config/schema.ts';
import type { JobQueue } from '../queue-table/queue.ts';
import type { Logger } from '../telemetry/logger.ts';

/** The slot an interval schedule is in at `now`: slots are aligned to the epoch so every replica agrees. */
export function intervalSlot(everyMs: number, now: Date): Date {
  return new Date(Math.floor(now.getTime() / everyMs) * everyMs);
}

/** Deterministic jitter for a slot, identical on every replica. */
export function slotJitterMs(tenant: string, source: string, slot: string, maxJitterMs: number): number {
  if (maxJitterMs <= 0) return 0;
  const digest = createHash('sha256').update(`${tenant}\u0000${source}\u0000${slot}`).digest();
  return digest.readUInt32BE(0) % (maxJitterMs + 1);
}

export class Scheduler {
  private readonly tasks: ScheduledTask[] = [];
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly config: CompiledConfig;
  private readonly queue: JobQueue;
  private readonly log: Logger;
  private readonly maxAttempts: number;

  constructor(config: CompiledConfig, queue: JobQueue, log: Logger) {
    this.config = config;
    this.queue = queue;
    this.log = log.child({ component: 'scheduler' });
    this.maxAttempts = config.worker.maxAttempts;
  }

  start(): void {
    for (const tenant of this.config.tenants) {
      for (const source of tenant.sources) {
        if (source.schedule) {
          const task = cron.schedule(source.schedule, (ctx) => {
            const at = ctx?.date ?? new Date();
            const slot = new Date(Math.floor(at.getTime() / 60_000) * 60_000).toISOString();
            void this.tick(tenant.id, source, `cron:${slot}`, new Date(slot));
          });
          this.tasks.push(task);
        } else if (source.every) {
          const every = source.every;
          const fire = () => {
            const slot = intervalSlot(every, new Date());
            void this.tick(tenant.id, source, `every:${every}:${slot.toISOString()}`, slot);
          };
          // Tick at each slot boundary, and once at start so a replica that was down catches up.
          fire();
          const untilNext = every - (Date.now() % every);
          const first = setTimeout(() => {
            fire();
            this.timers.push(setInterval(fire, every));
          }, untilNext);
          this.timers.push(first);
        }
      }
    }
  }

  async tick(tenant: string, source: SourceConfig, slotKey: string, slotStart: Date): Promise<void> {
    const runAfter = new Date(slotStart.getTime() + slotJitterMs(tenant, source.id, slotKey, source.jitter));
    try {
      const result = await this.queue.enqueue({ tenant, source: source.id, kind: 'incremental', slotKey, runAfter, maxAttempts: this.maxAttempts });
      if (result.enqueued) this.log.info({ tenant, source: source.id, slotKey, jobId: result.jobId }, 'scheduled sync enqueued');
      else this.log.debug({ tenant, source: source.id, slotKey, reason: result.reason }, 'scheduled sync not enqueued');
    } catch (error) {
      this.log.warn({ tenant, source: source.id, err: error }, 'could not enqueue scheduled sync; the next tick retries');
    }
  }

  stop(): void {
    for (const task of this.tasks) void task.stop();
    for (const timer of this.timers) clearTimeout(timer);
    this.tasks.length = 0;
    this.timers.length = 0;
  }
}
