/**
 * SQL Server logins beyond a SQL login (issue 19): NTLM (a Windows domain account) and Entra ID. Each configuration
 * goes through the same path as a real connection: the compiled config → our pool config → the mssql package's
 * tedious config → tedious' own Connection, which validates the authentication (it connects only on connect()).
 */
import sql from 'mssql';
import { Connection } from 'tedious';
import { describe, expect, it } from 'vitest';
import { compileConfig } from '../../src/config/load.ts';
import type { ConfigError } from '../../src/errors/errors.ts';
import { mssqlPoolConfig } from '../../src/dialect/mssql.ts';
import { runCli, writeConfig } from '../support/cli.ts';

function configWith(connection: Record<string, unknown>): Record<string, unknown> {
  return {
    control: { dialect: 'postgres', url: 'postgres://postgres@127.0.0.1:5432/test' },
    tenants: [
      {
        id: 'acme',
        push: { url: 'http://127.0.0.1:1/v1', token: 'abc' },
        connections: { legacy: { dialect: 'mssql', host: 'sql01.acme.local', database: 'Sales', ...connection } },
        sources: [{ id: 'orders', connection: 'legacy', table: 'dbo.Orders', key: ['OrderID'] }],
      },
    ],
  };
}

/** What tedious itself makes of the connection's configuration. */
function tediousAuth(connection: Record<string, unknown>): { type: string; options: Record<string, unknown> } {
  const compiled = compileConfig(configWith(connection));
  const legacy = compiled.tenants[0]!.connections.legacy!;
  if (legacy.dialect !== 'mssql') throw new Error('expected mssql');
  const pool = new sql.ConnectionPool(mssqlPoolConfig(legacy)) as unknown as { _config(): Record<string, unknown> };
  const tedious = new Connection(pool._config() as never) as unknown as { config: { authentication: { type: string; options: Record<string, unknown> } } };
  return tedious.config.authentication;
}

describe('SQL Server authentication', () => {
  it('a SQL login stays the default', () => {
    expect(tediousAuth({ user: 'sync_reader', password: 'pw' })).toEqual({ type: 'default', options: { userName: 'sync_reader', password: 'pw' } });
  });

  it('ntlm: a Windows domain account', () => {
    expect(tediousAuth({ authentication: { type: 'ntlm', domain: 'acme', user: 'svc_sync', password: 'pw' } })).toEqual({
      type: 'ntlm',
      options: { domain: 'ACME', userName: 'svc_sync', password: 'pw' },
    });
  });

  it('Entra ID: default credential, managed identity, service principal', () => {
    expect(tediousAuth({ authentication: { type: 'azure-active-directory-default' } })).toEqual({ type: 'azure-active-directory-default', options: { clientId: undefined } });
    expect(tediousAuth({ authentication: { type: 'azure-active-directory-msi-vm', clientId: 'c-1' } })).toEqual({ type: 'azure-active-directory-msi-vm', options: { clientId: 'c-1' } });
    expect(tediousAuth({ authentication: { type: 'azure-active-directory-service-principal-secret', clientId: 'c-1', tenantId: 't-1', clientSecret: 's3' } })).toEqual({
      type: 'azure-active-directory-service-principal-secret',
      options: { clientId: 'c-1', tenantId: 't-1', clientSecret: 's3' },
    });
  });

  it('refuses what tedious would refuse, by path', () => {
    const problems = (connection: Record<string, unknown>) => {
      try {
        compileConfig(configWith(connection));
        return [];
      } catch (error) {
        return (error as ConfigError).problems;
      }
    };
    expect(problems({ authentication: { type: 'ntlm', user: 'svc', password: 'pw' } })).toEqual([expect.stringMatching(/^tenants\[0\]\.connections\.legacy\.authentication\.domain: /)]);
    expect(problems({ authentication: { type: 'azure-active-directory-service-principal-secret', clientId: 'c' } }).join('\n')).toMatch(/authentication\.tenantId: .*\n.*authentication\.clientSecret: /);
    expect(problems({ authentication: { type: 'kerberos' } })).toEqual([expect.stringMatching(/^tenants\[0\]\.connections\.legacy\.authentication\.type: /)]);
    expect(problems({ user: 'sa', password: 'pw', authentication: { type: 'azure-active-directory-default' } })).toEqual([
      'tenants[0].connections.legacy.authentication: give either user and password (a SQL login) or authentication (azure-active-directory-default), not both',
    ]);
  });

  it('config check resolves their secrets and never prints them', async () => {
    const path = await writeConfig(
      configWith({ authentication: { type: 'azure-active-directory-service-principal-secret', clientId: 'c-1', tenantId: 't-1', clientSecret: 'secret://sp-secret' } }),
    );
    const ntlm = await writeConfig(configWith({ authentication: { type: 'ntlm', domain: 'ACME', user: 'svc', password: 'literal-Pa55word' } }));
    const r = await runCli(['--config', path, 'config', 'check'], { env: { CDC_SECRET_SP_SECRET: 'very-secret-value-1' } });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('clientSecret: secret://sp-secret');
    expect(r.stdout + r.stderr).not.toContain('very-secret-value-1');
    const n = await runCli(['--config', ntlm, 'config', 'check']);
    expect(n.code).toBe(0);
    expect(n.stdout).toMatch(/password: "?\*\*\*"?/);
    expect(n.stdout + n.stderr).not.toContain('literal-Pa55word');
    const missing = await runCli(['--config', path, 'config', 'check']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/tenants\[0\]\.connections\.legacy\.authentication\.clientSecret: .*sp-secret/);
  });
});

describe('SQL Server TDS packet size', () => {
  /** The packet size tedious asks for at login, from a connection's configuration as the agent compiles it. */
  function tediousPacketSize(connection: Record<string, unknown>): number {
    const legacy = compileConfig(configWith(connection)).tenants[0]!.connections.legacy!;
    if (legacy.dialect !== 'mssql') throw new Error('expected mssql');
    const pool = new sql.ConnectionPool(mssqlPoolConfig(legacy)) as unknown as { _config(): Record<string, unknown> };
    return (new Connection(pool._config() as never) as unknown as { config: { options: { packetSize: number } } }).config.options.packetSize;
  }

  it('asks for 16,383 bytes unless the connection names a size (packetSize, or ?packetSize= in its url)', () => {
    expect(tediousPacketSize({ user: 'u', password: 'p' })).toBe(16_383);
    expect(tediousPacketSize({ user: 'u', password: 'p', packetSize: 4096 })).toBe(4096);
    expect(tediousPacketSize({ url: 'mssql://u:p@sql01:1433/Sales?packetSize=32767' })).toBe(32_767);
    expect(() => tediousPacketSize({ url: 'mssql://u:p@sql01:1433/Sales?packetSize=64k' })).toThrow('packetSize in the mssql:// URL must be a whole number of bytes from 512 to 32767, not 64k');
  });

  it('config check refuses a size outside 512–32,767, naming the setting', async () => {
    const path = await writeConfig(configWith({ user: 'u', password: 'p', packetSize: 32_768 }));
    const r = await runCli(['--config', path, 'config', 'check']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/tenants\[0\]\.connections\.legacy\.packetSize: /);
  });
});
