/**
 * Names of a data source's tables in the control database. Tenant and source ids are
 * `[a-z0-9_-]`, so `<tenant>_<source>` alone could collide (`a_b`+`c` vs `a`+`b_c`): every name ends in a
 * short hash of the exact pair, and the readable part is cut so the whole fits PostgreSQL's 63 bytes.
 */
import { createHash } from 'node:crypto';
import type { QualifiedName } from '../dialect/types.ts';

const MAX = 63;

function tableName(prefix: string, tenant: string, source: string): QualifiedName {
  const hash = createHash('sha256').update(`${tenant}\u0000${source}`).digest('hex').slice(0, 8);
  const readable = `${tenant}_${source}`.slice(0, MAX - prefix.length - hash.length - 2);
  return { name: `${prefix}_${readable}_${hash}` };
}

export function sourceTables(tenant: string, source: string): { snapshot: QualifiedName; staging: QualifiedName; changes: QualifiedName } {
  return {
    snapshot: tableName('cdc_snap', tenant, source),
    staging: tableName('cdc_stg', tenant, source),
    changes: tableName('cdc_chg', tenant, source),
  };
}

/**
 * The snapshot's unique index on the source key, built by the diff after each snapshot load (it is the key
 * check: a duplicate fails its build) and dropped before the next load, so the COPY fills a bare heap.
 */
export function snapshotKeyIndex(tenant: string, source: string): string {
  return tableName('cdc_skey', tenant, source).name;
}

/**
 * Keys the receiver held before a schema-drift rebuild, until a run in the new shape succeeds: the diff
 * deletes those that vanished from the source (see tables.ts).
 */
export function heldKeysTable(tenant: string, source: string): QualifiedName {
  return tableName('cdc_held', tenant, source);
}

/**
 * Every key the source has, read by a watermark source's keydiff run (key columns only) so that the diff can
 * delete the keys staging holds and the source no longer has. Scratch, like the snapshot.
 */
export function sourceKeysTable(tenant: string, source: string): QualifiedName {
  return tableName('cdc_keys', tenant, source);
}
