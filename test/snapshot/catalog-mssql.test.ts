/** The SQL Server catalog's column rows as type names (real-server coverage: test/snapshot/type-mapping.test.ts). */
import { describe, expect, it } from 'vitest';
import { catalogTypeName } from '../../src/snapshot/introspect-mssql.ts';

const col = (type_name: string, extra: Partial<{ max_length: number; precision: number; scale: number; base_type_name: string | null; is_assembly_type: boolean }> = {}) => ({
  type_name,
  base_type_name: type_name,
  max_length: 0,
  precision: 0,
  scale: 0,
  is_assembly_type: false,
  ...extra,
});

describe('catalogTypeName', () => {
  it('spells types as system_type_name does: lengths in characters, max, precision and scale', () => {
    expect(catalogTypeName(col('nvarchar', { max_length: 80 }))).toBe('nvarchar(40)');
    expect(catalogTypeName(col('nvarchar', { max_length: -1 }))).toBe('nvarchar(max)');
    expect(catalogTypeName(col('varchar', { max_length: 40 }))).toBe('varchar(40)');
    expect(catalogTypeName(col('nchar', { max_length: 20 }))).toBe('nchar(10)');
    expect(catalogTypeName(col('varbinary', { max_length: -1 }))).toBe('varbinary(max)');
    expect(catalogTypeName(col('decimal', { precision: 18, scale: 4 }))).toBe('decimal(18,4)');
    expect(catalogTypeName(col('datetime2', { scale: 7 }))).toBe('datetime2(7)');
    expect(catalogTypeName(col('datetimeoffset', { scale: 3 }))).toBe('datetimeoffset(3)');
    expect(catalogTypeName(col('time', { scale: 0 }))).toBe('time(0)');
    expect(catalogTypeName(col('int'))).toBe('int');
    expect(catalogTypeName(col('timestamp'))).toBe('timestamp');
  });

  it('an alias type is its base type; a CLR type keeps its own name', () => {
    expect(catalogTypeName(col('Phone', { base_type_name: 'varchar', max_length: 20 }))).toBe('varchar(20)');
    expect(catalogTypeName(col('sysname', { base_type_name: 'nvarchar', max_length: 256 }))).toBe('nvarchar(128)');
    expect(catalogTypeName(col('hierarchyid', { base_type_name: null, is_assembly_type: true, max_length: 892 }))).toBe('hierarchyid');
  });
});
