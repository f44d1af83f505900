import { constants, type Stats } from 'node:fs';
import { createHash } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import zlib from 'node:zlib';
import type { DeployConfig } from '../config.ts';
import { PetriError } from '../errors.ts';
import { bundleHandler } from '../runtime/index.ts';
import type { FunctionSource, FunctionSpec } from '../spec/index.ts';
import {
  CodeFolderWriter,
  entryPath,
  invalidCode,
  isInside,
  sizeText,
  type SourceField,
} from './code-folder.ts';
import { readTar, TarFormatError, type TarEntry } from './tar.ts';

/** Where one version of a function lives on the node. */
export interface VersionLayout {
  /** The version folder, bound read-only into the sandbox. */
  dir: string;
  /** The function's own files. */
  code: string;
  /** The esbuild bundle of a `node` handler. */
  bundle: string;
}

/** The folder holding every version of a function. */
export function functionDir(stateDir: string, name: string): string {
  return path.join(stateDir, 'functions', name);
}

export function versionLayout(stateDir: string, name: string, version: number): VersionLayout {
  const dir = path.join(functionDir(stateDir, name), `v${version}`);
  return { dir, code: path.join(dir, 'code'), bundle: path.join(dir, 'bundle.mjs') };
}

/** The version numbers that have a folder on disk, oldest first. */
export async function versionsOnDisk(stateDir: string, name: string): Promise<number[]> {
  const names = await fs.readdir(functionDir(stateDir, name)).catch(() => [] as string[]);
  return names
    .map((entry) => /^v([1-9][0-9]*)$/.exec(entry)?.[1])
    .filter((digits): digits is string => digits !== undefined)
    .map(Number)
    .sort((a, b) => a - b);
}

/**
 * Frees everything one version has on disk: its code and bundle. Whatever a
 * version gains later (a restore snapshot, DESIGN §5) belongs under
 * `layout.dir` too, so that this removes it with the rest.
 */
export async function removeVersionFiles(layout: VersionLayout): Promise<void> {
  await fs.rm(layout.dir, { recursive: true, force: true });
}

/** The function's folder once it holds no version any more (a deploy may be making one). */
export async function removeFunctionDirIfEmpty(stateDir: string, name: string): Promise<void> {
  await fs.rmdir(functionDir(stateDir, name)).catch(() => undefined);
}

/** What a deploy may read and write (node config `deploy` plus the state dir). */
export interface DeployRules extends DeployConfig {
  stateDir: string;
}

/**
 * Checks that `source.path` is a folder under one of `allowedSourcePaths`
 * (by name and, after resolving symlinks, for real) and clear of the state
 * dir; returns its real path. Nothing outside the allowed folders is touched.
 */
export async function checkSourcePath(from: string, rules: DeployRules): Promise<string> {
  const field = 'source.path';
  if (!path.isAbsolute(from))
    throw invalidCode(field, `source.path must be absolute, got "${from}"`);
  const wanted = path.resolve(from);
  const roots = rules.allowedSourcePaths.map((root) => path.resolve(root));
  const notAllowed = (why: string): PetriError =>
    new PetriError(
      'SourceNotAllowed',
      `source.path "${from}" ${why}; this node deploys only from ${roots.join(', ') || 'nowhere'} (deploy.allowedSourcePaths)`,
      {
        path: from,
        allowedSourcePaths: roots,
        issues: [{ field, message: 'is outside deploy.allowedSourcePaths' }],
      },
    );
  if (!roots.some((root) => isInside(wanted, root))) throw notAllowed('is outside them');
  const real = await fs.realpath(wanted).catch(() => undefined);
  const stat = real === undefined ? undefined : await fs.stat(real).catch(() => undefined);
  if (real === undefined || !stat?.isDirectory())
    throw invalidCode(field, `source.path "${from}" is not a folder on the node`);
  const realRoots = await Promise.all(roots.map((root) => fs.realpath(root).catch(() => root)));
  if (!realRoots.some((root) => isInside(real, root)))
    throw notAllowed(`resolves to "${real}", outside them`);
  const state = await fs.realpath(rules.stateDir).catch(() => path.resolve(rules.stateDir));
  if (isInside(real, state) || isInside(state, real))
    throw invalidCode(field, `source.path "${from}" overlaps the node's state dir ${state}`);
  return real;
}

/** Bytes a base64 string decodes to, without decoding it. */
function base64Bytes(base64: string): number {
  const padding = base64.endsWith('==') ? 2 : base64.endsWith('=') ? 1 : 0;
  return Math.floor((base64.length * 3) / 4) - padding;
}

/** Bytes of tar framing allowed per entry beyond its data: up to four headers and padding. */
const TAR_OVERHEAD_PER_ENTRY = 4 * 1024;

/** Passes chunks on until `max` bytes have gone by, then fails: the bomb stops here. */
async function* capped(
  source: AsyncIterable<Buffer>,
  max: number,
  tooMuch: () => Error,
): AsyncGenerator<Buffer> {
  let total = 0;
  for await (const chunk of source) {
    total += chunk.length;
    if (total > max) throw tooMuch();
    yield chunk;
  }
}

/**
 * Unpacks a base64 tar.gz into `to` as it decompresses: never to a
 * temporary file, never by the system `tar` (the daemon is root), and never
 * past the limits.
 */
async function extractArchive(base64: string, to: string, rules: DeployRules): Promise<void> {
  const field: SourceField = 'source.archive';
  const compressed = base64Bytes(base64);
  if (compressed > rules.maxArchiveBytes) {
    throw invalidCode(
      field,
      `source.archive is ${sizeText(compressed)} compressed; this node takes at most ${sizeText(rules.maxArchiveBytes)} (deploy.maxArchiveBytes)`,
    );
  }
  const writer = await CodeFolderWriter.create(to, rules, field);
  const gunzip = zlib.createGunzip();
  gunzip.end(Buffer.from(base64, 'base64'));
  const streamCap = rules.maxCodeBytes + rules.maxEntries * TAR_OVERHEAD_PER_ENTRY;
  const tooMuch = (): PetriError =>
    invalidCode(
      field,
      `source.archive unpacks to more than ${sizeText(rules.maxCodeBytes)} (deploy.maxCodeBytes)`,
    );
  try {
    await readTar(capped(gunzip, streamCap, tooMuch), (entry, data) =>
      extractEntry(writer, entry, data),
    );
    await writer.finish();
  } catch (err) {
    if (err instanceof PetriError) throw err;
    if (err instanceof TarFormatError)
      throw invalidCode(field, `source.archive is not a valid tar: ${err.message}`, err.entry);
    if (isZlibError(err))
      throw invalidCode(field, `source.archive is not a readable gzip: ${err.message}`);
    throw err;
  } finally {
    gunzip.destroy();
  }
}

function isZlibError(err: unknown): err is Error {
  const code = (err as { code?: unknown }).code;
  return err instanceof Error && typeof code === 'string' && code.startsWith('Z_');
}

async function extractEntry(
  writer: CodeFolderWriter,
  entry: TarEntry,
  data: AsyncIterable<Buffer>,
): Promise<void> {
  const rel = entryPath(writer.field, entry.name);
  const refuse = (why: string): PetriError => writer.reject(entry.name, why);
  switch (entry.type) {
    case 'directory':
      if (rel !== '') await writer.directory(rel);
      return;
    case 'file':
      if (rel === '') throw refuse('is a file in place of the function folder');
      await writer.file(rel, (entry.mode & 0o111) !== 0, data, entry.size);
      return;
    case 'symlink':
      if (rel === '') throw refuse('is a symlink in place of the function folder');
      await writer.symlink(rel, entry.linkName);
      return;
    case 'hardlink':
      throw refuse(
        `is a hard link to ${JSON.stringify(entry.linkName)}; hard links are not allowed`,
      );
    case 'character-device':
      throw refuse('is a character device; devices are not allowed');
    case 'block-device':
      throw refuse('is a block device; devices are not allowed');
    case 'fifo':
      throw refuse('is a FIFO; special files are not allowed');
    case 'unsupported':
      throw refuse('has an unsupported tar type; only files, folders and symlinks are allowed');
  }
}

const READ_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;
const READ_CHUNK = 64 * 1024;

async function* readChunks(handle: fs.FileHandle): AsyncGenerator<Buffer> {
  for (;;) {
    const buffer = Buffer.allocUnsafe(READ_CHUNK);
    const { bytesRead } = await handle.read(buffer, 0, READ_CHUNK, null);
    if (bytesRead === 0) return;
    yield buffer.subarray(0, bytesRead);
  }
}

/** What a folder entry is, as `lstat` says (never following a symlink). */
function kindOf(stat: Stats): string {
  if (stat.isDirectory()) return 'directory';
  if (stat.isFile()) return 'file';
  if (stat.isSymbolicLink()) return 'symlink';
  if (stat.isFIFO()) return 'FIFO';
  if (stat.isSocket()) return 'socket';
  if (stat.isCharacterDevice()) return 'character device';
  if (stat.isBlockDevice()) return 'block device';
  return 'special file';
}

/**
 * Copies a folder on the node (its real path, from `checkSourcePath`) by the
 * archive rules. Its owner may change it while it is copied, so each file is
 * opened without following a symlink and then checked by what the kernel
 * opened (`/proc/self/fd`), not by the name that was listed.
 */
async function copyFolder(from: string, to: string, rules: DeployRules): Promise<void> {
  const writer = await CodeFolderWriter.create(to, rules, 'source.path');
  const owner = (await fs.stat(from)).uid;
  const unreadable = (rel: string, err: unknown): PetriError =>
    writer.reject(rel, `cannot be read (${(err as { code?: string }).code ?? String(err)})`);

  const copyFile = async (abs: string, rel: string): Promise<void> => {
    const handle = await fs.open(abs, READ_FLAGS).catch((err: unknown) => {
      throw unreadable(rel, err);
    });
    try {
      const stat = await handle.stat();
      if (!stat.isFile())
        throw writer.reject(rel, `is a ${kindOf(stat)}; special files are not allowed`);
      const opened = await fs.readlink(`/proc/self/fd/${handle.fd}`);
      if (!isInside(opened, from))
        throw writer.reject(rel, 'leaves the folder (it changed while being copied)');
      // A hard link is how a file from elsewhere (say /etc/shadow) gets a name in here.
      if (stat.nlink > 1 && stat.uid !== owner)
        throw writer.reject(
          rel,
          "is a hard link to a file of another user than the folder's owner",
        );
      await writer.file(rel, (stat.mode & 0o111) !== 0, readChunks(handle), stat.size);
    } finally {
      await handle.close();
    }
  };

  const walk = async (dir: string, rel: string): Promise<void> => {
    const entries = await fs.readdir(dir, { withFileTypes: true }).catch((err: unknown) => {
      throw unreadable(rel || '.', err);
    });
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const dirent of entries) {
      // Never function code, and often larger than the code itself.
      if (dirent.name === '.git') continue;
      const childRel = rel ? `${rel}/${dirent.name}` : dirent.name;
      const abs = path.join(dir, dirent.name);
      const stat = await fs.lstat(abs).catch((err: unknown) => {
        throw unreadable(childRel, err);
      });
      const kind = kindOf(stat);
      if (kind === 'directory') {
        await writer.directory(childRel);
        await walk(abs, childRel);
      } else if (kind === 'file') {
        await copyFile(abs, childRel);
      } else if (kind === 'symlink') {
        const target = await fs.readlink(abs).catch((err: unknown) => {
          throw unreadable(childRel, err);
        });
        await writer.symlink(childRel, target);
      } else {
        throw writer.reject(childRel, `is a ${kind}; special files are not allowed`);
      }
    }
  };
  await walk(from, '');
  await writer.finish();
}

/** `node_modules` folders above `dir`, nearest first: where a folder on the node finds its packages. */
async function nodeModulesAbove(dir: string): Promise<string[]> {
  const found: string[] = [];
  for (let parent = path.dirname(dir); ; parent = path.dirname(parent)) {
    const candidate = path.join(parent, 'node_modules');
    const real = await fs.realpath(candidate).catch(() => undefined);
    const isDirectory =
      real !== undefined && (await fs.stat(real).catch(() => undefined))?.isDirectory();
    if (real !== undefined && isDirectory) found.push(real);
    if (parent === path.dirname(parent)) return found;
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
  rules: DeployRules,
): Promise<void> {
  // Checked before anything is written, so a refused path leaves no trace.
  const from = 'path' in source ? await checkSourcePath(source.path, rules) : undefined;
  await fs.rm(layout.dir, { recursive: true, force: true });
  await fs.mkdir(layout.dir, { recursive: true, mode: 0o755 });
  try {
    if (from !== undefined) await copyFolder(from, layout.code, rules);
    else if ('archive' in source) await extractArchive(source.archive, layout.code, rules);
    if (spec.runtime === 'node') {
      // The bundle is made from the checked copy. A folder on the node also
      // finds packages in the node_modules around it (as `node` would, and
      // within the allowed folders); an archive must bring its own.
      const nodePaths = from === undefined ? [] : await nodeModulesAbove(from);
      const allowed =
        from === undefined
          ? []
          : await Promise.all(
              rules.allowedSourcePaths.map((dir) => fs.realpath(dir).catch(() => dir)),
            );
      const codeFromBundle = path.relative(path.dirname(layout.bundle), layout.code);
      await bundleHandler(layout.code, spec.handler, layout.bundle, codeFromBundle, {
        nodePaths,
        readableRoots: [await fs.realpath(layout.code), ...nodePaths, ...allowed],
      });
    }
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
    // A symlink is its target (it may name a folder, which has no content to read).
    const full = path.join(dir, file);
    const stat = await fs.lstat(full);
    const content = stat.isSymbolicLink()
      ? `-> ${await fs.readlink(full)}`
      : await fs.readFile(full);
    hash.update(content).update(stat.mode & 0o111 ? '\0x' : '\0');
  }
  return hash.digest('hex');
}
