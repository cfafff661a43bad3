import { describe, expect, it } from 'vitest';
import { IdentifierError } from '../../src/errors/errors.ts';
import { parseQualifiedName, quoteMssql, quotePostgres } from '../../src/dialect/identifiers.ts';

describe('identifier quoting', () => {
  it.each([
    ['a"b', '"a""b"', '[a"b]'],
    ['x]y', '"x]y"', '[x]]y]'],
    ['with space', '"with space"', '[with space]'],
    ['ünïcødé 🦄', '"ünïcødé 🦄"', '[ünïcødé 🦄]'],
    ["Robert'); DROP TABLE x;--", `"Robert'); DROP TABLE x;--"`, `[Robert'); DROP TABLE x;--]`],
  ])('quotes %j for both dialects', (name, pg, ms) => {
    expect(quotePostgres(name)).toBe(pg);
    expect(quoteMssql(name)).toBe(ms);
  });

  it('rejects 200-character names with the dialect limit in the message', () => {
    const long = 'n'.repeat(200);
    expect(() => quotePostgres(long)).toThrow(/postgres keeps at most 63/);
    expect(() => quoteMssql(long)).toThrow(/mssql keeps at most 128/);
    expect(quoteMssql('n'.repeat(128))).toBe(`[${'n'.repeat(128)}]`);
  });

  it('rejects empty names and control characters', () => {
    expect(() => quotePostgres('')).toThrow(IdentifierError);
    expect(() => quoteMssql('a\u0000b')).toThrow(/control character/);
    expect(() => quotePostgres('line\nbreak')).toThrow(/control character/);
  });

  it('parses schema-qualified table names, quoted or not', () => {
    expect(parseQualifiedName('dbo.Orders')).toEqual({ schema: 'dbo', name: 'Orders' });
    expect(parseQualifiedName('Orders')).toEqual({ name: 'Orders' });
    expect(parseQualifiedName('[dbo].[Order Lines]')).toEqual({ schema: 'dbo', name: 'Order Lines' });
    expect(parseQualifiedName('[we]]ird].[x.y]')).toEqual({ schema: 'we]ird', name: 'x.y' });
    expect(parseQualifiedName('"sales"."or""ders"')).toEqual({ schema: 'sales', name: 'or"ders' });
    expect(() => parseQualifiedName('a.b.c')).toThrow(/3 parts/);
    expect(() => parseQualifiedName('[dbo.Orders')).toThrow(/Unterminated/);
    expect(() => parseQualifiedName('dbo.')).toThrow(/ends with a dot/);
  });
});
