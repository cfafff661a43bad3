/**
 * Identifiers from configuration are validated and quoted, never interpolated raw (docs/design.md §2).
 * Anything printable is allowed, because legacy schemas have spaces and brackets in names; control
 * characters and over-long names are rejected rather than silently truncated by the server.
 */
import { IdentifierError } from '../errors/errors.ts';
import type { DialectName, QualifiedName } from './types.ts';

/** PostgreSQL keeps 63 bytes (NAMEDATALEN - 1); SQL Server's sysname is 128 characters. */
export const MAX_IDENTIFIER = { postgres: 63, mssql: 128 } as const;

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;

export function validateIdentifier(name: string, dialect: DialectName): string {
  if (typeof name !== 'string' || name.length === 0) throw new IdentifierError('An identifier must not be empty.');
  if (CONTROL.test(name)) {
    throw new IdentifierError(`Identifier ${JSON.stringify(name)} contains a control character; rename it or use a query source.`);
  }
  if (name !== name.normalize('NFC') && dialect === 'postgres') {
    // Two spellings of one visible name would be two different PostgreSQL identifiers.
    throw new IdentifierError(`Identifier ${JSON.stringify(name)} is not in Unicode NFC form.`);
  }
  const length = dialect === 'postgres' ? Buffer.byteLength(name, 'utf8') : [...name].length;
  const max = MAX_IDENTIFIER[dialect];
  if (length > max) {
    throw new IdentifierError(
      `Identifier ${JSON.stringify(name.slice(0, 40))}… is ${length} ${dialect === 'postgres' ? 'bytes' : 'characters'} long; ${dialect} keeps at most ${max}.`,
    );
  }
  return name;
}

export function quotePostgres(name: string): string {
  return `"${validateIdentifier(name, 'postgres').replaceAll('"', '""')}"`;
}

export function quoteMssql(name: string): string {
  return `[${validateIdentifier(name, 'mssql').replaceAll(']', ']]')}]`;
}

export function quoteIdentifier(dialect: DialectName, name: string): string {
  return dialect === 'postgres' ? quotePostgres(name) : quoteMssql(name);
}

export function quoteQualified(dialect: DialectName, name: QualifiedName): string {
  const quoted = quoteIdentifier(dialect, name.name);
  return name.schema === undefined ? quoted : `${quoteIdentifier(dialect, name.schema)}.${quoted}`;
}

/**
 * Parse a configured table name: `Orders`, `dbo.Orders`, `[dbo].[Order Lines]`, `"sales"."orders"`.
 * Unquoted parts may not contain dots or brackets; quoted parts may contain anything printable.
 */
export function parseQualifiedName(input: string): QualifiedName {
  const parts: string[] = [];
  let i = 0;
  const text = input.trim();
  while (i < text.length) {
    const open = text[i];
    if (open === '[' || open === '"') {
      const close = open === '[' ? ']' : '"';
      let part = '';
      i++;
      for (;;) {
        if (i >= text.length) throw new IdentifierError(`Unterminated ${open}…${close} in table name ${JSON.stringify(input)}.`);
        if (text[i] === close) {
          if (text[i + 1] === close) {
            part += close;
            i += 2;
            continue;
          }
          i++;
          break;
        }
        part += text[i];
        i++;
      }
      parts.push(part);
    } else {
      const end = text.indexOf('.', i);
      const part = end === -1 ? text.slice(i) : text.slice(i, end);
      if (/[[\]"]/.test(part) || part.length === 0) {
        throw new IdentifierError(`Table name ${JSON.stringify(input)} is not schema.table; quote parts with [] or "".`);
      }
      parts.push(part);
      i = end === -1 ? text.length : end;
    }
    if (i < text.length) {
      if (text[i] !== '.') throw new IdentifierError(`Unexpected ${JSON.stringify(text[i])} in table name ${JSON.stringify(input)}.`);
      i++;
      if (i >= text.length) throw new IdentifierError(`Table name ${JSON.stringify(input)} ends with a dot.`);
    }
  }
  if (parts.length === 1) return { name: parts[0]! };
  if (parts.length === 2) return { schema: parts[0]!, name: parts[1]! };
  throw new IdentifierError(`Table name ${JSON.stringify(input)} has ${parts.length} parts; give schema.table (cross-database names are not supported).`);
}
