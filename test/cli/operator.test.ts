/**
 * An operator's first bad day (issue 18), through the CLI as its own OS process: each message asserted as the
 * operator reads it. The TTY form of `--wait` runs under a pseudo-terminal (util-linux `script`).
 */
import { spawn, spawnSync } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { parse, stringify } from 'yaml';
import { afterEach, describe, expect, it } from 'vitest';
import { BIN, runCli, spawnCli, writeConfig } from '../support/cli.ts';
import { createTestDatabase, type TestDatabase } from '../support/databases.ts';
import { AgentProcess, Estate } from '../support/estate.ts';

let estate: Estate | undefined;
const dbs: TestDatabase[] = [];
afterEach(async () => {
  await estate?.close();
  estate = undefined;
  for (const db of dbs.splice(0)) await db.drop();
});

const SCRIPT = spawnSync('script', ['--version']).status === 0;

function configFor(control: string, source: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    control: { dialect: 'postgres', url: control },
    tenants: [
      {
        id: 'acme',
        push: { url: 'http://127.0.0.1:1/v1', token: 'abc' },
        connections: { legacy: { dialect: 'postgres', url: control } },
        sources: [{ id: 'orders', connection: 'legacy', table: 'public.orders', key: ['id'], every: '15m', ...source }],
      },
    ],
  };
}

/** Start the CLI and resolve `seen` once its stderr contains `text`; `stderr()` is all it wrote so far. */
function spawnUntil(args: string[], env: Record<string, string>, text: string): { seen: Promise<void>; exited: Promise<number | null>; stderr: () => string; signal: (s: NodeJS.Signals) => void } {
  const child = spawnCli(args, { env });
  let stderr = '';
  const seen = new Promise<void>((resolve) =>
    child.stderr!.on('data', (c: Buffer) => {
      stderr += c.toString('utf8');
      if (stderr.includes(text)) resolve();
    }),
  );
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { seen, exited, stderr: () => stderr, signal: (s) => child.kill(s) };
}

/** Run `args` under a pseudo-terminal; `input` is typed once `when` matches the output so far. */
function underTty(args: string[], env: Record<string, string>, typed?: { when: RegExp; input: string }): Promise<{ code: number | null; output: string }> {
  const command = [process.execPath, BIN, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  return new Promise((resolve) => {
    const child = spawn('script', ['-qfec', command, '/dev/null'], { env: { ...process.env, ...env, COLUMNS: '160', LINES: '40' }, stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    let sent = false;
    const onData = (chunk: Buffer) => {
      output += chunk.toString('utf8');
      if (typed && !sent && typed.when.test(output)) {
        sent = true;
        child.stdin.write(typed.input);
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    const timer = setTimeout(() => child.kill('SIGKILL'), 90_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

describe('config check catches what later fails', () => {
  it('refuses an out-of-range cron step and a control character in a table name with exit 2, by path', async () => {
    const path = await writeConfig(configFor('postgres://postgres@127.0.0.1:5432/test', { every: undefined, schedule: '*/99 * * * *', table: 'public.ord\u0001ers' }), 'bad.yaml');
    const r = await runCli(['--config', path, 'config', 'check']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`Invalid configuration in ${path}:`);
    expect(r.stderr).toContain('tenants[0].sources[0].schedule: not a valid cron expression: "*/99 * * * *" minute step /99 is outside 1-60');
    expect(r.stderr).toContain('tenants[0].sources[0].table: contains a control character; rename it at the source or use a query source');
  });

  it('names the file it checked and shows durations as written, without derived fields', async () => {
    const path = await writeConfig(configFor('postgres://postgres@127.0.0.1:5432/test'), 'named.yaml');
    const r = await runCli(['--config', path, 'config', 'check']);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain(`Configuration ${path} is valid; all secrets resolved.`);
    expect(r.stdout).toMatch(/^ {8}every: 15m$/m);
    expect(r.stdout).toMatch(/^ {2}pollInterval: 1s$/m);
    expect(r.stdout).toMatch(/^ {8}mismatchResyncEvery: 1h$/m);
    expect(r.stdout).not.toMatch(/leaseMs|heartbeatMs|drainGraceMs/);
  });

  it('sync --wait --timeout abc exits 2 with what to give', async () => {
    const path = await writeConfig(configFor('postgres://postgres@127.0.0.1:5432/test'));
    const r = await runCli(['--config', path, 'sync', '--tenant', 'acme', '--wait', '--timeout', 'abc']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--timeout "abc": give seconds (600) or a duration (10m, 1h)');
  });
});

describe('the control database, named', () => {
  it('not migrated: status, onboard and plan say to run migrate; unreachable: the message names the control database', async () => {
    const empty = await createTestDatabase('postgres', 'op_empty');
    dbs.push(empty);
    const path = await writeConfig(configFor(empty.url), 'ctl.yaml');
    const target = new URL(empty.url);
    const expected = `Error: The control database (postgres ${target.host}${target.pathname}, \`control\` in ${path}) has no agent tables: run \`cdc-agent migrate\` first.`;
    for (const args of [['status'], ['onboard', '--tenant', 'acme'], ['plan', '--tenant', 'acme', '--source', 'orders']]) {
      const r = await runCli(['--config', path, ...args]);
      expect(r.stderr.trim(), args[0]).toBe(expected);
      expect(r.code, args[0]).toBe(1);
    }
    const gone = await writeConfig(configFor('postgres://postgres@127.0.0.1:1/nowhere'), 'gone.yaml');
    const r = await runCli(['--config', gone, 'status']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`^Error: Cannot reach the control database \\(postgres 127\\.0\\.0\\.1:1/nowhere, \`control\` in ${gone.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}\\): .*ECONNREFUSED.*Check that it runs and that control\\.url`));
  });
});

describe('following jobs with --wait [postgres → postgres]', () => {
  it('with no agent running says so after --unclaimed-after; Ctrl-C then exits 130 and says the jobs go on', async () => {
    estate = await Estate.create({ label: 'op_noagent', tenants: ['acme'], rows: 500, sources: [{ id: 'customers', table: 'public.customers' }] });
    const waiting = spawnUntil(['--config', estate.configPath, 'sync', '--tenant', 'acme', '--wait', '--unclaimed-after', '1'], estate.env(), 'No agent has claimed');
    await waiting.seen;
    waiting.signal('SIGINT');
    expect(await waiting.exited).toBe(130);
    const stderr = waiting.stderr();
    expect(stderr).toMatch(/No agent has claimed these jobs for \d+ s; is `cdc-agent run` running against this control database\?/);
    expect(stderr).toMatch(/Stopped following 1 job\(s\) \(acme\/customers job \d+\); they go on in the agent\. Follow them again with `cdc-agent sync --tenant acme --wait` or watch `cdc-agent status`\./);
    const [job] = await estate.queue.getJobs([String((await estate.control.db.query<{ id: string }>('SELECT id::text AS id FROM cdc_jobs'))[0]!.id)]);
    expect(job).toMatchObject({ status: 'queued' });
  });

  it.skipIf(!SCRIPT)('on a terminal: a bar per source in rows, a finished source shown done, the cursor shown again', async () => {
    estate = await Estate.create({ label: 'op_tty', tenants: ['acme'], rows: 4000, sources: [{ id: 'customers', table: 'public.customers' }, { id: 'orders', table: 'public.orders' }] });
    const agent = await estate.startAgent('agent-a');
    const { code, output } = await underTty(['--config', estate.configPath, 'onboard', '--tenant', 'acme', '--wait', '--timeout', '120'], estate.env());
    expect(code).toBe(0);
    const customers = (await estate.receiverStats('acme', 'customers')).rowsHeld!;
    expect(output).toMatch(new RegExp(`acme/customers +\\|[█░]+\\| done \\(${customers.toLocaleString('en-US')} changes\\)`));
    expect(output).toMatch(/acme\/orders +\|[█░]+\| done \(/);
    expect(output).toContain('All 2 source(s) synced.');
    expect(output).toContain('\u001b[?25l'); // hidden while the bars draw
    expect(output.lastIndexOf('\u001b[?25h')).toBeGreaterThan(output.lastIndexOf('\u001b[?25l')); // and shown again

    // the agent's log lines each name their own phase, once
    const phases = Object.fromEntries(['snapshot taken', 'diff computed', 'changes pushed and acknowledged'].map((msg) => [msg, agent.messages().find((m) => m.msg === msg)?.phase]));
    expect(phases).toEqual({ 'snapshot taken': 'snapshot', 'diff computed': 'diff', 'changes pushed and acknowledged': 'push' });
    for (const line of agent.lines) expect((line.match(/"phase":/g) ?? []).length, line).toBeLessThanOrEqual(1);
  });

  it.skipIf(!SCRIPT)('on a terminal: Ctrl-C restores the cursor, exits 130 and says how to follow again', async () => {
    estate = await Estate.create({ label: 'op_ttyint', tenants: ['acme'], rows: 500, sources: [{ id: 'customers', table: 'public.customers' }] });
    const { code, output } = await underTty(['--config', estate.configPath, 'onboard', '--tenant', 'acme', '--wait', '--unclaimed-after', '1'], estate.env(), {
      when: /No agent has claimed/,
      input: '\u0003',
    });
    expect(output).toMatch(/No agent has claimed these jobs for \d+ s/);
    expect(output).toMatch(/Stopped following 1 job\(s\) \(acme\/customers job \d+\); they go on in the agent\. Follow them again with `cdc-agent onboard --tenant acme --wait`/);
    expect(output.lastIndexOf('\u001b[?25h')).toBeGreaterThan(output.lastIndexOf('\u001b[?25l'));
    expect(code).toBe(130);
  });
});

describe('a receiver that refuses connections [postgres → postgres]', () => {
  it('each failed push attempt is logged at warn within seconds, --wait shows the cause, which names push.url once', async () => {
    estate = await Estate.create({ label: 'op_refused', tenants: ['acme'], rows: 500, sources: [{ id: 'customers', table: 'public.customers' }] });
    const raw = parse(await readFile(estate.configPath, 'utf8')) as { tenants: Array<{ push: { url: string } }> };
    raw.tenants[0]!.push.url = 'http://127.0.0.1:1/v1';
    await writeFile(estate.configPath, stringify(raw));
    const agent = await estate.startAgent('agent-a');
    const waiting = spawnUntil(['--config', estate.configPath, 'onboard', '--tenant', 'acme', '--wait'], estate.env(), 'push failing, retrying:');
    await waiting.seen;
    const stderr = waiting.stderr();
    // seen while the attempt is still retrying (it lasts ≈ 100 s), not after: the attempt has not failed yet
    const line = await agent.waitFor(/"msg":"push request failed; retrying"/, 30_000);
    expect((await estate.queue.getJobs([String((await estate.control.db.query<{ id: string }>('SELECT id::text AS id FROM cdc_jobs'))[0]!.id)]))[0]).toMatchObject({ status: 'running', attempts: 1 });
    const logged = JSON.parse(line) as { level: number; cause: string; phase: string; attempt: number; stack?: string };
    expect(logged).toMatchObject({ level: 40, phase: 'push', attempt: expect.any(Number) });
    expect(logged.stack).toBeUndefined();
    const cause =
      'Pushing RUN.1 to acme/customers failed: ECONNREFUSED: connection refused (connect ECONNREFUSED 127.0.0.1:1). The receiver of tenant "acme" at push.url http://127.0.0.1:1/v1 did not answer: ' +
      'check that URL, that the receiver runs, and the network path to it (DNS, proxy, firewall).';
    expect(logged.cause.replace(/\d{8}T\d{6}Z-[0-9a-f]{8}/, 'RUN')).toBe(cause);
    expect(stderr.replace(/\d{8}T\d{6}Z-[0-9a-f]{8}/, 'RUN')).toContain(`acme/customers: push failing, retrying: ${cause}`);
    expect(logged.cause.match(/ECONNREFUSED 127\.0\.0\.1:1/g)).toHaveLength(1);
    waiting.signal('SIGINT');
    expect(await waiting.exited).toBe(130);
  });
});

describe('rolling configuration changes [postgres → postgres]', () => {
  it('a replica whose configuration lacks a source leaves its jobs for one that has it; status shows them waiting', async () => {
    estate = await Estate.create({ label: 'op_rolling', tenants: ['acme'], rows: 1000, sources: [{ id: 'customers', table: 'public.customers' }, { id: 'orders', table: 'public.orders' }] });
    // the old replica's configuration: orders is not in it yet
    const raw = parse(await readFile(estate.configPath, 'utf8')) as { tenants: Array<{ sources: Array<{ id: string }> }> };
    raw.tenants[0]!.sources = raw.tenants[0]!.sources.filter((s) => s.id !== 'orders');
    const oldConfig = await writeConfig(raw, 'old.yaml');
    const old = new AgentProcess('old', spawnCli(['--config', oldConfig, 'run', '--no-schedule', '--worker-id', 'old', '--health-host', '127.0.0.1'], { env: estate.env() }));
    estate.agents.push(old);
    await old.waitFor(/"msg":"agent running"/);

    // the new configuration onboards both; only customers is the old replica's to take
    const ids = (JSON.parse((await estate.cli(['onboard', '--tenant', 'acme', '--json'])).stdout) as { jobs: Array<{ source: string; jobId: string }> }).jobs;
    const byName = Object.fromEntries(ids.map((j) => [j.source, j.jobId]));
    await estate.waitForJobs([byName.customers!]);
    await new Promise((r) => setTimeout(r, 2000));
    const [orders] = await estate.queue.getJobs([byName.orders!]);
    expect(orders).toMatchObject({ status: 'queued', attempts: 0, lastError: null });
    expect(old.messages().some((m) => m.source === 'orders')).toBe(false);

    const fromNew = JSON.parse((await estate.cli(['status', '--json'])).stdout) as { sources: Array<{ source: string; queued: number; waitingSeconds: number | null }>; unknownSources: unknown[] };
    expect(fromNew.sources.find((s) => s.source === 'orders')).toMatchObject({ queued: 1, waitingSeconds: expect.any(Number) });
    expect(fromNew.unknownSources).toEqual([]);
    const fromOld = await runCli(['--config', oldConfig, 'status'], { env: estate.env() });
    expect(fromOld.stdout).toMatch(/Queued jobs of sources not in this configuration \(only a replica whose configuration has them claims them\):\n {2}acme\/orders: 1 queued, waiting \d+s/);

    // the new replica arrives and takes it
    await estate.startAgent('new');
    await estate.waitForJobs([byName.orders!]);
  });
});

describe('one tenant\'s missing secret [postgres → postgres]', () => {
  it('the daemon and status serve the other tenants and name the broken one; config check still fails', async () => {
    estate = await Estate.create({ label: 'op_broken', tenants: ['acme', 'beta'], rows: 500, sources: [{ id: 'customers', table: 'public.customers' }] });
    const env = estate.env();
    delete env.CDC_SECRET_PUSH_TOKEN_BETA;
    const agent = new AgentProcess('agent-a', spawnCli(['--config', estate.configPath, 'run', '--no-schedule', '--worker-id', 'agent-a', '--health-host', '127.0.0.1'], { env }));
    estate.agents.push(agent);
    await agent.waitFor(/"msg":"agent running"/);
    const complaint = JSON.parse(await agent.waitFor(/tenant beta is not served/)) as { level: number; tenant: string; problems: string[] };
    expect(complaint).toMatchObject({ level: 50, tenant: 'beta' });
    expect(complaint.problems[0]).toMatch(/^tenants\[1\]\.push\.token: .*push-token-beta/);

    const onboard = await runCli(['--config', estate.configPath, 'onboard', '--tenant', 'acme', '--wait', '--timeout', '60'], { env });
    expect(onboard.stderr).toContain('All 1 source(s) synced.');
    expect(onboard.code).toBe(0);
    const refused = await runCli(['--config', estate.configPath, 'onboard', '--tenant', 'beta'], { env });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/^Tenant beta cannot be used: its secrets cannot be resolved:\n {2}- tenants\[1\]\.push\.token: /);

    const port = Number(agent.messages().find((m) => m.msg === 'agent starting')!.healthPort);
    const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ ok: true, tenantsNotServed: [{ tenant: 'beta', problems: [expect.stringMatching(/push\.token/)] }] });

    const status = await runCli(['--config', estate.configPath, 'status'], { env });
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(/^acme +customers /m);
    expect(status.stdout).toMatch(/Tenant beta is not served: its secrets cannot be resolved\.\n {2}- tenants\[1\]\.push\.token: /);
    const json = JSON.parse((await runCli(['--config', estate.configPath, 'status', '--json'], { env })).stdout) as { sources: Array<{ tenant: string }>; tenantsNotServed: Array<{ tenant: string }> };
    expect(json.sources.map((s) => s.tenant)).toEqual(['acme']);
    expect(json.tenantsNotServed.map((b) => b.tenant)).toEqual(['beta']);

    const check = await runCli(['--config', estate.configPath, 'config', 'check'], { env });
    expect(check.code).toBe(2);
    expect(check.stderr).toMatch(/Missing secrets:\n {2}- tenants\[1\]\.push\.token: /);
  });
});

describe('status tells the truth [postgres → postgres]', () => {
  it('a dead-lettered run ends failed with its error; LAST ERROR shows the actionable text and points to --json', async () => {
    estate = await Estate.create({ label: 'op_dead', tenants: ['acme'], rows: 500, sources: [{ id: 'legacy_notes', table: 'public.legacy_notes' }] });
    await estate.startAgent('agent-a');
    const onboard = await estate.cli(['onboard', '--tenant', 'acme', '--wait', '--timeout', '60']);
    expect(onboard.code).toBe(1);
    const status = JSON.parse((await estate.cli(['status', '--json'])).stdout) as { sources: Array<{ dead: number; lastRun: { status: string; finishedAt: string | null; error: string | null } }> };
    expect(status.sources[0]).toMatchObject({ dead: 1, lastRun: { status: 'failed', finishedAt: expect.any(String), error: expect.stringMatching(/legacy_notes/) } });
    const table = (await estate.cli(['status'])).stdout;
    expect(table).toMatch(/initial failed/);
    expect(table).not.toMatch(/\[permanent: PermanentError\]|PermanentError:/);
    expect(table).toMatch(/legacy_notes/);
    expect(table).toContain('(full errors: cdc-agent status --json)');

    const listed = JSON.parse((await estate.cli(['jobs', 'list', '--state', 'dead', '--json'])).stdout) as { jobs: Array<Record<string, unknown>> };
    expect(listed.jobs).toEqual([
      expect.objectContaining({ tenant: 'acme', source: 'legacy_notes', kind: 'initial', state: 'dead', attempts: 1, ageSeconds: expect.any(Number), lastError: expect.stringMatching(/legacy_notes/) }),
    ]);
    const list = await estate.cli(['jobs', 'list']);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/^ID +STATE +KIND +SOURCE +ATTEMPTS +AGE +PHASE +OWNER +LAST ERROR$/m);
    expect(list.stdout).toMatch(/^\d+ +dead +initial +acme\/legacy_notes +1\/20 +\d+s +\S+ +- +.*legacy_notes/m);
    expect((await estate.cli(['jobs', 'list', '--state', 'succeeded'])).stdout).toBe('No jobs.\n');
    const bad = await estate.cli(['jobs', 'list', '--state', 'sleeping']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--state sleeping: give one of queued, running, dead, succeeded');
  });
});
