/** Shared set-up for push tests: control tables in the contract's shape, tenant configs, and the OpenAPI check. */
import { readFileSync } from 'node:fs';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { parse } from 'yaml';
import type { SourceConfig, TenantConfig } from '../../src/config/schema.ts';
import type { Cell, ColumnSpec, Db } from '../../src/dialect/types.ts';
import { encodeCell } from '../../src/contract/wire.ts';
import { migrate } from '../../src/migrations/migrate.ts';
import type { ObservedRequest } from '../../src/receiver/server.ts';
import type { SourceSchema } from '../../src/snapshot/schema.ts';
import { sourceTables } from '../../src/snapshot/source-tables.ts';
import { createChangesSql, createStagingSql } from '../../src/snapshot/tables.ts';

export const SCHEMA: SourceSchema = {
  columns: [
    { name: 'id', type: { kind: 'int64' }, nullable: false },
    { name: 'name', type: { kind: 'string', maxLength: 100 }, nullable: true },
    { name: 'amount', type: { kind: 'decimal', precision: 18, scale: 4 }, nullable: true },
    { name: 'at', type: { kind: 'timestamp', precision: 6 }, nullable: true },
    { name: 'blob', type: { kind: 'binary', maxLength: null }, nullable: true },
    { name: 'guid', type: { kind: 'uuid' }, nullable: true },
  ],
  key: ['id'],
};

/** Source row i, deterministic. */
export function sourceRow(i: number, version = 0): Cell[] {
  const micro = String((i * 7919 + version) % 1_000_000).padStart(6, '0');
  return [
    BigInt(i),
    i % 13 === 0 ? null : `name ${i} v${version} ${'x'.repeat(i % 40)}`,
    `${i * 3 + version}.${String(i % 10_000).padStart(4, '0')}`,
    `2024-01-${String(1 + (i % 28)).padStart(2, '0')}T12:34:56.${micro}`,
    i % 5 === 0 ? null : Buffer.from([i & 0xff, (i >> 8) & 0xff, 0, version & 0xff]),
    `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
  ];
}

const SEQ: ColumnSpec = { name: 'seq', type: { kind: 'int64' }, nullable: false };
const OP: ColumnSpec = { name: 'op', type: { kind: 'string', maxLength: 1 }, nullable: false };

/** Staging and change tables of a source, in the shape the snapshot/diff stage creates them. */
export async function createSourceTables(db: Db, tenant: string, source: string, schema: SourceSchema = SCHEMA): Promise<void> {
  const t = sourceTables(tenant, source);
  await db.execute(createStagingSql(db, t.staging, schema));
  await db.execute(createChangesSql(db, t.changes, schema));
}

/** Fill the change table: upserts of rows `upserts` then deletes of keys `deletes`, seq in key order. */
export async function fillChanges(db: Db, tenant: string, source: string, changes: Array<{ op: 'U' | 'D'; row: Cell[] }>, schema: SourceSchema = SCHEMA): Promise<void> {
  const t = sourceTables(tenant, source);
  await db.execute(`DELETE FROM ${db.table(t.changes)}`);
  const sorted = [...changes].sort((a, b) => (a.row[0]! < b.row[0]! ? -1 : a.row[0]! > b.row[0]! ? 1 : 0));
  const keyIdx = new Set(schema.key.map((k) => schema.columns.findIndex((c) => c.name === k)));
  await db.bulkWrite(
    t.changes,
    [SEQ, OP, ...schema.columns],
    sorted.map((c, i) => [BigInt(i + 1), c.op, ...c.row.map((cell, j) => (c.op === 'D' && !keyIdx.has(j) ? null : cell))]),
  );
}

export async function setUpControl(db: Db): Promise<void> {
  await migrate(db);
}

export function tenantConfig(id: string, url: string, push: Partial<TenantConfig['push']> = {}): TenantConfig {
  return {
    id,
    push: { url, token: `token-${id}`, apiKeyHeader: 'X-Api-Key', maxInFlight: 4, timeout: 10_000, gzipAboveBytes: 16 * 1024, gzipLevel: 1, ...push },
    connections: { legacy: { dialect: 'postgres', url: 'postgres://unused', poolMax: 1 } },
    sources: [sourceConfig('orders')],
  } as TenantConfig;
}

export function sourceConfig(id: string): SourceConfig {
  return {
    id,
    connection: 'legacy',
    table: 'dbo.Orders',
    key: ['id'],
    columns: {},
    jitter: 0,
    batch: { maxRows: 1_000, maxBytes: 256 * 1024 },
    onSchemaChange: 'resync',
    maxDeletePercent: 50,
  } as SourceConfig;
}

/** Rows as the receiver's NDJSON lines: the contract encoding. */
export function asLines(rows: Cell[][], schema: SourceSchema = SCHEMA): string[] {
  return rows.map((r) => JSON.stringify(Object.fromEntries(schema.columns.map((c, i) => [c.name, encodeCell(r[i] ?? null, c.type)]))));
}

/** Staging rows, encoded as the receiver holds them, in key order. */
export async function stagingRows(db: Db, tenant: string, source: string, schema: SourceSchema = SCHEMA): Promise<Cell[][]> {
  const out: Cell[][] = [];
  for await (const row of db.readCells(sourceTables(tenant, source).staging, schema.columns, { orderBy: schema.key })) out.push(row);
  return out;
}

/** Validates observed requests against docs/openapi.yaml: path, headers, body. Returns the problems. */
export function contractValidator(): (request: ObservedRequest) => string[] {
  const doc = parse(readFileSync(new URL('../../docs/openapi.yaml', import.meta.url), 'utf8')) as {
    paths: Record<string, Record<string, { parameters: Array<{ $ref?: string; name?: string; in?: string; required?: boolean; schema?: unknown }>; requestBody: { content: Record<string, { schema: unknown }> } }>>;
    components: { parameters: Record<string, { name: string; in: string; required?: boolean; schema: unknown }> };
  };
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  addFormats.default(ajv);
  ajv.addSchema({ $id: 'openapi.yaml', ...doc } as object);
  // The agent only POSTs (the digest GET is the receiver's optional read side, checked in test/contract).
  const routes = Object.entries(doc.paths).flatMap(([template, ops]) => (ops.post ? [[template, ops.post] as const] : [])).map(([template, op]) => {
    const names: string[] = [];
    const regex = new RegExp(`^${template.replace(/\{(\w+)\}/g, (_, name: string) => (names.push(name), '([^/]+)'))}$`);
    const pointer = `/paths/${template.replaceAll('~', '~0').replaceAll('/', '~1')}/post`;
    const check = op.parameters.map((p, i) => {
      const param = p.$ref ? doc.components.parameters[p.$ref.split('/').pop()!]! : (p as { name: string; in: string; required?: boolean });
      const at = p.$ref ? p.$ref.slice(1) : `${pointer}/parameters/${i}`;
      return { ...param, validate: ajv.compile({ $ref: `openapi.yaml#${at}/schema` }) };
    });
    const body = ajv.compile({ $ref: `openapi.yaml#${pointer}/requestBody/content/application~1json/schema` });
    return { template, regex, names, check, body };
  });
  return (request) => {
    const path = request.url.split('?')[0]!;
    const route = routes.find((r) => r.regex.test(path));
    if (!route || request.method !== 'POST') return [`${request.method} ${path} is not an operation in openapi.yaml`];
    const problems: string[] = [];
    const m = route.regex.exec(path)!;
    for (const p of route.check) {
      const value = p.in === 'path' ? decodeURIComponent(m[route.names.indexOf(p.name) + 1]!) : request.headers[p.name.toLowerCase()];
      if (value === undefined) {
        if (p.required) problems.push(`${p.in} parameter ${p.name} missing`);
        continue;
      }
      if (!p.validate(value)) problems.push(`${p.in} parameter ${p.name}=${JSON.stringify(value)}: ${ajv.errorsText(p.validate.errors)}`);
    }
    if (!request.headers.authorization && !request.headers['x-api-key']) problems.push('no credentials');
    if (String(request.headers['content-type']).split(';')[0] !== 'application/json') problems.push(`content-type ${request.headers['content-type']}`);
    if (!route.body(request.body)) problems.push(`body: ${ajv.errorsText(route.body.errors)}`);
    return problems;
  };
}
