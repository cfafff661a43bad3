/**
 * `npm run bench -- queue [--jobs 10000] [--batch 10] [--tenants 20]`: claims per second on PostgreSQL with 1 and
 * 8 claimers, each on its own connection, over a backlog of queued jobs; then the same with every claimed
 * job completed (a worker's real round trips). Asserts zero double claims and that every job was claimed.
 */
import { parseArgs } from 'node:util';
import { PostgresDb } from '../src/dialect/postgres.ts';
import { migrate } from '../src/migrations/migrate.ts';
import { createJobQueue } from '../src/queue-table/queue.ts';
import { benchDatabase, report } from './support.ts';

interface Round {
  claimers: number;
  complete: boolean;
}

export async function run(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: { jobs: { type: 'string', default: '10000' }, batch: { type: 'string', default: '10' }, tenants: { type: 'string', default: '20' } },
  });
  const jobs = Number(values.jobs);
  const batch = Number(values.batch);
  const tenants = Number(values.tenants);
  const server = await benchDatabase('queue');
  const admin = new PostgresDb({ connectionString: server.url, max: 2 });
  try {
    await migrate(admin);
    const rounds: Round[] = [
      { claimers: 1, complete: false },
      { claimers: 8, complete: false },
      { claimers: 1, complete: true },
      { claimers: 8, complete: true },
    ];
    const rows: Array<Record<string, string | number>> = [];
    for (const round of rounds) {
      await admin.execute('TRUNCATE cdc_jobs');
      // The backlog is set up in one statement: what is measured is the claim, not the enqueue.
      await admin.execute(
        `INSERT INTO cdc_jobs (tenant_id, source_id, kind, run_after)
         SELECT 't' || (i % $2), 's' || i, 'incremental', now() - interval '1 minute' FROM generate_series(1, $1) AS i`,
        [jobs, tenants],
      );
      await admin.execute('ANALYZE cdc_jobs');

      const dbs = Array.from({ length: round.claimers }, () => new PostgresDb({ connectionString: server.url, max: 1 }));
      const seen = new Map<string, number>();
      let statements = 0;
      const started = process.hrtime.bigint();
      await Promise.all(
        dbs.map(async (db, w) => {
          const queue = createJobQueue(db);
          let empty = 0;
          while (empty < 2) {
            const claimed = await queue.claim(`bench-${w}`, batch, 60_000);
            statements++;
            if (claimed.length === 0) {
              empty++;
              continue;
            }
            empty = 0;
            for (const job of claimed) {
              seen.set(job.id, (seen.get(job.id) ?? 0) + 1);
              if (round.complete) await queue.complete(job);
            }
          }
        }),
      );
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      await Promise.all(dbs.map((db) => db.close()));

      const doubles = [...seen.values()].filter((n) => n > 1).length;
      if (doubles > 0) throw new Error(`${doubles} jobs were claimed more than once`);
      if (seen.size !== jobs) throw new Error(`${jobs - seen.size} of ${jobs} jobs were never claimed`);
      rows.push({
        claimers: round.claimers,
        'jobs per claim': batch,
        'complete each job': round.complete ? 'yes' : 'no',
        jobs,
        tenants,
        seconds: Math.round(seconds * 100) / 100,
        'claims/s': Math.round(jobs / seconds),
        'claim statements': statements,
        'double claims': doubles,
      });
    }
    await report('queue', rows);
  } finally {
    await admin.close();
    await server.close();
  }
}
