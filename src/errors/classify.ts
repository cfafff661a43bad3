/**
 * One table that decides whether a driver or HTTP failure is worth retrying. The queue's retry policy
 * reads nothing else, so a new failure mode is handled by adding a row here.
 */
import { CdcError, PermanentError, TransientError, type ErrorContext } from './errors.ts';

export type Classification = { retryable: boolean; reason: string };

/** PostgreSQL SQLSTATE codes (exact, or a two-character class prefix). */
const POSTGRES_SQLSTATE: ReadonlyArray<[code: string, retryable: boolean, reason: string]> = [
  ['40001', true, 'serialization failure'],
  ['40P01', true, 'deadlock detected'],
  ['55P03', true, 'lock not available'],
  ['57P01', true, 'server shutting down (admin shutdown)'],
  ['57P02', true, 'crash shutdown'],
  ['57P03', true, 'server not yet accepting connections'],
  ['57014', true, 'statement cancelled (timeout)'],
  ['53300', true, 'too many connections'],
  ['53200', true, 'out of memory on the server'],
  ['08', true, 'connection exception'],
  ['28', false, 'invalid authorization (login refused)'],
  ['3D000', false, 'database does not exist'],
  ['42P01', false, 'table or view does not exist'],
  ['42703', false, 'column does not exist'],
  ['42501', false, 'insufficient privilege'],
  ['42', false, 'SQL syntax or access rule violation'],
  ['22', false, 'data exception'],
  ['23', false, 'integrity constraint violation'],
];

/** SQL Server error numbers. */
const MSSQL_NUMBER: ReadonlyMap<number, [retryable: boolean, reason: string]> = new Map([
  [1205, [true, 'deadlock victim']],
  [1222, [true, 'lock request timeout']],
  [-2, [true, 'query timeout']],
  [4060, [false, 'cannot open database (missing, or login has no access)']],
  [18456, [false, 'login failed']],
  [18452, [false, 'login from an untrusted domain']],
  [40613, [true, 'Azure SQL database not currently available']],
  [40501, [true, 'Azure SQL service busy']],
  [40197, [true, 'Azure SQL service error processing the request']],
  [49918, [true, 'Azure SQL not enough resources']],
  [49919, [true, 'Azure SQL too many operations in progress']],
  [49920, [true, 'Azure SQL too many operations in progress']],
  [10928, [true, 'Azure SQL resource limit reached']],
  [10929, [true, 'Azure SQL resource limit reached']],
  [4221, [true, 'login to read-secondary failed during replica change']],
  [233, [true, 'connection closed by the server']],
  [10053, [true, 'transport-level error (connection aborted)']],
  [10054, [true, 'transport-level error (connection reset)']],
  [10060, [true, 'network timeout']],
  [208, [false, 'invalid object name (table or view does not exist)']],
  [207, [false, 'invalid column name']],
  [229, [false, 'permission denied']],
  [2627, [false, 'unique constraint violation']],
  [2601, [false, 'duplicate key in unique index']],
  [8152, [false, 'string or binary data would be truncated']],
  [2628, [false, 'string or binary data would be truncated']],
]);

/** Node/tedious connection-level codes. */
const NETWORK_CODES: ReadonlyMap<string, [retryable: boolean, reason: string]> = new Map([
  ['ECONNRESET', [true, 'connection reset']],
  ['ECONNREFUSED', [true, 'connection refused']],
  ['ECONNABORTED', [true, 'connection aborted']],
  ['ETIMEDOUT', [true, 'timed out']],
  ['ETIMEOUT', [true, 'timed out']],
  ['EPIPE', [true, 'broken pipe']],
  ['EHOSTUNREACH', [true, 'host unreachable']],
  ['ENETUNREACH', [true, 'network unreachable']],
  ['EAI_AGAIN', [true, 'DNS lookup temporarily failed']],
  ['ENOTFOUND', [false, 'host name not found']],
  ['ESOCKET', [true, 'socket error']],
  ['ECONNCLOSED', [true, 'connection closed']],
  ['ENOTOPEN', [true, 'connection not open']],
  ['ELOGIN', [false, 'login failed']],
  ['EINSTLOOKUP', [false, 'SQL Server instance lookup failed']],
  ['ETLS', [false, 'TLS negotiation failed (check encrypt / trustServerCertificate)']],
  ['UND_ERR_SOCKET', [true, 'socket error']],
]);

/** HTTP statuses from the Data Push API (docs/design.md §6). */
export function classifyHttpStatus(status: number): Classification {
  if (status >= 200 && status < 300) return { retryable: false, reason: 'accepted' };
  if (status === 408) return { retryable: true, reason: 'request timeout' };
  if (status === 409) return { retryable: true, reason: 'conflict (receiver busy with this key)' };
  if (status === 429) return { retryable: true, reason: 'throttled' };
  if (status === 413) return { retryable: true, reason: 'payload too large (split the batch)' };
  if (status >= 500) return { retryable: true, reason: `receiver error ${status}` };
  return { retryable: false, reason: `rejected by receiver with ${status}` };
}

function field(error: unknown, name: string): unknown {
  return typeof error === 'object' && error !== null ? (error as Record<string, unknown>)[name] : undefined;
}

/** Classify any thrown value. Unknown errors are treated as transient: a retry is cheap, a lost job is not. */
export function classifyError(error: unknown): Classification {
  if (error instanceof CdcError) return { retryable: error.retryable, reason: error.name };

  const sqlstate = field(error, 'code');
  if (typeof sqlstate === 'string' && /^[0-9A-Z]{5}$/.test(sqlstate) && field(error, 'severity') !== undefined) {
    const row =
      POSTGRES_SQLSTATE.find(([code]) => code === sqlstate) ??
      POSTGRES_SQLSTATE.find(([code]) => code.length === 2 && sqlstate.startsWith(code));
    if (row) return { retryable: row[1], reason: `PostgreSQL ${sqlstate}: ${row[2]}` };
    return { retryable: false, reason: `PostgreSQL ${sqlstate}` };
  }

  // mssql wraps tedious errors: RequestError/ConnectionError with `number` on the error or its cause.
  for (const candidate of [error, field(error, 'originalError'), field(error, 'cause')]) {
    const number = field(candidate, 'number');
    if (typeof number === 'number') {
      const row = MSSQL_NUMBER.get(number);
      if (row) return { retryable: row[0], reason: `SQL Server ${number}: ${row[1]}` };
    }
  }

  for (const candidate of [error, field(error, 'originalError'), field(error, 'cause')]) {
    const code = field(candidate, 'code');
    if (typeof code === 'string') {
      const row = NETWORK_CODES.get(code);
      if (row) return { retryable: row[0], reason: `${code}: ${row[1]}` };
    }
  }

  const status = field(error, 'status') ?? field(field(error, 'response'), 'status');
  if (typeof status === 'number') return classifyHttpStatus(status);

  const message = error instanceof Error ? error.message : String(error);
  if (/Connection terminated|connection.*(closed|reset)|socket hang up/i.test(message)) {
    return { retryable: true, reason: 'connection lost' };
  }
  return { retryable: true, reason: 'unclassified error' };
}

/** Wrap a driver error into a named error carrying its classification and context. */
export function toCdcError(error: unknown, what: string, context: ErrorContext = {}): CdcError {
  if (error instanceof CdcError) return error;
  const { retryable, reason } = classifyError(error);
  const detail = error instanceof Error ? error.message : String(error);
  const message = `${what} failed (${reason}): ${detail}`;
  return retryable
    ? new TransientError(message, { cause: error, context })
    : new PermanentError(message, { cause: error, context });
}
