/** Source database pools, opened on first use per (tenant, connection) and shared by that tenant's sources. */
import type { CompiledConfig } from '../config/load.ts';
import { connect } from '../dialect/connect.ts';
import type { Db } from '../dialect/types.ts';
import { PermanentError } from '../errors/errors.ts';

export class SourceConnections {
  private readonly config: CompiledConfig;
  private readonly pools = new Map<string, Promise<Db>>();

  constructor(config: CompiledConfig) {
    this.config = config;
  }

  get(tenantId: string, connectionName: string): Promise<Db> {
    const key = `${tenantId}\u0000${connectionName}`;
    let pool = this.pools.get(key);
    if (!pool) {
      const tenant = this.config.tenants.find((t) => t.id === tenantId);
      const connection = tenant?.connections[connectionName];
      if (!connection) {
        return Promise.reject(new PermanentError(`Tenant "${tenantId}" has no connection "${connectionName}" in the configuration.`));
      }
      // A source may be a PostgreSQL older than 11, which refuses a `jit` startup option.
      pool = connect(connection, { jitOff: false });
      // A failed connect is not cached: the next job retries it.
      pool.catch(() => this.pools.delete(key));
      this.pools.set(key, pool);
    }
    return pool;
  }

  async closeAll(): Promise<void> {
    const pools = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(pools.map(async (p) => (await p.catch(() => null))?.close().catch(() => {})));
  }
}
