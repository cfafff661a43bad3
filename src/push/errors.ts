/** Failures of the Data Push API, classified per docs/design.md §6. */
import { PermanentError, TransientError, type ErrorContext } from '../errors/errors.ts';

/** The receiver refused the request for good (a 4xx other than 408/409/413/429): dead-letter with its message. */
export class PushRejectedError extends PermanentError {
  readonly status: number;
  readonly receiverMessage: string;

  constructor(message: string, options: { status: number; receiverMessage: string; context?: ErrorContext }) {
    super(message, options.context ? { context: options.context } : {});
    this.status = options.status;
    this.receiverMessage = options.receiverMessage;
  }
}

/** 413: the body is over the receiver's limit. The push splits the batch; one change alone that is too big is permanent. */
export class PayloadTooLargeError extends PermanentError {
  readonly bytes: number;

  constructor(message: string, options: { bytes: number; context?: ErrorContext }) {
    super(message, options.context ? { context: options.context } : {});
    this.bytes = options.bytes;
  }
}

/** The receiver has no digest endpoint (404, 405 or 501 to `GET …/digest`): `cdc-agent verify` cannot check it. */
export class ReceiverCannotVerifyError extends PermanentError {
  readonly status: number;

  constructor(message: string, options: { status: number; context?: ErrorContext }) {
    super(message, options.context ? { context: options.context } : {});
    this.status = options.status;
  }
}

/** A retryable answer (408, 409, 429, 5xx) or a network failure; `retryAfterMs` when the receiver said when. */
export class PushUnavailableError extends TransientError {
  readonly status: number | undefined;
  readonly retryAfterMs: number | undefined;

  constructor(message: string, options: { status?: number; retryAfterMs?: number; cause?: unknown; context?: ErrorContext } = {}) {
    super(message, { ...(options.cause !== undefined ? { cause: options.cause } : {}), ...(options.context ? { context: options.context } : {}) });
    this.status = options.status;
    this.retryAfterMs = options.retryAfterMs;
  }
}

/**
 * `Retry-After` as milliseconds from `now`: either delta-seconds or an HTTP-date (RFC 9110 §10.2.3).
 * Returns undefined when absent or unreadable; a date in the past means "now" (0).
 */
export function parseRetryAfter(value: string | undefined | null, now = Date.now()): number | undefined {
  if (value === undefined || value === null) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  if (!/[a-z]/i.test(text)) return undefined;
  const at = Date.parse(text);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - now);
}
