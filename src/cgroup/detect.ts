import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  checkName,
  childCgroups,
  errnoCode,
  killUntilEmpty,
  readKey,
  readNumber,
  rmdirCgroup,
} from './files.ts';
import { type DaemonCpuset, joinDaemonCpuset, removeStaleDaemonCpusets } from './daemon-cpuset.ts';
import { thawV1 } from './freezer.ts';
import type { FreezeControl } from './thaw-guard.ts';
import { V1Cgroup } from './v1.ts';
import { killCgroupV2, V2Cgroup } from './v2.ts';
import {
  CONTROLLERS,
  type Cgroup,
  type CgroupLimits,
  type CgroupSystem,
  type CgroupVersion,
  type Controller,
  type ControllerStatus,
  type DetectOptions,
} from './types.ts';

export const DEFAULT_CGROUP_ROOT = '/sys/fs/cgroup';

/**
 * Finds the cgroup interface of this node: v2 when `root` is a unified
 * hierarchy (it has `cgroup.controllers`), else v1 with one mounted directory
 * per controller (`cpu`, `cpuacct` or a joint `cpu,cpuacct`, …). A cgroup2
 * mount beside v1 hierarchies (hybrid mode, `root/unified`) is ignored: it
 * rarely holds controllers. Runs once at start, so it reads synchronously.
 *
 * @example
 * const cgroups = detectCgroups();
 * const cg = await cgroups.create('petri/ab12cd34/i-1', { cpu: 0.072, memoryBytes: 128 << 20, pidsMax: 256 });
 */
export function detectCgroups(
  root = DEFAULT_CGROUP_ROOT,
  options: DetectOptions = {},
): CgroupSystem {
  const self = parseSelfCgroup(options.selfCgroup ?? readSelfCgroup(root));
  const removeDir = options.removeDir ?? ((dir: string) => rmdirCgroup(dir));
  const killTimeoutMs = options.killTimeoutMs ?? 2000;
  if (isFile(path.join(root, 'cgroup.controllers'))) {
    return new V2System(root, self.get('') ?? '/', removeDir, killTimeoutMs);
  }
  const mounts = v1Mounts(root);
  if (mounts.size > 0) return new V1System(root, mounts, self, removeDir, killTimeoutMs);
  return new NoCgroups(root, `no cgroup file system at ${root}`);
}

/** The real /proc/self/cgroup, but only for the real root: fake trees in tests sit at their root. */
function readSelfCgroup(root: string): string {
  if (root !== DEFAULT_CGROUP_ROOT) return '';
  try {
    return fs.readFileSync('/proc/self/cgroup', 'utf8');
  } catch {
    return '';
  }
}

/** Maps each v1 controller (and '' for the v2 hierarchy) to the node's own cgroup path. */
function parseSelfCgroup(text: string): Map<string, string> {
  const paths = new Map<string, string>();
  for (const line of text.split('\n')) {
    const match = /^\d+:([^:]*):(.*)$/.exec(line.trim());
    if (!match) continue;
    const [, controllers, cgroupPath] = match;
    if (controllers === '') paths.set('', cgroupPath);
    for (const name of controllers.split(',')) if (name) paths.set(name, cgroupPath);
  }
  return paths;
}

function isFile(file: string): boolean {
  try {
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

function isDir(dir: string): boolean {
  try {
    return fs.statSync(dir).isDirectory();
  } catch {
    return false;
  }
}

/**
 * v1 hierarchy directory of each controller. Joint mounts (`cpu,cpuacct`) come
 * first so the `cpu` and `cpuacct` symlinks to them resolve to one hierarchy.
 */
function v1Mounts(root: string): Map<Controller, string> {
  const mounts = new Map<Controller, string>();
  let names: string[];
  try {
    names = fs.readdirSync(root);
  } catch {
    return mounts;
  }
  names.sort((a, b) => Number(b.includes(',')) - Number(a.includes(',')));
  for (const name of names) {
    const dir = path.join(root, name);
    if (!isFile(path.join(dir, 'cgroup.procs'))) continue;
    for (const part of name.split(',')) {
      const controller = CONTROLLERS.find((c) => c === part);
      if (controller && !mounts.has(controller)) mounts.set(controller, dir);
    }
  }
  return mounts;
}

/** Why the node cannot write a cgroup directory, or undefined when it can. */
function notWritable(dir: string): string | undefined {
  try {
    fs.accessSync(dir, fs.constants.W_OK);
    return undefined;
  } catch (error) {
    if (process.geteuid?.() !== 0) return 'not root';
    return `${dir} is not writable (${errnoCode(error) ?? 'error'})`;
  }
}

/** The node's own cgroup under a mount, or the mount itself when that path is not visible (containers without a cgroup namespace). */
function nodeBase(mount: string, cgroupPath: string | undefined): string {
  if (!cgroupPath || cgroupPath === '/') return mount;
  const dir = path.join(mount, cgroupPath);
  return isDir(dir) ? dir : mount;
}

abstract class BaseSystem implements CgroupSystem {
  abstract readonly version: CgroupVersion;
  protected readonly statuses = new Map<Controller, ControllerStatus>();

  constructor(
    readonly root: string,
    protected readonly removeDir: (dir: string) => Promise<void>,
    protected readonly killTimeoutMs: number,
  ) {}

  controllers(): ControllerStatus[] {
    return CONTROLLERS.map(
      (name) => this.statuses.get(name) ?? { name, usable: false, reason: 'unknown' },
    );
  }

  usable(controller: Controller): boolean {
    return this.statuses.get(controller)?.usable ?? false;
  }

  abstract create(name: string, limits: CgroupLimits): Promise<Cgroup>;
  abstract daemonCpuset(name: string): Promise<DaemonCpuset | undefined>;
  abstract removeStaleDaemonCpusets(minAgeMs?: number): Promise<string[]>;

  /** The node's cgroup directories (one per hierarchy) that Petri nests its cgroups under. */
  protected abstract bases(): string[];
  /** Kills the processes of one cgroup directory. */
  protected abstract kill(dir: string): Promise<void>;

  async cleanup(prefix: string): Promise<number> {
    const parts = checkName(prefix);
    const removed = new Set<string>();
    for (const base of this.bases()) {
      const top = path.join(base, ...parts);
      for (const child of await childCgroups(top)) {
        await this.removeTree(child);
        removed.add(path.basename(child));
      }
      await this.removeTree(top);
      await this.removeEmptyParents(base, parts.slice(0, -1));
    }
    return removed.size;
  }

  /** Depth-first: a cgroup can only be removed once its children are. */
  private async removeTree(dir: string): Promise<void> {
    if (!isDir(dir)) return;
    for (const child of await childCgroups(dir)) await this.removeTree(child);
    await this.kill(dir);
    await this.removeDir(dir);
  }

  /** Removes `petri` (and any level above the node tag) when no other node still uses it. */
  private async removeEmptyParents(base: string, parts: string[]): Promise<void> {
    for (let depth = parts.length; depth > 0; depth--) {
      const dir = path.join(base, ...parts.slice(0, depth));
      if (!isDir(dir) || (await childCgroups(dir)).length > 0) return;
      try {
        await this.removeDir(dir);
      } catch (error) {
        // Another node made a sibling meanwhile: leave it.
        if (errnoCode(error) === 'ENOTEMPTY' || errnoCode(error) === 'EBUSY') return;
        throw error;
      }
    }
  }
}

class V1System extends BaseSystem {
  readonly version = 'v1' as const;
  private readonly baseDirs = new Map<Controller, string>();

  constructor(
    root: string,
    mounts: Map<Controller, string>,
    self: Map<string, string>,
    removeDir: (dir: string) => Promise<void>,
    killTimeoutMs: number,
  ) {
    super(root, removeDir, killTimeoutMs);
    for (const name of CONTROLLERS) {
      const mount = mounts.get(name);
      if (!mount) {
        this.statuses.set(name, { name, usable: false, reason: `controller ${name} not mounted` });
        continue;
      }
      const base = nodeBase(mount, self.get(name));
      const reason = notWritable(base);
      this.statuses.set(name, reason ? { name, usable: false, reason } : { name, usable: true });
      if (!reason) this.baseDirs.set(name, base);
    }
  }

  async create(name: string, limits: CgroupLimits): Promise<Cgroup> {
    return V1Cgroup.create(name, checkName(name), limits, {
      bases: this.baseDirs,
      removeDir: this.removeDir,
      killTimeoutMs: this.killTimeoutMs,
    });
  }

  protected bases(): string[] {
    return [...new Set(this.baseDirs.values())];
  }

  freezeControl(prefix: string): FreezeControl | undefined {
    const base = this.baseDirs.get('freezer');
    if (!base) return undefined;
    return { dir: path.join(base, ...checkName(prefix)), file: 'freezer.state', thawed: 'THAWED' };
  }

  async cpuUsageMs(prefix: string): Promise<number | undefined> {
    const base = this.baseDirs.get('cpuacct');
    if (!base || !this.usable('cpuacct')) return undefined;
    const ns = await readNumber(path.join(base, ...checkName(prefix), 'cpuacct.usage'));
    return ns === undefined ? undefined : ns / 1e6;
  }

  async daemonCpuset(name: string): Promise<DaemonCpuset | undefined> {
    const base = this.baseDirs.get('cpuset');
    return base ? joinDaemonCpuset(base, name, this.removeDir) : undefined;
  }

  async removeStaleDaemonCpusets(minAgeMs?: number): Promise<string[]> {
    const base = this.baseDirs.get('cpuset');
    return base ? removeStaleDaemonCpusets(base, minAgeMs) : [];
  }

  protected async kill(dir: string): Promise<void> {
    // A crashed node may have left an instance frozen: v1 tasks act on SIGKILL only once thawed.
    await thawV1(dir);
    await killUntilEmpty([path.join(dir, 'cgroup.procs')], this.killTimeoutMs);
  }
}

class V2System extends BaseSystem {
  readonly version = 'v2' as const;
  private readonly base: string;

  constructor(
    root: string,
    selfPath: string,
    removeDir: (dir: string) => Promise<void>,
    killTimeoutMs: number,
  ) {
    super(root, removeDir, killTimeoutMs);
    this.base = nodeBase(root, selfPath);
    const available = readWords(path.join(this.base, 'cgroup.controllers'));
    const reason = notWritable(this.base) ?? this.delegationProblem(available);
    for (const name of CONTROLLERS) {
      if (name === 'cpuacct') {
        // v2 accounts CPU time in cpu.stat without a controller of its own.
        this.statuses.set(name, { name, usable: reason === undefined && available.has('cpu') });
      } else if (name === 'freezer') {
        // v2 freezes any non-root cgroup through cgroup.freeze, without a controller.
        const missing = reason ?? this.freezeProblem();
        this.statuses.set(
          name,
          missing ? { name, usable: false, reason: missing } : { name, usable: true },
        );
      } else if (!available.has(name)) {
        this.statuses.set(name, {
          name,
          usable: false,
          reason: `controller ${name} not available in cgroup v2`,
        });
      } else {
        this.statuses.set(name, reason ? { name, usable: false, reason } : { name, usable: true });
      }
    }
    const cpuacct = this.statuses.get('cpuacct');
    if (cpuacct && !cpuacct.usable)
      cpuacct.reason = reason ?? 'controller cpu not available in cgroup v2';
  }

  /** Why cgroup.freeze is missing: it exists in every non-root cgroup from kernel 5.2. */
  private freezeProblem(): string | undefined {
    if (isFile(path.join(this.base, 'cgroup.freeze'))) return undefined;
    if (this.base !== this.root) return `no cgroup.freeze in ${this.base} (kernel before 5.2)`;
    const [major = 0, minor = 0] = os.release().split('.').map(Number);
    return major > 5 || (major === 5 && minor >= 2) ? undefined : 'cgroup.freeze needs kernel 5.2+';
  }

  /**
   * v2's "no internal processes" rule: a non-root cgroup holding processes
   * cannot hand controllers to children. Then Petri needs a delegated cgroup
   * (e.g. systemd `Delegate=yes` with the node in a leaf of it).
   */
  private delegationProblem(available: Set<string>): string | undefined {
    if (this.base === this.root || available.size === 0) return undefined;
    const enabled = readWords(path.join(this.base, 'cgroup.subtree_control'));
    const procs = readWords(path.join(this.base, 'cgroup.procs'));
    if (procs.size === 0 || enabled.size > 0) return undefined;
    return `node's cgroup ${this.base} holds processes, so it cannot delegate controllers (run Petri in a delegated cgroup)`;
  }

  async create(name: string, limits: CgroupLimits): Promise<Cgroup> {
    const usable = new Set(CONTROLLERS.filter((c) => c !== 'cpuacct' && this.usable(c)));
    return V2Cgroup.create(name, checkName(name), limits, {
      base: this.base,
      controllers: usable,
      removeDir: this.removeDir,
      killTimeoutMs: this.killTimeoutMs,
    });
  }

  protected bases(): string[] {
    return this.controllers().some((c) => c.usable) ? [this.base] : [];
  }

  freezeControl(prefix: string): FreezeControl | undefined {
    if (!this.usable('freezer')) return undefined;
    return { dir: path.join(this.base, ...checkName(prefix)), file: 'cgroup.freeze', thawed: '0' };
  }

  async cpuUsageMs(prefix: string): Promise<number | undefined> {
    if (!this.controllers().some((c) => c.usable)) return undefined;
    const usec = await readKey(
      path.join(this.base, ...checkName(prefix), 'cpu.stat'),
      'usage_usec',
    );
    return usec === undefined ? undefined : usec / 1000;
  }

  async daemonCpuset(): Promise<DaemonCpuset | undefined> {
    return undefined;
  }

  async removeStaleDaemonCpusets(): Promise<string[]> {
    return [];
  }

  protected async kill(dir: string): Promise<void> {
    await killCgroupV2(dir, this.killTimeoutMs);
  }
}

function readWords(file: string): Set<string> {
  try {
    return new Set(fs.readFileSync(file, 'utf8').split(/\s+/).filter(Boolean));
  } catch {
    return new Set();
  }
}

/** A node without cgroups: creating one is an error, cleanup finds nothing. */
class NoCgroups implements CgroupSystem {
  readonly version = 'none' as const;
  constructor(
    readonly root: string,
    private readonly reason: string,
  ) {}
  controllers(): ControllerStatus[] {
    return CONTROLLERS.map((name) => ({ name, usable: false, reason: this.reason }));
  }
  usable(): boolean {
    return false;
  }
  async create(): Promise<Cgroup> {
    throw new Error(`cgroups unavailable: ${this.reason}`);
  }
  async cleanup(): Promise<number> {
    return 0;
  }
  async daemonCpuset(): Promise<DaemonCpuset | undefined> {
    return undefined;
  }
  async removeStaleDaemonCpusets(): Promise<string[]> {
    return [];
  }
}
