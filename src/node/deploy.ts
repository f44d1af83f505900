import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { PetriError } from '../errors.ts';
import { bundleHandler } from '../runtime/index.ts';
import type { FunctionSource, FunctionSpec } from '../spec/index.ts';

const run = promisify(execFile);

/** Where one version of a function lives on the node. */
export interface VersionLayout {
  /** The version folder, bound read-only into the sandbox. */
  dir: string;
  /** The function's own files. */
  code: string;
  /** The esbuild bundle of a `node` handler. */
  bundle: string;
}

export function versionLayout(stateDir: string, name: string, version: number): VersionLayout {
  const dir = path.join(stateDir, 'functions', name, `v${version}`);
  return { dir, code: path.join(dir, 'code'), bundle: path.join(dir, 'bundle.mjs') };
}

function invalidSource(message: string): PetriError {
  return new PetriError('InvalidSpec', message, { issues: [{ field: 'source', message }] });
}

async function copyFromPath(from: string, to: string): Promise<void> {
  if (!path.isAbsolute(from)) throw invalidSource(`source.path must be absolute, got "${from}"`);
  const stat = await fs.stat(from).catch(() => undefined);
  if (!stat?.isDirectory())
    throw invalidSource(`source.path "${from}" is not a folder on the node`);
  await fs.cp(from, to, {
    recursive: true,
    filter: (src) => path.basename(src) !== '.git',
  });
}

async function extractArchive(base64: string, to: string): Promise<void> {
  const file = `${to}.tar.gz`;
  await fs.writeFile(file, Buffer.from(base64, 'base64'));
  try {
    await fs.mkdir(to, { recursive: true });
    await run('tar', ['-xzf', file, '-C', to, '--no-same-owner']);
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr ?? String(err);
    throw invalidSource(`source.archive is not a readable tar.gz: ${stderr.trim()}`);
  } finally {
    await fs.rm(file, { force: true });
  }
}

/**
 * Puts a function version's code in place (copied, so later edits to the
 * source folder do not change a deployed version) and bundles `node` handlers.
 * On failure nothing of the version is left behind.
 */
export async function materialize(
  layout: VersionLayout,
  spec: FunctionSpec,
  source: FunctionSource,
): Promise<void> {
  await fs.rm(layout.dir, { recursive: true, force: true });
  await fs.mkdir(layout.dir, { recursive: true });
  try {
    if ('path' in source) await copyFromPath(source.path, layout.code);
    else await extractArchive(source.archive, layout.code);
    // A folder on the node bundles where it is, so imports resolve against the
    // node_modules around it (as `node` would); an archive must bring its own.
    const bundleFrom = 'path' in source ? source.path : layout.code;
    if (spec.runtime === 'node') await bundleHandler(bundleFrom, spec.handler, layout.bundle);
    await makeReadableByInstances(layout.dir);
  } catch (err) {
    await fs.rm(layout.dir, { recursive: true, force: true });
    throw err;
  }
}

/**
 * Instances run as an unprivileged uid that owns nothing: their code must be
 * readable (and folders enterable) by everyone, whatever modes it came with,
 * and writable by nobody but root. Symlinks are never followed (a link to
 * /etc/shadow must not get its target's mode changed), and only regular
 * files and folders are touched (opening a FIFO would block).
 */
export async function makeReadableByInstances(dir: string): Promise<void> {
  const entries = await fs.readdir(dir, { recursive: true, withFileTypes: true });
  const targets = [
    dir,
    ...entries
      .filter((e) => e.isFile() || e.isDirectory())
      .map((e) => path.join(e.parentPath, e.name)),
  ];
  const flags = fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK;
  for (const target of targets) {
    const handle = await fs.open(target, flags);
    try {
      const stat = await handle.stat();
      // Executable (or a folder) for everyone if for anyone; no setuid, setgid or sticky bits.
      await handle.chmod(stat.isDirectory() || (stat.mode & 0o111) !== 0 ? 0o755 : 0o644);
    } finally {
      await handle.close();
    }
  }
}

/**
 * One digest of a version folder: every file's path and content (code and
 * bundle), so two deploys of the same code and dependencies compare equal.
 */
export async function folderDigest(dir: string): Promise<string> {
  const hash = createHash('sha256');
  const entries = await fs.readdir(dir, { recursive: true, withFileTypes: true });
  const files = entries
    .filter((entry) => !entry.isDirectory())
    .map((entry) => path.relative(dir, path.join(entry.parentPath, entry.name)))
    .sort();
  for (const file of files) {
    hash.update(file).update('\0');
    hash.update(await fs.readFile(path.join(dir, file))).update('\0');
  }
  return hash.digest('hex');
}
