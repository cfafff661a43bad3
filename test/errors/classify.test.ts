import { describe, expect, it } from 'vitest';
import { classifyError, classifyHttpStatus, toCdcError } from '../../src/errors/classify.ts';
import { LeaseLostError, PermanentError, TransientError } from '../../src/errors/errors.ts';

/** Shapes as the drivers throw them: pg DatabaseError has code + severity; tedious errors carry `number`. */
const pgError = (code: string) => Object.assign(new Error(`pg ${code}`), { code, severity: 'ERROR' });
const mssqlError = (number: number) => Object.assign(new Error(`mssql ${number}`), { name: 'RequestError', number });

describe('error classification', () => {
  it.each([
    ['40001', true],
    ['40P01', true],
    ['57P01', true],
    ['08006', true],
    ['08001', true],
    ['53300', true],
    ['28P01', false],
    ['3D000', false],
    ['42P01', false],
    ['42501', false],
    ['23505', false],
  ])('PostgreSQL SQLSTATE %s → retryable %s', (code, retryable) => {
    expect(classifyError(pgError(code)).retryable).toBe(retryable);
  });

  it.each([
    [1205, true],
    [1222, true],
    [40613, true],
    [40501, true],
    [-2, true],
    [4060, false],
    [18456, false],
    [208, false],
    [229, false],
  ])('SQL Server error %i → retryable %s', (number, retryable) => {
    expect(classifyError(mssqlError(number)).retryable).toBe(retryable);
    // mssql wraps tedious errors: the number may sit on originalError
    expect(classifyError(Object.assign(new Error('wrapped'), { originalError: mssqlError(number) })).retryable).toBe(retryable);
  });

  it.each([
    ['ECONNRESET', true],
    ['ECONNREFUSED', true],
    ['ETIMEDOUT', true],
    ['ESOCKET', true],
    ['ELOGIN', false],
    ['ENOTFOUND', false],
  ])('connection code %s → retryable %s', (code, retryable) => {
    expect(classifyError(Object.assign(new Error(code), { code })).retryable).toBe(retryable);
  });

  it.each([
    [408, true],
    [409, true],
    [429, true],
    [413, true],
    [500, true],
    [503, true],
    [400, false],
    [401, false],
    [403, false],
    [404, false],
    [422, false],
  ])('HTTP %i → retryable %s', (status, retryable) => {
    expect(classifyHttpStatus(status).retryable).toBe(retryable);
  });

  it('keeps named errors as they are and wraps driver errors with the reason', () => {
    const lost = new LeaseLostError('42');
    expect(toCdcError(lost, 'x')).toBe(lost);
    const wrapped = toCdcError(pgError('40P01'), 'Claiming jobs', { tenant: 'acme' });
    expect(wrapped).toBeInstanceOf(TransientError);
    expect(wrapped.message).toBe('Claiming jobs failed (PostgreSQL 40P01: deadlock detected): pg 40P01');
    expect(wrapped.context).toEqual({ tenant: 'acme' });
    expect(toCdcError(mssqlError(18456), 'Connecting to the source')).toBeInstanceOf(PermanentError);
  });
});
