/**
 * The agent's named errors. Every error that crosses a stage boundary is one of these, so that the
 * queue can decide from `retryable` alone whether a job is rescheduled or dead-lettered.
 */

export interface ErrorContext {
  tenant?: string;
  source?: string;
  jobId?: string;
  runId?: string;
}

export class CdcError extends Error {
  readonly retryable: boolean;
  readonly context: ErrorContext;

  constructor(message: string, options: { retryable: boolean; cause?: unknown; context?: ErrorContext }) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.retryable = options.retryable;
    this.context = options.context ?? {};
  }
}

/** Configuration is wrong; nothing will work until an operator fixes it. CLI exit code 2. */
export class ConfigError extends CdcError {
  readonly problems: readonly string[];

  constructor(problems: readonly string[], heading = 'Invalid configuration') {
    super(`${heading}:\n${problems.map((p) => `  - ${p}`).join('\n')}`, { retryable: false });
    this.problems = problems;
  }
}

/** A `secret://NAME` reference that no provider could resolve. */
export class SecretNotFoundError extends CdcError {
  readonly secret: string;
  readonly lookedIn: readonly string[];

  constructor(secret: string, lookedIn: readonly string[]) {
    super(
      `Secret "${secret}" was not found. Looked in: ${lookedIn.join('; ')}. ` +
        'Provide it in one of those places, or fix the secret:// reference in the configuration.',
      { retryable: false },
    );
    this.secret = secret;
    this.lookedIn = lookedIn;
  }
}

/** A database or network failure that is expected to go away (deadlock, failover, reset). */
export class TransientError extends CdcError {
  constructor(message: string, options: { cause?: unknown; context?: ErrorContext } = {}) {
    super(message, { retryable: true, ...options });
  }
}

/** A failure that retrying cannot fix (bad login, missing table, rejected data). */
export class PermanentError extends CdcError {
  constructor(message: string, options: { cause?: unknown; context?: ErrorContext } = {}) {
    super(message, { retryable: false, ...options });
  }
}

/** The control database holds a schema this build does not know. */
export class SchemaTooNewError extends PermanentError {}

/** A worker's lease on a job was taken over or expired; it must stop writing at once (fencing). */
export class LeaseLostError extends CdcError {
  constructor(jobId: string, options: { cause?: unknown; context?: ErrorContext } = {}) {
    super(`Lease on job ${jobId} was lost to another worker or expired; this worker stops writing for it.`, {
      retryable: false,
      ...options,
      context: { jobId, ...options.context },
    });
  }
}

/** A configuration identifier (schema, table, column) that we refuse to put into SQL. */
export class IdentifierError extends PermanentError {}
