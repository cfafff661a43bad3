import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { compileConfig, loadConfig, maskConfig } from '../../src/config/load.ts';
import { ConfigError } from '../../src/errors/errors.ts';
import { runCli, writeConfig } from '../support/cli.ts';

const VALID = {
  control: { dialect: 'postgres', url: 'secret://control-db-url' },
  tenants: [
    {
      id: 'acme',
      push: { url: 'https://push.example.com/v1', token: 'secret://acme-push-token' },
      connections: {
        legacy: { dialect: 'mssql', host: 'sql01.acme.local', database: 'Sales', user: 'sync_reader', password: 'secret://acme-sql-password' },
      },
      sources: [
        { id: 'orders', connection: 'legacy', table: 'dbo.Orders', key: ['OrderID'], schedule: '*/15 * * * *' },
        { id: 'lines', connection: 'legacy', query: 'SELECT * FROM dbo.Lines', key: ['OrderID', 'Line'], every: '15m' },
      ],
    },
  ],
};

function problemsOf(raw: unknown): readonly string[] {
  try {
    compileConfig(raw);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  return [];
}

describe('configuration', () => {
  it('fills every default and converts durations to milliseconds', () => {
    const config = compileConfig(VALID);
    expect(config.worker).toMatchObject({ concurrency: 2, leaseSeconds: 60, leaseMs: 60_000, heartbeatMs: 12_000 });
    const [orders, lines] = config.tenants[0]!.sources;
    expect(orders).toMatchObject({ onSchemaChange: 'resync', maxDeletePercent: 50, batch: { maxRows: 5000, maxBytes: 4 * 1024 * 1024 } });
    expect(lines!.every).toBe(15 * 60_000);
    const control = config.control;
    expect(control.dialect === 'postgres' && control.poolMax).toBe(10);
    const legacy = config.tenants[0]!.connections.legacy!;
    // TLS on by default, certificate checked unless an operator says otherwise
    expect(legacy).toMatchObject({ dialect: 'mssql', encrypt: true, trustServerCertificate: false });
  });

  it('reports every problem at once, each by its path', () => {
    const problems = problemsOf({
      control: { dialect: 'postgres' },
      worker: { concurrency: 0, leaseSecs: 60 },
      tenants: [
        {
          id: 'Acme',
          push: { url: 'not a url' },
          connections: { legacy: { dialect: 'oracle', host: 'x' } },
          sources: [
            { id: 'orders', connection: 'legacy', table: 'dbo.Orders', schedule: 'every day' },
            { id: 'lines', connection: 'legacy2', query: 'SELECT 1' },
            { id: 'orders', connection: 'legacy', table: 't', query: 'SELECT 1', key: ['a'] },
          ],
        },
      ],
    });
    expect(problems).toEqual(
      expect.arrayContaining([
        'control.host: give either url or host (with database, user, password)',
        expect.stringMatching(/^worker\.concurrency: /),
        'worker.leaseSecs: unknown setting (check the spelling)',
        expect.stringMatching(/^tenants\[0\]\.id: tenant ids are/),
        expect.stringMatching(/^tenants\[0\]\.push\.url: /),
        expect.stringMatching(/^tenants\[0\]\.connections\.legacy\.dialect: /),
        'tenants[0].sources[0].schedule: not a valid cron expression: "every day" is not a cron expression node-cron can read',
        'tenants[0].sources[1].key: Required (a query source must name its key columns)',
        'tenants[0].sources[1].connection: unknown connection "legacy2" (tenant\'s connections: legacy)',
        'tenants[0].sources[2].table: give exactly one of table or query',
        'tenants[0].sources[2].id: duplicate source id "orders"',
      ]),
    );
  });

  it('says Required for a missing setting', () => {
    expect(problemsOf({ control: { dialect: 'postgres', url: 'postgres://x' }, tenants: [{ id: 'a', connections: {}, sources: [] }] })).toEqual(
      expect.arrayContaining(['tenants[0].push: Required', expect.stringMatching(/^tenants\[0\]\.sources: /)]),
    );
  });

  it('resolves secrets from the environment, then from mounted files', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'cdc-secrets-'));
    await writeFile(path.join(dir, 'acme-sql-password'), 'from-file-pw\n');
    const file = await writeConfig({ ...VALID, secrets: { dirs: [dir] } });
    const { config, secrets } = await loadConfig({
      path: file,
      env: { CDC_SECRET_CONTROL_DB_URL: 'postgres://u:pw@db/control', CDC_SECRET_ACME_PUSH_TOKEN: 'tok-123456', CDC_SECRET_ACME_SQL_PASSWORD: '' },
    });
    expect(config.control.url).toBe('postgres://u:pw@db/control');
    expect(config.tenants[0]!.push.token).toBe('tok-123456');
    // an empty variable does not count: the file provides it, without its trailing newline
    expect((config.tenants[0]!.connections.legacy as { password: string }).password).toBe('from-file-pw');
    expect([...secrets.values()]).toEqual(expect.arrayContaining(['tok-123456', 'from-file-pw']));
  });

  it('names a missing secret and every place it looked, for all missing secrets at once', async () => {
    const file = await writeConfig({ ...VALID, secrets: { dirs: ['/nonexistent/secrets'] } });
    const error = await loadConfig({ path: file, env: { CDC_SECRET_CONTROL_DB_URL: 'postgres://x' } }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    const problems = (error as ConfigError).problems;
    expect(problems).toHaveLength(2);
    expect(problems[0]).toBe(
      'tenants[0].push.token: Secret "acme-push-token" was not found. Looked in: environment variable CDC_SECRET_ACME_PUSH_TOKEN; ' +
        'file /nonexistent/secrets/acme-push-token; file /var/run/secrets/cdc-agent/acme-push-token. ' +
        'Provide it in one of those places, or fix the secret:// reference in the configuration.',
    );
    expect(problems[1]).toMatch(/^tenants\[0\]\.connections\.legacy\.password: Secret "acme-sql-password" was not found/);
  });

  it('masks literal credentials but shows secret references', () => {
    const masked = maskConfig({
      control: { url: 'postgres://agent:hunter22@db:5432/control' },
      tenants: [{ push: { token: 'literal-token', apiKeyHeader: 'X-Api-Key' }, connections: { a: { password: 'secret://pw' } } }],
    });
    expect(JSON.stringify(masked)).not.toMatch(/hunter22|literal-token/);
    expect(masked).toEqual({
      control: { url: 'postgres://agent:***@db:5432/control' },
      tenants: [{ push: { token: '***', apiKeyHeader: 'X-Api-Key' }, connections: { a: { password: 'secret://pw' } } }],
    });
  });
});

describe('cdc-agent config check', () => {
  it('lists every mistake by path and exits 2', async () => {
    const file = await writeConfig(`
control: { dialect: postgres }
worker: { concurrency: 0 }
tenants:
  - id: acme
    push: { url: https://push.example.com }
    connections: { legacy: { dialect: mssql, host: sql01 } }
    sources:
      - { id: orders, connection: legacy, table: dbo.Orders, schedule: "not cron" }
      - { id: lines, connection: nope, query: "SELECT 1" }
`);
    const result = await runCli(['--config', file, 'config', 'check']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`Invalid configuration in ${file}:`);
    for (const line of [
      'control.host: give either url or host',
      'worker.concurrency:',
      'tenants[0].sources[0].schedule: not a valid cron expression',
      'tenants[0].sources[1].key: Required',
      'tenants[0].sources[1].connection: unknown connection "nope"',
    ]) {
      expect(result.stderr).toContain(line);
    }
  });

  it('prints the compiled config with secrets masked and exits 0', async () => {
    const file = await writeConfig({ ...VALID, tenants: [{ ...VALID.tenants[0], push: { url: 'https://push.example.com/v1', token: 'plain-text-token' } }] });
    const result = await runCli(['--config', file, 'config', 'check', '--json'], {
      env: { CDC_SECRET_CONTROL_DB_URL: 'postgres://u:pw@db/c', CDC_SECRET_ACME_SQL_PASSWORD: 'pw-from-env' },
    });
    expect(result.stderr).toContain('is valid; all secrets resolved');
    expect(result.code).toBe(0);
    const printed = JSON.parse(result.stdout) as { control: { url: string }; tenants: Array<{ push: { token: string; maxInFlight: number } }> };
    expect(printed.control.url).toBe('secret://control-db-url');
    expect(printed.tenants[0]!.push).toMatchObject({ token: '***', maxInFlight: 4 });
    expect(result.stdout).not.toMatch(/plain-text-token|pw-from-env/);
  });

  it('explains where it looked when there is no configuration file', async () => {
    const result = await runCli(['config', 'check'], { env: { CDC_AGENT_CONFIG: '/nonexistent/cdc.yaml' } });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('/nonexistent/cdc.yaml: file not found. Pass --config FILE, set CDC_AGENT_CONFIG');
  });
});

describe('cron expressions, strictly', () => {
  it('accepts what fires as written and refuses out-of-range values and steps', async () => {
    const { cronProblem } = await import('../../src/config/cron.ts');
    for (const ok of ['*/15 * * * *', '0 2 * * MON-FRI', '30 */6 1,15 JAN-JUN *', '*/10 * * * * *', '0 0 * * 7', '5-50/5 * * * *']) expect(cronProblem(ok), ok).toBeNull();
    expect(cronProblem('*/99 * * * *')).toBe('minute step /99 is outside 1-60');
    expect(cronProblem('75 * * * *')).toBe('minute "75" is outside 0-59');
    expect(cronProblem('0 24 * * *')).toBe('hour "24" is outside 0-23');
    expect(cronProblem('0 0 0 * *')).toBe('day of month "0" is outside 1-31');
    expect(cronProblem('0 0 * * * * *')).toMatch(/^has 7 fields/);
    expect(cronProblem('0 0 * FOO *')).toBe('month "FOO" has a value that is neither a number nor a name');
  });
});
