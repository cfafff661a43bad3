/**
 * Structured JSON logs (pino) with tenant, source, job and run ids as bindings. Every line passes through
 * a redactor that removes the values of resolved secrets, wherever they appear (messages, errors, fields).
 */
import { Writable } from 'node:stream';
import pino, { type Logger } from 'pino';
import { redact } from '../config/secrets.ts';

export type { Logger } from 'pino';

export interface LoggerOptions {
  level: string;
  /** Secret values to scrub from every line. */
  secrets: () => Iterable<string>;
  destination?: NodeJS.WritableStream;
  name?: string;
}

export function createLogger(options: LoggerOptions): Logger {
  const out = options.destination ?? process.stderr;
  const scrubbed = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      out.write(redact(chunk.toString('utf8'), options.secrets()));
      callback();
    },
  });
  return pino(
    {
      level: options.level,
      name: options.name ?? 'cdc-agent',
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      // Belt and braces: well-known credential fields are never logged even before the value is known.
      redact: { paths: ['password', '*.password', 'token', '*.token', 'apiKey', '*.apiKey', 'url', '*.url', 'connectionString'], censor: '***' },
      serializers: { err: pino.stdSerializers.err },
    },
    scrubbed,
  );
}
