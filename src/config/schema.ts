/**
 * The configuration file's shape (docs/design.md §3). Parsed once into a compiled config with every default
 * filled and durations in milliseconds; nothing downstream sees raw input.
 */
import { validate as validateCron } from 'node-cron';
import { z } from 'zod';
import { cronProblem } from './cron.ts';
import { parseDurationMs } from './duration.ts';

const SECRET_REF = /^secret:\/\/[A-Za-z0-9][A-Za-z0-9._-]{0,126}$/;
const ID = /^[a-z0-9][a-z0-9_-]{0,62}$/;

/** A string that may be a literal or a `secret://NAME` reference. */
const secretable = z
  .string()
  .min(1)
  .refine((v) => !v.startsWith('secret://') || SECRET_REF.test(v), {
    message: 'secret references look like secret://NAME (letters, digits, dot, dash, underscore)',
  });

const duration = z.union([z.string(), z.number()]).transform((v, ctx) => {
  const ms = parseDurationMs(v);
  if (ms === undefined) {
    ctx.addIssue({ code: 'custom', message: `"${v}" is not a duration (use 500ms, 30s, 15m, 2h, 1d)` });
    return z.NEVER;
  }
  return ms;
});

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;
/** A table, column or key name: anything printable (legacy schemas have spaces), never a control character. */
const identifier = z
  .string()
  .min(1)
  .refine((name) => !CONTROL.test(name), { message: 'contains a control character; rename it at the source or use a query source' });

const id = (what: string) =>
  z.string().regex(ID, `${what} ids are 1-63 lower-case letters, digits, "_" or "-", starting with a letter or digit`);

const postgresConnection = z.strictObject({
  dialect: z.literal('postgres'),
  url: secretable.optional(),
  host: z.string().optional(),
  port: z.number().int().positive().optional(),
  database: z.string().optional(),
  user: z.string().optional(),
  password: secretable.optional(),
  ssl: z
    .union([z.boolean(), z.strictObject({ rejectUnauthorized: z.boolean().default(true), ca: secretable.optional() })])
    .optional(),
  poolMax: z.number().int().positive().default(10),
  statementTimeout: duration.optional(),
});

/**
 * Logins other than a SQL login, in tedious' terms: a Windows (domain) account over NTLM, or Entra ID (Azure SQL):
 * DefaultAzureCredential (workload identity in AKS), a VM's managed identity, or a service principal's secret.
 */
const mssqlAuthentication = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('ntlm'), domain: z.string().min(1), user: z.string().min(1), password: secretable }),
  z.strictObject({ type: z.literal('azure-active-directory-default'), clientId: z.string().min(1).optional() }),
  z.strictObject({ type: z.literal('azure-active-directory-msi-vm'), clientId: z.string().min(1).optional() }),
  z.strictObject({ type: z.literal('azure-active-directory-service-principal-secret'), clientId: z.string().min(1), tenantId: z.string().min(1), clientSecret: secretable }),
]);

/** The TDS packet sizes a login may ask for (bytes; the protocol's bounds). */
export const TDS_PACKET_SIZE = { min: 512, max: 32_767 } as const;

const mssqlConnection = z.strictObject({
  dialect: z.literal('mssql'),
  /** Instead of user and password (a SQL login). */
  authentication: mssqlAuthentication.optional(),
  url: secretable.optional(),
  host: z.string().optional(),
  port: z.number().int().positive().optional(),
  instanceName: z.string().optional(),
  database: z.string().optional(),
  user: z.string().optional(),
  password: secretable.optional(),
  /** TLS is on unless an operator turns it off (docs/design.md §2). */
  encrypt: z.boolean().default(true),
  trustServerCertificate: z.boolean().default(false),
  poolMax: z.number().int().positive().default(10),
  connectTimeout: duration.default(15_000),
  requestTimeout: duration.default(0),
  /**
   * The TDS packet size asked for at login (512–32,767 bytes; the server may answer with a smaller one). Larger
   * packets cut the client's per-packet work on bulk reads. Unset: 16,383 (src/dialect/mssql.ts).
   */
  packetSize: z.number().int().min(TDS_PACKET_SIZE.min).max(TDS_PACKET_SIZE.max).optional(),
});

export const connectionSchema = z
  .discriminatedUnion('dialect', [postgresConnection, mssqlConnection])
  .superRefine((c, ctx) => {
    if (c.url === undefined && c.host === undefined) {
      ctx.addIssue({ code: 'custom', path: ['host'], message: 'give either url or host (with database, user, password)' });
    }
    if (c.dialect === 'mssql' && c.authentication !== undefined && (c.user !== undefined || c.password !== undefined)) {
      ctx.addIssue({ code: 'custom', path: ['authentication'], message: `give either user and password (a SQL login) or authentication (${c.authentication.type}), not both` });
    }
  });

const sourceSchema = z
  .strictObject({
    id: id('source'),
    connection: z.string().min(1),
    table: identifier.optional(),
    query: z.string().min(1).optional(),
    key: z.array(identifier).min(1).optional(),
    columns: z
      .strictObject({ include: z.array(identifier).optional(), exclude: z.array(identifier).optional() })
      .default({}),
    schedule: z
      .string()
      .superRefine((expr, ctx) => {
        const problem = validateCron(expr) ? cronProblem(expr) : 'is not a cron expression node-cron can read';
        if (problem) ctx.addIssue({ code: 'custom', message: `not a valid cron expression: "${expr}" ${problem}` });
      })
      .optional(),
    every: duration.optional(),
    jitter: duration.default(0),
    batch: z
      .strictObject({
        maxRows: z.number().int().positive().default(5_000),
        maxBytes: z.number().int().positive().default(4 * 1024 * 1024),
      })
      .default({ maxRows: 5_000, maxBytes: 4 * 1024 * 1024 }),
    onSchemaChange: z.enum(['resync', 'fail']).default('resync'),
    // What follows a run the receiver reports as not reconciled (docs/data-push-api.md): enqueue a resync (at
    // most one per source per mismatchResyncEvery, so the two sides cannot loop), or only alert.
    onMismatch: z.enum(['resync', 'alert']).default('resync'),
    mismatchResyncEvery: duration.default(60 * 60_000),
    maxDeletePercent: z.number().min(0).max(100).default(50),
    // Watermark mode (docs/watermark.md): read only rows past the last committed watermark, look for deletes
    // by reading keys only every keyDiffEvery, and prove it all with a full diff every fullDiffEvery.
    watermark: z
      .strictObject({
        column: identifier,
        keyDiffEvery: duration.default(60 * 60_000),
        fullDiffEvery: duration.default(24 * 60 * 60_000),
        // Datetime watermarks only: how far back each read starts, for clocks that are not monotonic and for
        // long transactions whose rows carry a time before their commit.
        overlap: duration.optional(),
        // A nullable watermark column must say how its NULLs are treated: read at every watermark run, or
        // left to the full diff (fullDiffOnly).
        nulls: z.enum(['read', 'fullDiffOnly']).optional(),
      })
      .optional(),
  })
  .superRefine((s, ctx) => {
    if ((s.table === undefined) === (s.query === undefined)) {
      ctx.addIssue({ code: 'custom', path: ['table'], message: 'give exactly one of table or query' });
    }
    if (s.query !== undefined && s.key === undefined) {
      ctx.addIssue({ code: 'custom', path: ['key'], message: 'Required (a query source must name its key columns)' });
    }
    if (s.watermark && s.watermark.keyDiffEvery > s.watermark.fullDiffEvery) {
      ctx.addIssue({ code: 'custom', path: ['watermark', 'keyDiffEvery'], message: 'must not be longer than fullDiffEvery (a full diff also finds deletes)' });
    }
    if (s.schedule !== undefined && s.every !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['every'], message: 'give either schedule (cron) or every, not both' });
    }
  });

const tenantSchema = z
  .strictObject({
    id: id('tenant'),
    push: z.strictObject({
      url: z.url({ protocol: /^https?$/ }),
      token: secretable.optional(),
      apiKey: secretable.optional(),
      apiKeyHeader: z.string().default('X-Api-Key'),
      maxInFlight: z.number().int().positive().max(64).default(4),
      timeout: duration.default(30_000),
      gzipAboveBytes: z.number().int().nonnegative().default(64 * 1024),
      // zlib level 1–9. 1 is ≈ 3× faster than zlib's default 6 for ≈ 20 % more bytes (docs/benchmarks.md); raise
      // it where the uplink, not the agent's CPU, is the limit.
      gzipLevel: z.number().int().min(1).max(9).default(1),
    }),
    connections: z.record(z.string().regex(/^[A-Za-z0-9_-]{1,63}$/), connectionSchema),
    sources: z.array(sourceSchema).min(1),
  });

export const configSchema = z
  .strictObject({
    control: connectionSchema,
    keyVault: z.strictObject({ url: z.url(), cacheTtl: duration.default(300_000) }).optional(),
    secrets: z.strictObject({ dirs: z.array(z.string().min(1)).default([]) }).default({ dirs: [] }),
    telemetry: z
      .strictObject({
        logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
        appInsights: secretable.optional(),
        prometheus: z.strictObject({ port: z.number().int().min(0).max(65535).default(9464) }).optional(),
        roleName: z.string().default('cdc-sync-agent'),
      })
      .default({ logLevel: 'info', roleName: 'cdc-sync-agent' }),
    worker: z
      .strictObject({
        concurrency: z.number().int().positive().max(64).default(2),
        leaseSeconds: z.number().int().min(5).max(3600).default(60),
        maxAttempts: z.number().int().positive().default(8),
        drainGraceSeconds: z.number().int().min(0).default(30),
        pollInterval: duration.default(1_000),
        healthPort: z.number().int().min(0).max(65535).default(8080),
      })
      .default({ concurrency: 2, leaseSeconds: 60, maxAttempts: 8, drainGraceSeconds: 30, pollInterval: 1_000, healthPort: 8080 }),
    tenants: z.array(tenantSchema).default([]),
  });

export type RawConfig = z.input<typeof configSchema>;
export type ParsedConfig = z.output<typeof configSchema>;
export type ConnectionConfig = z.output<typeof connectionSchema>;
export type PostgresConnectionConfig = Extract<ConnectionConfig, { dialect: 'postgres' }>;
export type MssqlConnectionConfig = Extract<ConnectionConfig, { dialect: 'mssql' }>;
export type TenantConfig = ParsedConfig['tenants'][number];
export type SourceConfig = TenantConfig['sources'][number];

export interface CrossProblem {
  path: PropertyKey[];
  message: string;
}

function records(value: unknown): Array<Record<string, unknown>> {
  return Array.isArray(value) ? value.map((v) => (v !== null && typeof v === 'object' ? (v as Record<string, unknown>) : {})) : [];
}

/**
 * Checks that span several settings (unique ids, references between sections). They run on the raw
 * document even when other settings are invalid, so that every problem is reported at once.
 */
export function crossCheck(raw: unknown): CrossProblem[] {
  const problems: CrossProblem[] = [];
  const root = raw !== null && typeof raw === 'object' ? (raw as Record<string, unknown>) : {};
  const tenantIds = new Set<unknown>();
  records(root.tenants).forEach((tenant, t) => {
    if (tenantIds.has(tenant.id)) problems.push({ path: ['tenants', t, 'id'], message: `duplicate tenant id "${String(tenant.id)}"` });
    tenantIds.add(tenant.id);
    const connections = tenant.connections !== null && typeof tenant.connections === 'object' ? Object.keys(tenant.connections) : [];
    const sourceIds = new Set<unknown>();
    records(tenant.sources).forEach((source, s) => {
      if (sourceIds.has(source.id)) problems.push({ path: ['tenants', t, 'sources', s, 'id'], message: `duplicate source id "${String(source.id)}"` });
      sourceIds.add(source.id);
      if (typeof source.connection === 'string' && !connections.includes(source.connection)) {
        problems.push({
          path: ['tenants', t, 'sources', s, 'connection'],
          message: `unknown connection "${source.connection}" (tenant's connections: ${connections.join(', ') || 'none'})`,
        });
      }
    });
  });
  return problems;
}
