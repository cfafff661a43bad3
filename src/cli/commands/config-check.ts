/** `cdc-agent config check`: validate the configuration, resolve its secrets, print it masked. */
import type { Command } from 'commander';
import { stringify } from 'yaml';
import { maskConfig, type CompiledConfig } from '../../config/load.ts';
import { DURATION_KEYS, formatDurationMs } from '../../config/duration.ts';
import { EXIT } from '../exit-codes.ts';
import { loadFromCli, type CliIo } from '../context.ts';

/** Fields the compiler derives for the code (milliseconds of settings given in seconds); not the operator's. */
const DERIVED = new Set(['leaseMs', 'heartbeatMs', 'drainGraceMs']);

/** The compiled configuration as an operator wrote it: durations spelt `15m`, derived fields left out. */
function asWritten(node: unknown, key = ''): unknown {
  if (typeof node === 'number' && DURATION_KEYS.has(key)) return formatDurationMs(node);
  if (Array.isArray(node)) return node.map((item) => asWritten(item));
  if (node !== null && typeof node === 'object') {
    return Object.fromEntries(Object.entries(node).filter(([k]) => !DERIVED.has(k)).map(([k, v]) => [k, asWritten(v, k)]));
  }
  return node;
}

/**
 * Connect to every source and describe it as a run's snapshot would (src/snapshot/introspect.ts), and check a watermark
 * column's existence, type and NULLs (src/watermark/watermark.ts). Reads catalogs only; returns the problems.
 */
async function checkSources(config: CompiledConfig, io: CliIo): Promise<string[]> {
  const { SourceConnections } = await import('../../agent/connections.ts');
  const { describeSource, where } = await import('../../snapshot/introspect.ts');
  const { watermarkColumn } = await import('../../watermark/watermark.ts');
  const sources = new SourceConnections(config);
  const problems: string[] = [];
  try {
    for (const tenant of config.tenants) {
      for (const source of tenant.sources) {
        try {
          const db = await sources.get(tenant.id, source.connection);
          const described = await describeSource(db, tenant.id, source);
          let note = `${described.schema.columns.length} columns, key (${described.schema.key.join(', ')})`;
          if (source.watermark) {
            const column = watermarkColumn(db.dialect, described.natives, source);
            if ('problem' in column) {
              problems.push(`${where(tenant.id, source)}: ${column.problem}`);
              continue;
            }
            note += `, watermark ${column.name} (${column.kind}, ${column.nativeType}${column.overlapMs ? `, overlap ${formatDurationMs(column.overlapMs)}` : ''})`;
          }
          io.err(`${tenant.id}/${source.id}: ok: ${note}`);
        } catch (error) {
          problems.push(error instanceof Error ? error.message : String(error));
        }
      }
    }
  } finally {
    await sources.closeAll();
  }
  return problems;
}

export function registerConfigCheck(program: Command, io: CliIo, setExit: (code: number) => void): void {
  const config = program.command('config').description('inspect the configuration');
  config
    .command('check')
    .description('validate the configuration file, resolve every secret, and print the compiled result with secrets masked')
    .option('--json', 'print JSON instead of YAML')
    .option('--sources', 'also connect to every source and check it as a run would: it exists, its key, its columns, its watermark column')
    .action(async (options: { json?: boolean; sources?: boolean }, command: Command) => {
      const loaded = await loadFromCli(command, io);
      const { path: _path, ...rest } = loaded.unresolved;
      const masked = asWritten(maskConfig(rest));
      io.out(options.json ? JSON.stringify(masked, null, 2) : stringify(masked));
      if (!options.sources) {
        io.err(`Configuration ${loaded.unresolved.path} is valid; all secrets resolved.`);
        setExit(EXIT.ok);
        return;
      }
      const problems = await checkSources(loaded.config, io);
      if (problems.length > 0) {
        io.err(`Configuration ${loaded.unresolved.path}: ${problems.length} source problem(s):`);
        for (const p of problems) io.err(`  - ${p}`);
        setExit(EXIT.usage);
        return;
      }
      io.err(`Configuration ${loaded.unresolved.path} is valid; all secrets resolved; every source was read and fits its configuration.`);
      setExit(EXIT.ok);
    });
}
