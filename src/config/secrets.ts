/**
 * `secret://NAME` resolution through a provider chain (docs/design.md §3): Azure Key Vault when configured,
 * then environment variables, then mounted secret files. Resolved values are remembered so that
 * logs, errors and telemetry can redact them.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { SecretNotFoundError } from '../errors/errors.ts';

export const SECRET_PREFIX = 'secret://';

export interface SecretProvider {
  /** Where this provider looks for NAME, in words an operator can act on. */
  describe(name: string): string;
  /** The secret's value, or undefined when this provider does not have it. */
  get(name: string): Promise<string | undefined>;
  /** Forget a cached value so that the next `get` asks the source again (rotation). */
  invalidate?(name: string): void;
}

export function secretEnvName(name: string): string {
  return `CDC_SECRET_${name.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`;
}

export class EnvSecretProvider implements SecretProvider {
  private readonly env: Readonly<Record<string, string | undefined>>;

  constructor(env: Readonly<Record<string, string | undefined>>) {
    this.env = env;
  }

  describe(name: string): string {
    return `environment variable ${secretEnvName(name)}`;
  }

  async get(name: string): Promise<string | undefined> {
    const value = this.env[secretEnvName(name)];
    return value === undefined || value === '' ? undefined : value;
  }
}

/** A directory of files named after secrets, as Kubernetes mounts a Secret volume. */
export class FileSecretProvider implements SecretProvider {
  private readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
  }

  describe(name: string): string {
    return `file ${path.join(this.dir, name)}`;
  }

  async get(name: string): Promise<string | undefined> {
    try {
      // Mounted secrets usually end with a newline that is not part of the value.
      return (await readFile(path.join(this.dir, name), 'utf8')).replace(/\r?\n$/, '');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
  }
}

export class SecretResolver {
  private readonly providers: readonly SecretProvider[];
  private readonly known = new Set<string>();
  private readonly byName = new Map<string, string>();

  constructor(providers: readonly SecretProvider[]) {
    this.providers = providers;
  }

  static isReference(value: unknown): value is string {
    return typeof value === 'string' && value.startsWith(SECRET_PREFIX);
  }

  async resolve(reference: string): Promise<string> {
    const name = reference.slice(SECRET_PREFIX.length);
    for (const provider of this.providers) {
      const value = await provider.get(name);
      if (value !== undefined) {
        this.known.add(value);
        this.byName.set(name, value);
        return value;
      }
    }
    throw new SecretNotFoundError(
      name,
      this.providers.map((p) => p.describe(name)),
    );
  }

  /**
   * Re-read a secret after an authentication failure (rotation): caches are dropped and the chain is asked
   * again. The old value stays known, so it is still redacted wherever it shows up.
   */
  async refresh(reference: string): Promise<{ value: string; changed: boolean }> {
    const name = reference.startsWith(SECRET_PREFIX) ? reference.slice(SECRET_PREFIX.length) : reference;
    for (const provider of this.providers) provider.invalidate?.(name);
    const before = this.byName.get(name);
    const value = await this.resolve(SECRET_PREFIX + name);
    return { value, changed: before !== undefined && before !== value };
  }

  /** Every secret value resolved so far, for redaction. */
  values(): ReadonlySet<string> {
    return this.known;
  }

  /** Remember a literal credential from the config file too, so it is redacted like a resolved one. */
  remember(value: string): void {
    if (value.length >= 4) this.known.add(value);
  }
}

/** Replace every known secret value in a text with `***`. */
export function redact(text: string, secrets: Iterable<string>): string {
  let out = text;
  for (const secret of secrets) {
    if (secret.length >= 4) out = out.split(secret).join('***');
  }
  return out;
}
