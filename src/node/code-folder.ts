import { constants } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { PetriError } from '../errors.ts';

/** Where a deploy's code comes from, as named in errors. */
export type SourceField = 'source.archive' | 'source.path';

export interface CodeLimits {
  /** Sum of file sizes. */
  maxCodeBytes: number;
  /** Files, folders and symlinks. */
  maxEntries: number;
}

type Kind = 'directory' | 'file' | 'symlink';

const MiB = 1024 * 1024;
const MAX_NAME_BYTES = 255;
const MAX_PATH_BYTES = 4096;
/** Created files are never writable by the instance, whatever the archive said. */
const FILE_MODE = 0o644;
const EXECUTABLE_MODE = 0o755;
const DIRECTORY_MODE = 0o755;
const CREATE_FLAGS =
  constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

/** "250 MB" for whole MiB, else bytes. */
export function sizeText(bytes: number): string {
  return bytes % MiB === 0 ? `${bytes / MiB} MB` : `${bytes} bytes`;
}

/** Whether `child` is `parent` or lies under it (both absolute and normalised). */
export function isInside(child: string, parent: string): boolean {
  if (child === parent) return true;
  return child.startsWith(parent.endsWith(path.sep) ? parent : parent + path.sep);
}

/** `InvalidSpec` for the code of a deploy, naming the field (and the entry, if any). */
export function invalidCode(field: SourceField, message: string, entry?: string): PetriError {
  const details: Record<string, unknown> = { issues: [{ field, message }] };
  if (entry !== undefined) details.entry = entry;
  return new PetriError('InvalidSpec', message, details);
}

/**
 * An entry's path inside the function folder, `""` for the folder itself.
 * Absolute paths and `..` components are refused, never rewritten: an archive
 * that tries them is hostile or broken either way.
 */
export function entryPath(field: SourceField, name: string): string {
  const reject = (why: string): PetriError =>
    invalidCode(field, `${field} entry ${JSON.stringify(name)} ${why}`, name);
  if (name.includes('\0')) throw reject('has a NUL byte in its name');
  if (name.startsWith('/')) throw reject('is an absolute path');
  const parts = name.split('/').filter((part) => part !== '' && part !== '.');
  if (parts.includes('..')) throw reject('has a ".." component');
  if (parts.some((part) => Buffer.byteLength(part) > MAX_NAME_BYTES))
    throw reject(`has a name over ${MAX_NAME_BYTES} bytes`);
  const rel = parts.join('/');
  if (Buffer.byteLength(rel) > MAX_PATH_BYTES) throw reject(`is over ${MAX_PATH_BYTES} bytes long`);
  return rel;
}

/**
 * Builds one version's code folder from entries that may be hostile (an
 * archive, or a folder its owner may change under us). Every path is checked
 * to stay inside; files are created exclusively and without following
 * symlinks, so nothing planted earlier redirects a write; nothing goes
 * through a symlink it made; modes are 0644/0755 (no setuid, no devices);
 * sizes and entry counts stop at the limits as they are reached.
 */
export class CodeFolderWriter {
  /** What each created path is; the folder is new, so this is all there is in it. */
  private readonly kinds = new Map<string, Kind>([['', 'directory']]);
  private readonly symlinks: string[] = [];
  private entries = 0;
  /** File bytes written so far. */
  bytes = 0;

  private constructor(
    /** The folder's real path. */
    readonly root: string,
    private readonly limits: CodeLimits,
    readonly field: SourceField,
  ) {}

  /** Creates the (new, empty) folder `root`. */
  static async create(
    root: string,
    limits: CodeLimits,
    field: SourceField,
  ): Promise<CodeFolderWriter> {
    await fs.mkdir(root, { mode: DIRECTORY_MODE });
    await fs.chmod(root, DIRECTORY_MODE);
    return new CodeFolderWriter(await fs.realpath(root), limits, field);
  }

  /** `InvalidSpec` naming an entry. */
  reject(entry: string, why: string): PetriError {
    return invalidCode(this.field, `${this.field} entry ${JSON.stringify(entry)} ${why}`, entry);
  }

  async directory(rel: string): Promise<void> {
    const existing = this.kinds.get(rel);
    if (existing === 'directory') return;
    if (existing) throw this.reject(rel, 'appears twice');
    await this.makeParents(rel);
    await this.makeDirectory(rel);
  }

  /**
   * Writes a file from its data, counting bytes as they arrive; `declaredSize`
   * (from a tar header or a stat) lets an oversized file fail before a byte of it is written.
   */
  async file(
    rel: string,
    executable: boolean,
    data: AsyncIterable<Buffer>,
    declaredSize: number,
  ): Promise<void> {
    if (this.kinds.has(rel)) throw this.reject(rel, 'appears twice');
    if (this.bytes + declaredSize > this.limits.maxCodeBytes) throw this.tooBig(rel);
    await this.makeParents(rel);
    this.count(rel);
    const handle = await fs.open(this.abs(rel), CREATE_FLAGS, 0o600);
    this.kinds.set(rel, 'file');
    try {
      for await (const chunk of data) {
        this.bytes += chunk.length;
        if (this.bytes > this.limits.maxCodeBytes) throw this.tooBig(rel);
        for (let offset = 0; offset < chunk.length;) {
          offset += (await handle.write(chunk, offset)).bytesWritten;
        }
      }
      await handle.chmod(executable ? EXECUTABLE_MODE : FILE_MODE);
    } finally {
      await handle.close();
    }
  }

  /** A symlink whose target stays inside the folder (checked again, for real, in `finish`). */
  async symlink(rel: string, target: string): Promise<void> {
    if (this.kinds.has(rel)) throw this.reject(rel, 'appears twice');
    if (target === '') throw this.reject(rel, 'is a symlink with an empty target');
    if (target.includes('\0')) throw this.reject(rel, 'is a symlink with a NUL byte in its target');
    if (path.posix.isAbsolute(target))
      throw this.reject(rel, `is a symlink to the absolute path ${JSON.stringify(target)}`);
    const resolved = path.posix.normalize(path.posix.join(path.posix.dirname(rel), target));
    if (resolved === '..' || resolved.startsWith('../'))
      throw this.reject(
        rel,
        `is a symlink to ${JSON.stringify(target)}, which leaves the function folder`,
      );
    await this.makeParents(rel);
    this.count(rel);
    await fs.symlink(target, this.abs(rel));
    this.kinds.set(rel, 'symlink');
    this.symlinks.push(rel);
  }

  /**
   * Checks every symlink as the kernel resolves it: a chain of links, each
   * harmless on its own (`a -> .`, `b -> a/..`), can still climb out, and a
   * link to nothing could later point at whatever appears there.
   */
  async finish(): Promise<void> {
    for (const rel of this.symlinks) {
      const real = await fs.realpath(this.abs(rel)).catch(() => undefined);
      if (real === undefined)
        throw this.reject(rel, 'is a symlink to nothing inside the function folder');
      if (!isInside(real, this.root))
        throw this.reject(rel, 'is a symlink that resolves outside the function folder');
    }
  }

  private abs(rel: string): string {
    const abs = path.join(this.root, rel);
    // entryPath already refused ".." and absolute names; this guards against a slip.
    if (!isInside(abs, this.root)) throw this.reject(rel, 'leaves the function folder');
    return abs;
  }

  private async makeParents(rel: string): Promise<void> {
    const parts = rel.split('/');
    let prefix = '';
    for (const part of parts.slice(0, -1)) {
      prefix = prefix ? `${prefix}/${part}` : part;
      const kind = this.kinds.get(prefix);
      if (kind === 'directory') continue;
      if (kind) throw this.reject(rel, `lies under the ${kind} ${JSON.stringify(prefix)}`);
      await this.makeDirectory(prefix);
    }
  }

  private async makeDirectory(rel: string): Promise<void> {
    this.count(rel);
    const abs = this.abs(rel);
    await fs.mkdir(abs, { mode: DIRECTORY_MODE });
    await fs.chmod(abs, DIRECTORY_MODE);
    this.kinds.set(rel, 'directory');
  }

  private count(rel: string): void {
    this.entries += 1;
    if (this.entries > this.limits.maxEntries) {
      const max = this.limits.maxEntries;
      throw invalidCode(
        this.field,
        `${this.field} holds more than ${max} files, folders and symlinks (deploy.maxEntries); stopped at ${JSON.stringify(rel)}`,
        rel,
      );
    }
  }

  private tooBig(rel: string): PetriError {
    const max = sizeText(this.limits.maxCodeBytes);
    return invalidCode(
      this.field,
      `${this.field} holds more than ${max} of files (deploy.maxCodeBytes); stopped at ${JSON.stringify(rel)}`,
      rel,
    );
  }
}
