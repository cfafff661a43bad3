/** Every configuration under examples/ is valid for this build (the docs stay true). */
import { readdir } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { compileConfig, readConfigFile } from '../../src/config/load.ts';

const dir = new URL('../../examples/', import.meta.url);
const files = (await readdir(dir)).filter((f) => f.endsWith('.yaml'));

describe('examples/', () => {
  it('has examples', () => {
    expect(files).toEqual(expect.arrayContaining(['demo.yaml', 'sqlserver-to-postgres.yaml', 'sqlserver-to-sqlserver.yaml']));
  });
  it.each(files)('%s passes the configuration schema', async (file) => {
    const config = compileConfig(await readConfigFile(new URL(file, dir).pathname), file);
    expect(config.tenants.length).toBeGreaterThan(0);
  });
});
