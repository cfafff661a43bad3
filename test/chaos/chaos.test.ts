/**
 * I7 under fire: a few chaos iterations on every `npm test` (CDC_CHAOS_ITERATIONS, default 2); the long run is
 * `npm run test:chaos` (bench/chaos.ts), which runs this same file with more iterations and a JSON report.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { formatSummary, runChaos } from './chaos.ts';

const iterations = Number(process.env.CDC_CHAOS_ITERATIONS ?? 2);
const seed = process.env.CDC_CHAOS_SEED ? Number(process.env.CDC_CHAOS_SEED) : undefined;
const report = process.env.CDC_CHAOS_REPORT;

describe('chaos [postgres → postgres]', () => {
  it(
    `${iterations} iteration(s) of kill -9, terminated control/source connections, receiver faults and random source changes all converge, with no batch applied twice`,
    async () => {
      const summary = await runChaos({
        iterations,
        ...(seed !== undefined ? { seed } : {}),
        onIteration: (r) => {
          if (report) console.log(`iteration ${r.iteration}: ${r.converged ? 'converged' : `NOT converged ${JSON.stringify(r)}`} in ${(r.ms / 1000).toFixed(1)} s`);
        },
      });
      console.log(formatSummary(summary));
      if (report) {
        await mkdir(path.dirname(report), { recursive: true });
        await writeFile(report, `${JSON.stringify(summary, null, 2)}\n`);
      }
      expect(summary.results.filter((r) => !r.converged)).toEqual([]);
      expect(summary).toMatchObject({ iterations, converged: iterations, convergenceRate: 1, rowsLost: 0, doubleApplied: 0 });
      // the faults really happened: every iteration killed an agent and cut the agents' control connections
      expect(summary.faults.agentKill9).toBe(iterations);
      expect(summary.faults.controlConnectionsTerminated).toBeGreaterThanOrEqual(iterations);
      expect(summary.faults.receiver500 + summary.faults.receiver429 + summary.faults.receiverResetBeforeApply + summary.faults.receiverResetAfterApply).toBeGreaterThan(0);
    },
    120_000 + iterations * 120_000,
  );
});
