/** Process exit codes of `cdc-agent` (documented in the README). */
export const EXIT = {
  ok: 0,
  /** A sync or another operation failed. */
  failed: 1,
  /** Usage or configuration error: fix the command line or the configuration file. */
  usage: 2,
  /** `verify`: the receiver has no digest endpoint, so the copy could not be checked (and nothing was found to differ). */
  unverifiable: 3,
  /** `--wait` stopped by Ctrl-C (128 + SIGINT); the jobs go on in the agent. */
  interrupted: 130,
} as const;
