import fs from 'node:fs';
import path from 'node:path';
import type { SandboxConfig } from '../config.ts';
import type { SandboxRootReport } from './types.ts';

/** The instances' host name (bwrap --hostname), also in their /etc/hosts. */
export const INSTANCE_HOSTNAME = 'petri';
/** The user name instances run as, whatever their uid. */
export const INSTANCE_USER = 'petri';
/** Where instances keep files: their private /tmp (the home in passwd, HOME in env). */
export const INSTANCE_HOME = '/tmp';
/** Private tmpfs mounts of every instance, each capped at the function's tmpSizeMb. */
export const PRIVATE_TMPFS = ['/tmp', '/dev/shm'];

const BASE_PASSWD = [
  'root:x:0:0:root:/root:/usr/sbin/nologin',
  'nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin',
];
const BASE_GROUP = ['root:x:0:', 'nogroup:x:65534:'];
const HOSTS = [
  '127.0.0.1\tlocalhost',
  `127.0.1.1\t${INSTANCE_HOSTNAME}`,
  '::1\tlocalhost ip6-localhost ip6-loopback',
];
const NSSWITCH = [
  'passwd: files',
  'group: files',
  'hosts: files dns',
  'protocols: files',
  'services: files',
];

interface RootEntry {
  path: string;
  /** The host's symlink target, recreated as is; absent: bound read-only. */
  symlink?: string;
}

export interface SandboxRootOptions {
  stateDir: string;
  config: SandboxConfig;
  /** The Node binary instances run (the daemon's own). */
  nodeBinary: string;
}

/**
 * The filesystem every instance starts from, made once per node under
 * `<stateDir>/sandbox`: which host paths are shown (read-only, or as the
 * host's symlinks on merged-/usr systems), a curated /etc rebuilt at each
 * start, and small passwd/group files per instance uid. Nothing else of the
 * host appears: bwrap's root is an empty tmpfs, remounted read-only.
 *
 * @example
 * const root = SandboxRoot.build({ stateDir, config: config.sandbox, nodeBinary: process.execPath });
 * spawn('bwrap', [...root.filesystemArgs(uid, 64 << 20, [codeDir]), '--', ...command]);
 */
export class SandboxRoot {
  private readonly entries: RootEntry[];
  /** Real paths of the bound root folders, to tell whether a host path is already visible. */
  private readonly visibleDirs: string[];
  private readonly etcDir: string;
  private readonly usersDir: string;
  private readonly copiedEtc: string[];
  private readonly generatedEtc: string[];

  private constructor(
    private readonly options: SandboxRootOptions,
    readonly dir: string,
  ) {
    this.etcDir = path.join(dir, 'etc');
    this.usersDir = path.join(dir, 'users');
    this.entries = rootEntries(options.config.rootPaths);
    this.visibleDirs = this.entries
      .filter((entry) => entry.symlink === undefined)
      .map((entry) => fs.realpathSync(entry.path));
    const { copied, generated } = buildEtc(this.etcDir, options.config.etcFiles);
    this.copiedEtc = copied;
    this.generatedEtc = generated;
    makeDir(this.usersDir);
  }

  /** Writes the node's sandbox folder (synchronously: a few small files, once at start). */
  static build(options: SandboxRootOptions): SandboxRoot {
    const dir = path.join(path.resolve(options.stateDir), 'sandbox');
    makeDir(dir);
    return new SandboxRoot(options, dir);
  }

  /** A file in the node's sandbox folder (not visible to instances). */
  file(name: string): string {
    return path.join(this.dir, name);
  }

  /**
   * bwrap arguments that build an instance's whole filesystem: the root
   * entries, /etc with its own user, /dev, its own /proc, the private
   * tmpfs mounts, then `binds` (and the node binary) read-only at their host
   * paths, then the root remounted read-only.
   */
  filesystemArgs(
    uid: number,
    tmpBytes: number,
    binds: string[],
    writable: string[] = [],
  ): string[] {
    const stateDir = path.resolve(this.options.stateDir);
    const account = this.accountFiles(uid);
    const args: string[] = [];
    for (const entry of this.entries) {
      if (entry.symlink !== undefined) args.push('--symlink', entry.symlink, entry.path);
      else args.push('--ro-bind', entry.path, entry.path);
    }
    // A root folder that holds the state dir must not show it (other functions, the database).
    if (this.visibleDirs.some((dir) => isUnder(stateDir, dir))) {
      args.push('--size', '4096', '--tmpfs', stateDir);
    }
    args.push('--ro-bind', this.etcDir, '/etc');
    args.push('--ro-bind', account.passwd, '/etc/passwd', '--ro-bind', account.group, '/etc/group');
    args.push('--dev', '/dev', '--proc', '/proc');
    for (const mount of PRIVATE_TMPFS) {
      args.push('--perms', '1777', '--size', String(tmpBytes), '--tmpfs', mount);
    }
    const made = new Set<string>();
    const bound: string[] = [];
    for (const bind of [this.options.nodeBinary, ...binds]) {
      if (this.visible(bind) || bound.some((dir) => isUnder(bind, dir))) continue;
      bound.push(bind);
      for (const dir of ancestors(bind)) {
        // bwrap would make missing parents mode 0700, which the instance's user cannot enter.
        if (!made.has(dir)) args.push('--dir', dir);
        made.add(dir);
      }
      args.push('--ro-bind', bind, bind);
      made.add(bind);
    }
    for (const dir of writable) {
      for (const parent of ancestors(dir)) if (!made.has(parent)) args.push('--dir', parent);
      for (const parent of ancestors(dir)) made.add(parent);
      args.push('--bind', dir, dir);
    }
    args.push('--remount-ro', '/');
    return args;
  }

  /** True when `file` already shows inside through a root entry (and is not hidden again). */
  visible(file: string): boolean {
    const stateDir = path.resolve(this.options.stateDir);
    let real: string;
    try {
      real = fs.realpathSync(file);
    } catch {
      return false;
    }
    if (isUnder(real, stateDir) || PRIVATE_TMPFS.some((mount) => isUnder(real, mount))) {
      return false;
    }
    return this.visibleDirs.some((dir) => isUnder(real, dir));
  }

  /** passwd and group naming `uid` as the instance user, made the first time the uid is used. */
  accountFiles(uid: number): { passwd: string; group: string } {
    const dir = path.join(this.usersDir, String(uid));
    const passwd = path.join(dir, 'passwd');
    const group = path.join(dir, 'group');
    if (!fs.existsSync(group)) {
      makeDir(dir);
      const gecos = 'Petri instance';
      writeReadable(passwd, [
        ...BASE_PASSWD,
        `${INSTANCE_USER}:x:${uid}:${uid}:${gecos}:${INSTANCE_HOME}:/bin/sh`,
      ]);
      writeReadable(group, [...BASE_GROUP, `${INSTANCE_USER}:x:${uid}:`]);
    }
    return { passwd, group };
  }

  report(userNamespacesBlocked: boolean): SandboxRootReport {
    const { uidRange } = this.options.config;
    return {
      uids: { first: uidRange.first, count: uidRange.count, user: INSTANCE_USER },
      paths: this.entries.map((entry) =>
        entry.symlink === undefined ? { path: entry.path } : { ...entry },
      ),
      etc: { copied: [...this.copiedEtc], generated: [...this.generatedEtc] },
      node: this.options.nodeBinary,
      tmpfs: [...PRIVATE_TMPFS],
      home: INSTANCE_HOME,
      userNamespacesBlocked,
    };
  }
}

/** Root paths as they are on this host, parents first; missing ones are left out. */
function rootEntries(rootPaths: string[]): RootEntry[] {
  const entries: RootEntry[] = [];
  for (const rootPath of [...new Set(rootPaths)].sort()) {
    let stat: fs.Stats;
    try {
      stat = fs.lstatSync(rootPath);
    } catch {
      continue;
    }
    if (stat.isSymbolicLink()) entries.push({ path: rootPath, symlink: fs.readlinkSync(rootPath) });
    else if (stat.isDirectory() || stat.isFile()) entries.push({ path: rootPath });
  }
  return entries;
}

/**
 * Rebuilds the curated /etc: the listed host entries (top level followed
 * if it is a symlink, so resolv.conf pointing into /run still works;
 * symlinks inside folders kept as they are), then the generated files.
 */
function buildEtc(etcDir: string, etcFiles: string[]): { copied: string[]; generated: string[] } {
  fs.rmSync(etcDir, { recursive: true, force: true });
  makeDir(etcDir);
  const copied: string[] = [];
  for (const entry of etcFiles) {
    const from = path.join('/etc', entry);
    const to = path.join(etcDir, entry);
    let stat: fs.Stats;
    try {
      stat = fs.statSync(from);
    } catch {
      continue;
    }
    for (const dir of ancestors(to).filter((dir) => isUnder(dir, etcDir) && dir !== etcDir)) {
      makeDir(dir);
    }
    if (stat.isDirectory()) {
      fs.cpSync(from, to, { recursive: true, verbatimSymlinks: true });
    } else if (stat.isFile()) {
      fs.copyFileSync(from, to);
      fs.chmodSync(to, 0o644);
    } else {
      continue;
    }
    copied.push(entry);
  }
  const generated = ['hostname', 'passwd', 'group'];
  writeReadable(path.join(etcDir, 'hostname'), [INSTANCE_HOSTNAME]);
  // Placeholders: each instance gets its own pair bound over them.
  writeReadable(path.join(etcDir, 'passwd'), BASE_PASSWD);
  writeReadable(path.join(etcDir, 'group'), BASE_GROUP);
  for (const [name, lines] of [
    ['hosts', HOSTS],
    ['nsswitch.conf', NSSWITCH],
  ] as const) {
    if (copied.includes(name)) continue;
    writeReadable(path.join(etcDir, name), lines);
    generated.push(name);
  }
  return { copied, generated };
}

/** Modes set explicitly: the daemon's umask must not make them unreadable to instances. */
function makeDir(dir: string): void {
  fs.mkdirSync(dir, { recursive: true });
  fs.chmodSync(dir, 0o755);
}

function writeReadable(file: string, lines: readonly string[]): void {
  fs.writeFileSync(file, lines.join('\n') + '\n');
  fs.chmodSync(file, 0o644);
}

/** The folders above `file`, outermost first, without `/`. */
function ancestors(file: string): string[] {
  const dirs: string[] = [];
  for (let dir = path.dirname(file); dir !== path.dirname(dir); dir = path.dirname(dir)) {
    dirs.unshift(dir);
  }
  return dirs;
}

export function isUnder(child: string, parent: string): boolean {
  const rel = path.relative(parent, child);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}
