#!/usr/bin/env node
// Runs the TypeScript sources directly: Node 22.18+ strips types natively (package.json "engines").
const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 22 || (major === 22 && minor < 18)) {
  process.stderr.write(
    `cdc-agent needs Node.js 22.18 or newer; this is ${process.version}. ` +
      'Run it through npm (`npm run cdc-agent -- …` or `npx cdc-agent …`), which uses the Node pinned in devDependencies.\n',
  );
  process.exit(2);
}
const { main } = await import('../src/cli/main.ts');
process.exitCode = await main(process.argv);
