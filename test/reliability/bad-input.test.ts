/**
 * Bad input (issue 11): for each kind, the exact message a user sees, and proof that nothing was lost: the
 * bad source is dead-lettered with its reason while the healthy ones sync, the receiver holds nothing it
 * should not, and after the fix a retry converges. Agents run as separate OS processes, as in production.
 */
import { createServer, type Server } from 'node:http';
import { createServer as createTcpServer, connect as tcpConnect, type Server as TcpServer } from 'node:net';
import { readFile, writeFile } from 'node:fs/promises';
import { parse, stringify } from 'yaml';
import { afterEach, describe, expect, it } from 'vitest';
import { AgentProcess, allOk, Estate } from '../support/estate.ts';
import { spawnCli, writeConfig } from '../support/cli.ts';

let estate: Estate | undefined;
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  await estate?.close();
  estate = undefined;
});

type Json = Record<string, unknown>;

/** Rewrite the estate's configuration file (the agents read it at start). */
async function editConfig(e: Estate, edit: (raw: Json & { tenants: Array<Json & { sources: Json[]; push: Json; connections: Record<string, Json> }> }) => void): Promise<void> {
  const raw = parse(await readFile(e.configPath, 'utf8')) as Parameters<typeof edit>[0];
  edit(raw);
  await writeFile(e.configPath, stringify(raw));
}

/** A literal text as a regular expression. */
function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function failures(stderr: string): Record<string, string> {
  const out: Record<string, string> = {};
  const lines = stderr.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const m = /^acme\/([a-z_]+): FAILED \(dead\): (.*)$/.exec(lines[i]!);
    if (!m) continue;
    let text = m[2]!;
    while (lines[i + 1]?.startsWith('  caused by ')) text += `\n${lines[++i]}`;
    // run ids and ports differ per run; everything else is what the user reads
    out[m[1]!] = text.replace(/\d{8}T\d{6}Z-[0-9a-f]{8}/g, 'RUN').replace(/127\.0\.0\.1:\d+/g, '127.0.0.1:PORT');
  }
  return out;
}

async function requestsFor(e: Estate, dataset: string): Promise<number> {
  const [row] = await e.receiverDb.db.query<{ n: string }>(`SELECT count(*)::text AS n FROM rx_requests WHERE dataset = $1`, [dataset]);
  return Number(row?.n ?? 0);
}

describe('bad input [postgres → postgres]', () => {
  it('configuration errors: every problem listed by its path, exit code 2, nothing started', async () => {
    const path = await writeConfig({
      control: { dialect: 'postgres' },
      worker: { concurrency: 0, leaseSeconds: 2 },
      tenants: [
        {
          id: 'Acme',
          push: { url: 'ftp://push.example.com', token: 'secret://bad name' },
          connections: { legacy: { dialect: 'mssql', host: 'sql01' } },
          sources: [
            { id: 'orders', connection: 'legacy', table: 'dbo.Orders', key: ['OrderID'], every: '15 minutes' },
            { id: 'orders', connection: 'nope', query: 'SELECT 1 AS x' },
          ],
        },
      ],
    });
    const child = spawnCli(['--config', path, 'run']);
    const agent = new AgentProcess('bad-config', child);
    const code = await agent.exited;
    expect(code).toBe(2);
    expect(agent.lines.join('\n')).toBe(
      [
        `Invalid configuration in ${path}:`,
        '  - control.host: give either url or host (with database, user, password)',
        '  - worker.concurrency: Too small: expected number to be >0',
        '  - worker.leaseSeconds: Too small: expected number to be >=5',
        '  - tenants[0].id: tenant ids are 1-63 lower-case letters, digits, "_" or "-", starting with a letter or digit',
        '  - tenants[0].push.url: Invalid URL',
        '  - tenants[0].push.token: secret references look like secret://NAME (letters, digits, dot, dash, underscore)',
        '  - tenants[0].sources[0].every: "15 minutes" is not a duration (use 500ms, 30s, 15m, 2h, 1d)',
        '  - tenants[0].sources[1].key: Required (a query source must name its key columns)',
        '  - tenants[0].sources[1].id: duplicate source id "orders"',
        '  - tenants[0].sources[1].connection: unknown connection "nope" (tenant\'s connections: legacy)',
      ].join('\n'),
    );
  });

  it('source problems: missing table, missing key column, duplicate keys, NULL key, unsupported type; the healthy source syncs', async () => {
    estate = await Estate.create({
      label: 'bad_src',
      tenants: ['acme'],
      rows: 2000,
      sources: [
        { id: 'customers', table: 'public.customers' },
        { id: 'missing_table', table: 'public.no_such_table' },
        { id: 'missing_key', table: 'public.products', key: ['sku_code'] },
        { id: 'dup_keys', table: 'public.dup_view', key: ['id'] },
        { id: 'null_key', table: 'public.null_view', key: ['id'] },
        { id: 'unsupported', table: 'public.shapes' },
      ],
      setupSql: `
        CREATE VIEW dup_view AS SELECT customer_id % 7 AS id, name FROM customers;
        CREATE VIEW null_view AS SELECT NULLIF(customer_id, 3) AS id, name FROM customers;
        CREATE TABLE shapes (id int PRIMARY KEY, spot point);
        INSERT INTO shapes VALUES (1, point(1, 2));`,
    });
    await estate.startAgent('agent-a');
    const onboard = await estate.cli(['onboard', '--tenant', 'acme', '--wait', '--timeout', '90']);
    expect(onboard.code).toBe(1);
    const p = '[permanent: PermanentError] PermanentError: tenant "acme", source';
    expect(failures(onboard.stderr)).toEqual({
      missing_table: `${p} "missing_table": table or view "public"."no_such_table" does not exist or is not visible to the agent's login; check the source's table in the configuration, or GRANT SELECT on it to that login.`,
      missing_key: `${p} "missing_key": key column(s) "sku_code" are not among the source's (included) columns (product_id, sku, title, price, weight_kg, discontinued); fix the source's key in the configuration, or stop excluding the column. Nothing was pushed.`,
      dup_keys: `${p} "dup_keys": the source has a duplicate key (32 rows), e.g. id=3. Every row needs a unique, non-NULL key (id); fix the source data or configure another key. Nothing was pushed.`,
      null_key: `${p} "null_key": the source has a NULL key, e.g. id=NULL. Every row needs a unique, non-NULL key (id); fix the source data or configure another key. Nothing was pushed.`,
      unsupported: `${p} "unsupported": column "spot": type point cannot be carried losslessly; use a query source that casts it (e.g. CAST(col AS text)).`,
    });
    // nothing reached the receiver for the bad sources; the healthy one is complete
    for (const bad of ['missing_table', 'missing_key', 'dup_keys', 'null_key', 'unsupported']) expect(await requestsFor(estate, bad)).toBe(0);
    const [held] = await estate.sourceDb('acme').query<{ n: string }>(`SELECT count(*)::text AS n FROM customers`);
    expect((await estate.receiverStats('acme', 'customers')).rowsHeld).toBe(Number(held!.n));
  });

  it('one row larger than the batch byte limit travels alone; one larger than the receiver accepts is dead-lettered with 413, and nothing else is lost', async () => {
    estate = await Estate.create({
      label: 'bad_big',
      tenants: ['acme'],
      rows: 600,
      sources: [{ id: 'customers', table: 'public.customers' }],
      batch: { maxRows: 100, maxBytes: 2_000 },
      faults: { maxBodyBytes: 40_000 },
    });
    await estate.sourceDb('acme').execute(`UPDATE customers SET name = repeat('x', 5000) WHERE customer_id = 5`);
    await estate.startAgent('agent-a');
    expect((await estate.cli(['onboard', '--tenant', 'acme', '--wait', '--timeout', '60'])).code).toBe(0);
    expect((await estate.verify('acme')).customers).toMatchObject({ ok: true });

    await estate.sourceDb('acme').execute(`UPDATE customers SET name = repeat('y', 60000) WHERE customer_id = 5; UPDATE customers SET email = 'changed@example.com' WHERE customer_id = 9`);
    const sync = await estate.cli(['sync', '--tenant', 'acme', '--wait', '--timeout', '60']);
    expect(sync.code).toBe(1);
    expect(failures(sync.stderr)).toEqual({
      customers:
        "[permanent: PermanentError] PermanentError: Batch 1 of run RUN (acme/customers) holds a single change of 60952 bytes, over the receiver's body limit; raise the receiver limit or exclude the large column.\n" +
        '  caused by PayloadTooLargeError: Pushing RUN.1 to acme/customers: the receiver refused 60952 bytes as too large (413): Request body is too large',
    });
    // the other change in the run was delivered; the big row is the only one the receiver lacks
    const verified = (await estate.verify('acme')).customers!;
    expect(verified.ok).toBe(false);
    expect(verified.firstDifference?.source).toContain('yyyy');
  });

  it('a receiver that answers 200 with a non-JSON page is not an acknowledgement: dead letter, staging kept, a retry after the fix converges', async () => {
    estate = await Estate.create({ label: 'bad_html', tenants: ['acme'], rows: 400, sources: [{ id: 'customers', table: 'public.customers' }] });
    const html: Server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<html><body>Please sign in to the corporate proxy</body></html>');
    });
    await new Promise<void>((resolve) => html.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise<void>((resolve) => html.close(() => resolve())));
    const htmlUrl = `http://127.0.0.1:${(html.address() as { port: number }).port}/v1`;
    await editConfig(estate, (raw) => {
      raw.tenants[0]!.push.url = htmlUrl;
    });
    const agent = await estate.startAgent('agent-a');
    const onboard = await estate.cli(['onboard', '--tenant', 'acme', '--wait', '--timeout', '60']);
    expect(onboard.code).toBe(1);
    expect(failures(onboard.stderr)).toEqual({
      customers:
        '[permanent: PushRejectedError] PushRejectedError: Pushing RUN.1 to acme/customers: the receiver answered HTTP 200 (text/html) with a body that is not JSON, ' +
        'starting "<html><body>Please sign in to the corporate proxy</body></html>". This is not the Data Push API\'s answer; check push.url of tenant "acme" ' +
        '(http://127.0.0.1:PORT/v1): it must reach the API directly, not a proxy or login page. Nothing was recorded as delivered.',
    });
    expect(await requestsFor(estate, 'customers')).toBe(0);

    await editConfig(estate, (raw) => {
      raw.tenants[0]!.push.url = estate!.receiver.url;
    });
    agent.signal('SIGTERM');
    await agent.exited;
    await estate.startAgent('agent-b');
    expect((await estate.cli(['jobs', 'retry-dead', '--tenant', 'acme'])).code).toBe(0);
    const [job] = (await estate.queue.stats()).latest;
    await estate.waitForJobs([job!.id], 60_000);
    expect(allOk(await estate.verify('acme'))).toEqual({ customers: 'ok' });
  });

  it('a receiver that refuses the token (401): dead letter saying so, nothing recorded as delivered', async () => {
    estate = await Estate.create({ label: 'bad_401', tenants: ['acme'], rows: 400, sources: [{ id: 'customers', table: 'public.customers' }] });
    await estate.startAgent('agent-a');
    // the receiver's token changes; the agent still has the old one (and no newer one to refresh to)
    estate.tokens.acme = 'tok-rotated-at-the-receiver';
    const onboard = await estate.cli(['onboard', '--tenant', 'acme', '--wait', '--timeout', '60']);
    expect(onboard.code).toBe(1);
    expect(failures(onboard.stderr)).toEqual({
      customers:
        '[permanent: PushRejectedError] PushRejectedError: Pushing RUN.1 to acme/customers was rejected by the receiver with HTTP 401: missing or wrong credentials for tenant acme. ' +
        'The receiver refused the credentials of tenant "acme": put the current token (push.token) or API key (push.apiKey) in the secret the configuration names, then `cdc-agent jobs retry-dead --tenant acme`.',
    });
    expect(await requestsFor(estate, 'customers')).toBe(0);
  });

  it('a source login that fails: dead letter naming tenant, connection and what to do', async () => {
    estate = await Estate.create({ label: 'bad_login', tenants: ['acme'], rows: 400, sources: [{ id: 'customers', table: 'public.customers' }] });
    await editConfig(estate, (raw) => {
      const url = new URL(String(raw.tenants[0]!.connections.legacy!.url));
      url.username = 'no_such_login';
      url.password = 'wrong';
      raw.tenants[0]!.connections.legacy!.url = url.toString();
    });
    await estate.startAgent('agent-a');
    const onboard = await estate.cli(['onboard', '--tenant', 'acme', '--wait', '--timeout', '60']);
    expect(onboard.code).toBe(1);
    // The server's own words depend on its authentication method: a trust-auth server says the role does not
    // exist (28000), a password-auth server (the embedded one) that the password failed (28P01).
    const refused = '(?:28000: invalid authorization \\(login refused\\)\\): role "no_such_login" does not exist|28P01: invalid authorization \\(login refused\\)\\): password authentication failed for user "no_such_login")';
    const serverSays = '(?:role "no_such_login" does not exist|password authentication failed for user "no_such_login")';
    expect(failures(onboard.stderr).customers).toMatch(
      new RegExp(
        '^' +
          escape('[permanent: PermanentError] PermanentError: Tenant "acme", source "customers": the source database refused the login of connection "legacy" (PostgreSQL query failed (PostgreSQL ') +
          refused +
          escape("). Check that connection's user and password (or the secret they name) and that the login exists with SELECT rights; then `cdc-agent jobs retry-dead --tenant acme`.\n  caused by PermanentError: PostgreSQL query failed (PostgreSQL ") +
          refused +
          escape('\n  caused by error: ') +
          serverSays +
          '$',
      ),
    );
    expect(await requestsFor(estate, 'customers')).toBe(0);
  });

  it('control database unreachable at start: the agent stays up, not ready, backs off without flooding the log, and starts once it is reachable', async () => {
    estate = await Estate.create({ label: 'bad_ctl', tenants: ['acme'], rows: 200, sources: [{ id: 'customers', table: 'public.customers' }] });
    const real = new URL(estate.control.url);
    // a port where nothing listens yet; later a plain TCP relay to the real server opens there
    const probe: TcpServer = createTcpServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const port = (probe.address() as { port: number }).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    await editConfig(estate, (raw) => {
      const url = new URL(real.toString());
      url.host = `127.0.0.1:${port}`;
      raw.control = { ...(raw.control as Json), url: url.toString() };
    });
    const child = spawnCli(['--config', estate.configPath, 'run', '--no-schedule', '--worker-id', 'early', '--health-host', '127.0.0.1'], { env: estate.env() });
    const agent = new AgentProcess('early', child);
    estate.agents.push(agent);
    const starting = JSON.parse(await agent.waitFor(/"msg":"agent starting"/)) as { healthPort: number };
    const health = `http://127.0.0.1:${starting.healthPort}`;
    await new Promise((r) => setTimeout(r, 6_000));
    expect(child.exitCode).toBeNull();
    expect((await fetch(`${health}/healthz`, { signal: AbortSignal.timeout(10_000) })).status).toBe(200);
    expect((await fetch(`${health}/readyz`, { signal: AbortSignal.timeout(10_000) })).status).toBe(503);
    const waits = agent.messages().filter((m) => m.msg === 'control database not reachable yet; retrying');
    // 1 s, 2 s, 4 s: a handful of lines, each waiting longer than the last
    expect(waits.length).toBeGreaterThanOrEqual(2);
    expect(waits.length).toBeLessThanOrEqual(4);
    expect(waits.map((w) => w.retryInMs)).toEqual([1000, 2000, 4000].slice(0, waits.length));
    expect(agent.lines.length).toBeLessThan(10);

    const relay = createTcpServer((socket) => {
      const upstream = tcpConnect(Number(real.port || 5432), real.hostname);
      socket.pipe(upstream).pipe(socket);
      socket.on('error', () => upstream.destroy());
      upstream.on('error', () => socket.destroy());
    });
    await new Promise<void>((resolve) => relay.listen(port, '127.0.0.1', resolve));
    // not awaited: the relay's connections close when the agent is killed in afterEach
    cleanups.push(() => void relay.close());
    await agent.waitFor(/"msg":"agent running"/, 40_000);
    expect((await fetch(`${health}/readyz`, { signal: AbortSignal.timeout(10_000) })).status).toBe(200);
  }, 120_000);
});
