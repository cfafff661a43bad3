/**
 * The shape of a data source as the agent carries it: portable columns and the key. Its fingerprint,
 * kept in cdc_source_state, is how a run notices schema drift (docs/design.md §8).
 */
import { createHash } from 'node:crypto';
import type { ColumnSpec, ColumnType } from '../dialect/types.ts';

export interface SourceSchema {
  columns: ColumnSpec[];
  key: string[];
}

function sortedKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortedKeys);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(
      Object.keys(value)
        .sort()
        .map((k) => [k, sortedKeys((value as Record<string, unknown>)[k])]),
    );
  }
  return value;
}

/** JSON with object keys sorted at every level; column and key order are kept (they are part of the shape). */
export function canonicalSchemaJson(schema: SourceSchema): string {
  return JSON.stringify(
    sortedKeys({
      columns: schema.columns.map((c) => ({ name: c.name, type: c.type, nullable: c.nullable })),
      key: schema.key,
    }),
  );
}

export function schemaFingerprint(schema: SourceSchema): string {
  return createHash('sha256').update(canonicalSchemaJson(schema)).digest('hex');
}

export function parseSchemaJson(text: string): SourceSchema {
  const parsed = JSON.parse(text) as SourceSchema;
  if (!Array.isArray(parsed.columns) || !Array.isArray(parsed.key)) throw new Error('schema_json is not a SourceSchema');
  return parsed;
}

/** `varchar(20)`-like rendering of a portable type, for messages. */
export function describeType(type: ColumnType): string {
  switch (type.kind) {
    case 'decimal':
      return `decimal(${type.precision},${type.scale})`;
    case 'string':
    case 'binary':
      return `${type.kind}(${type.maxLength ?? 'max'})`;
    case 'time':
    case 'timestamp':
    case 'timestamptz':
      return `${type.kind}(${type.precision})`;
    default:
      return type.kind;
  }
}

function sameType(a: ColumnType, b: ColumnType): boolean {
  return JSON.stringify(sortedKeys(a)) === JSON.stringify(sortedKeys(b));
}

/** What changed between two shapes, one human sentence per change; empty when they are the same. */
export function describeDrift(before: SourceSchema, after: SourceSchema): string[] {
  const changes: string[] = [];
  const old = new Map(before.columns.map((c) => [c.name, c]));
  const now = new Map(after.columns.map((c) => [c.name, c]));
  for (const c of after.columns) {
    const was = old.get(c.name);
    if (!was) changes.push(`column ${JSON.stringify(c.name)} added (${describeType(c.type)})`);
    else {
      if (!sameType(was.type, c.type)) changes.push(`column ${JSON.stringify(c.name)} retyped from ${describeType(was.type)} to ${describeType(c.type)}`);
      if (was.nullable !== c.nullable) changes.push(`column ${JSON.stringify(c.name)} became ${c.nullable ? 'nullable' : 'NOT NULL'}`);
    }
  }
  for (const c of before.columns) if (!now.has(c.name)) changes.push(`column ${JSON.stringify(c.name)} removed`);
  if (JSON.stringify(before.key) !== JSON.stringify(after.key)) {
    changes.push(`key changed from (${before.key.join(', ')}) to (${after.key.join(', ')})`);
  }
  if (changes.length === 0 && canonicalSchemaJson(before) !== canonicalSchemaJson(after)) changes.push('column order changed');
  return changes;
}
