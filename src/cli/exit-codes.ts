/** Process exit codes of `cdc-agent` (documented in the README). */
export const EXIT = {
  ok: 0,
  /** A sync or another operation failed. */
  failed: 1,
  /** Usage or configuration error: fix the command line or the configuration file. */
  usage: 2,
} as const;
