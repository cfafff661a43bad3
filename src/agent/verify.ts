/**
 * `cdc-agent verify`: end-to-end reconciliation without re-sending anything. For each source it computes the
 * dataset digest (src/contract/digest.ts) of a fresh read of the source and of staging, asks the receiver for
 * its own (the optional `GET …/digest`), and compares the three bucket by bucket. A difference is named by where
 * it is: receiver ≠ staging (the receiver lost or changed rows: a resync repairs it) or staging ≠ source (the
 * source changed since the last sync: a sync repairs it). For the first differing buckets it lists sample keys.
 *
 * Memory: each digest holds two numbers per bucket; only the sampled buckets' keys are held, once, after the
 * first pass found which buckets differ. Every read streams.
 */
import type { CompiledConfig } from '../config/load.ts';
import type { SourceConfig, TenantConfig } from '../config/schema.ts';
import type { Cell, Db } from '../dialect/types.ts';
import { DEFAULT_BUCKETS, DigestBuilder, differingBuckets, hex64, keyText, type DatasetDigest } from '../contract/digest.ts';
import { encodeCell, encodeRow, type WireValue } from '../contract/wire.ts';
import { createPushClient } from '../push/client.ts';
import { ReceiverCannotVerifyError } from '../push/errors.ts';
import type { JobQueue } from '../queue-table/queue.ts';
import { describeSource } from '../snapshot/introspect.ts';
import { parseSchemaJson, schemaFingerprint, type SourceSchema } from '../snapshot/schema.ts';
import { sourceTables } from '../snapshot/source-tables.ts';
import { readState } from '../snapshot/tables.ts';
import { keyIndexes } from '../batching/change-set.ts';
import type { SourceConnections } from './connections.ts';

export type VerifyStatus = 'match' | 'differs' | 'unverifiable' | 'not-comparable' | 'busy';

export interface BucketDifference {
  bucket: number;
  rows: { source: number; staging: number; receiver: number };
  receiverVsStaging: boolean;
  stagingVsSource: boolean;
}

export interface KeySample {
  key: Record<string, WireValue>;
  problem: 'missing at the receiver' | 'only at the receiver' | 'differs at the receiver';
}

export interface SourceVerification {
  tenant: string;
  source: string;
  status: VerifyStatus;
  /** One sentence for the operator. */
  message: string;
  rows: { source: number; staging: number; receiver: number | null } | null;
  buckets: number;
  differingBuckets: number;
  /** The differing buckets, at most 20. */
  differences: BucketDifference[];
  receiverDiffersFromStaging: boolean;
  stagingDiffersFromSource: boolean;
  /** Keys that differ between the source and the receiver, from the first few differing buckets. */
  samples: KeySample[];
  /** With --repair: what was enqueued. */
  repair?: { kind: 'resync' | 'incremental'; jobId: string | null; enqueued: boolean };
}

export interface VerifyReport {
  generatedAt: string;
  sources: SourceVerification[];
}

const LISTED_BUCKETS = 20;
const SAMPLED_BUCKETS = 3;
const SAMPLES = 10;

interface Keyed {
  key: Record<string, WireValue>;
  hash: string;
}

/**
 * One streaming pass over rows of cells: their digest and, for the buckets in `keep`, each row's key and hash by
 * bucket and key text.
 */
async function digestOf(
  rows: AsyncIterable<Cell[]>,
  schema: SourceSchema,
  buckets: number,
  keep: ReadonlySet<number> = new Set(),
): Promise<{ digest: DatasetDigest; kept: Map<number, Map<string, Keyed>> }> {
  const builder = new DigestBuilder(buckets);
  const keys = keyIndexes(schema);
  const kept = new Map([...keep].map((b) => [b, new Map<string, Keyed>()]));
  for await (const cells of rows) {
    const values = keys.map((i) => encodeCell(cells[i] ?? null, schema.columns[i]!.type));
    const key = keyText(values);
    const { bucket, hash } = builder.add(key, encodeRow(cells, schema.columns));
    kept.get(bucket)?.set(key, { key: Object.fromEntries(schema.key.map((k, n) => [k, values[n] ?? null])), hash: hex64(hash) });
  }
  return { digest: builder.result(), kept };
}

function plural(n: number, what: string): string {
  return `${n.toLocaleString('en-US')} ${what}${n === 1 ? '' : 's'}`;
}

async function verifyOne(args: {
  tenant: TenantConfig;
  source: SourceConfig;
  controlDb: Db;
  sources: SourceConnections;
  queue: JobQueue;
  buckets: number;
  repair: boolean;
  maxAttempts: number;
}): Promise<SourceVerification> {
  const { tenant, source, controlDb, buckets } = args;
  const base = { tenant: tenant.id, source: source.id, buckets, differingBuckets: 0, differences: [], receiverDiffersFromStaging: false, stagingDiffersFromSource: false, samples: [] };
  const where = `${tenant.id}/${source.id}`;

  const stats = await args.queue.stats({ deadLimit: 1 });
  if (stats.running.some((j) => j.tenant === tenant.id && j.source === source.id)) {
    return { ...base, status: 'busy', rows: null, message: `a sync of ${where} is running; staging moves while it pushes. Run verify again when it has finished (\`cdc-agent status\`).` };
  }
  const state = await readState(controlDb, tenant.id, source.id);
  const recorded = state?.schema_json ? parseSchemaJson(state.schema_json) : null;
  if (!recorded) {
    return { ...base, status: 'not-comparable', rows: null, message: `${where} was never synced: nothing to verify yet (\`cdc-agent onboard --tenant ${tenant.id}\`).` };
  }
  const sourceDb = await args.sources.get(tenant.id, source.connection);
  const described = await describeSource(sourceDb, tenant.id, source);
  if (schemaFingerprint(described.schema) !== schemaFingerprint(recorded)) {
    return {
      ...base,
      status: 'not-comparable',
      rows: null,
      message: `the schema of ${where} changed since its last run, so its rows cannot be compared with staging; the next sync re-sends it in the new shape (a resync).`,
    };
  }
  const schema = recorded;
  const staging = sourceTables(tenant.id, source.id).staging;
  const client = createPushClient(tenant);
  try {
    const readSource = (keep?: ReadonlySet<number>) => digestOf(sourceDb.readCells({ sql: described.select }, schema.columns), schema, buckets, keep);
    const readStaging = () => digestOf(controlDb.readCells(staging, schema.columns), schema, buckets);
    const [fromSource, fromStaging, fromReceiver] = await Promise.all([
      readSource(),
      readStaging(),
      client.getDigest(source.id, { buckets }).catch((error: unknown) => {
        if (error instanceof ReceiverCannotVerifyError) return error;
        throw error;
      }),
    ]);
    const rows = { source: fromSource.digest.rows, staging: fromStaging.digest.rows };
    const stagingVsSource = new Set(differingBuckets(fromStaging.digest, fromSource.digest));
    if (fromReceiver instanceof ReceiverCannotVerifyError) {
      return {
        ...base,
        status: 'unverifiable',
        rows: { ...rows, receiver: null },
        stagingDiffersFromSource: stagingVsSource.size > 0,
        message: `receiver cannot verify: ${fromReceiver.message}. Staging and the source ${stagingVsSource.size === 0 ? 'agree' : `differ in ${plural(stagingVsSource.size, 'bucket')}`}.`,
      };
    }
    if (fromReceiver.buckets !== buckets || fromReceiver.counts?.length !== buckets || fromReceiver.sums?.length !== buckets) {
      throw new Error(`the receiver's digest of ${where} has ${fromReceiver.buckets} buckets (asked for ${buckets}); it does not follow the contract`);
    }
    const receiverVsStaging = new Set(differingBuckets(fromReceiver, fromStaging.digest));
    const receiverVsSource = differingBuckets(fromReceiver, fromSource.digest);
    const all = [...new Set([...receiverVsStaging, ...stagingVsSource])].sort((a, b) => a - b);
    const differences: BucketDifference[] = all.slice(0, LISTED_BUCKETS).map((bucket) => ({
      bucket,
      rows: { source: fromSource.digest.counts[bucket]!, staging: fromStaging.digest.counts[bucket]!, receiver: fromReceiver.counts[bucket]! },
      receiverVsStaging: receiverVsStaging.has(bucket),
      stagingVsSource: stagingVsSource.has(bucket),
    }));
    const withRows = { ...rows, receiver: fromReceiver.rows };
    if (all.length === 0) {
      return { ...base, status: 'match', rows: withRows, message: `matches: ${plural(rows.source, 'row')}; the source, staging and the receiver agree in all ${buckets} buckets.` };
    }

    // Sample keys where the receiver differs from the source: a second read of the source keeps only those buckets.
    const sampled = receiverVsSource.slice(0, SAMPLED_BUCKETS);
    const samples: KeySample[] = [];
    if (sampled.length > 0) {
      const { kept } = await readSource(new Set(sampled));
      for (const bucket of sampled) {
        const listed = await client.getDigest(source.id, { buckets, bucket });
        const atReceiver = new Map((listed.keys ?? []).map((k) => [keyText(schema.key.map((name) => k.key[name] ?? null)), k]));
        for (const [key, row] of kept.get(bucket) ?? []) {
          const there = atReceiver.get(key);
          if (!there) samples.push({ key: row.key, problem: 'missing at the receiver' });
          else if (there.hash !== row.hash) samples.push({ key: row.key, problem: 'differs at the receiver' });
          atReceiver.delete(key);
        }
        for (const extra of atReceiver.values()) samples.push({ key: extra.key, problem: 'only at the receiver' });
      }
    }
    const where2 = [receiverVsStaging.size > 0 ? `receiver ≠ staging in ${plural(receiverVsStaging.size, 'bucket')}` : '', stagingVsSource.size > 0 ? `staging ≠ source in ${plural(stagingVsSource.size, 'bucket')}` : '']
      .filter(Boolean)
      .join(', ');
    const fix = receiverVsStaging.size > 0 ? `\`cdc-agent resync --tenant ${tenant.id} --source ${source.id}\` re-sends it` : `\`cdc-agent sync --tenant ${tenant.id} --source ${source.id}\` pushes the source's changes`;
    const result: SourceVerification = {
      ...base,
      status: 'differs',
      rows: withRows,
      differingBuckets: all.length,
      differences,
      receiverDiffersFromStaging: receiverVsStaging.size > 0,
      stagingDiffersFromSource: stagingVsSource.size > 0,
      samples: samples.slice(0, SAMPLES),
      message:
        `DIFFERS: the source has ${plural(rows.source, 'row')}, staging ${plural(rows.staging, 'row')}, the receiver ${plural(fromReceiver.rows, 'row')}; ` +
        `${plural(all.length, 'bucket')} of ${buckets} differ (${where2}). ${fix}${args.repair ? '' : ' (or `verify --repair`)'}.`,
    };
    if (args.repair) {
      const kind = receiverVsStaging.size > 0 ? ('resync' as const) : ('incremental' as const);
      const queued = await args.queue.enqueue({ tenant: tenant.id, source: source.id, kind, maxAttempts: args.maxAttempts });
      result.repair = { kind, jobId: queued.jobId ?? queued.existingJobId ?? null, enqueued: queued.enqueued };
    }
    return result;
  } finally {
    client.close();
  }
}

export async function verifyTenant(args: {
  config: CompiledConfig;
  controlDb: Db;
  queue: JobQueue;
  sources: SourceConnections;
  tenant: string;
  source?: string;
  buckets?: number;
  repair?: boolean;
}): Promise<VerifyReport> {
  const tenant = args.config.tenants.find((t) => t.id === args.tenant)!;
  const chosen = args.source ? tenant.sources.filter((s) => s.id === args.source) : tenant.sources;
  const out: SourceVerification[] = [];
  for (const source of chosen) {
    out.push(
      await verifyOne({
        tenant,
        source,
        controlDb: args.controlDb,
        sources: args.sources,
        queue: args.queue,
        buckets: args.buckets ?? DEFAULT_BUCKETS,
        repair: args.repair === true,
        maxAttempts: args.config.worker.maxAttempts,
      }),
    );
  }
  return { generatedAt: new Date().toISOString(), sources: out };
}
