import fs from 'node:fs/promises';
import path from 'node:path';
import { KeptFile } from '../sandbox/index.ts';
import {
  cpuQuotaUs,
  CFS_PERIOD_US,
  errnoCode,
  KeptControl,
  killUntilEmpty,
  readKey,
  readNumber,
  readOptional,
  readPids,
  retryVanishedParent,
  writeControl,
  writeIfPresent,
} from './files.ts';
import { freezeV1, thawV1 } from './freezer.ts';
import type { Cgroup, CgroupLimits, CgroupUsage, Controller, CpuSetting } from './types.ts';

/** How a v1 cgroup finds and removes its directories. */
export interface V1Context {
  /** For each usable controller, the node's own cgroup directory in that controller's hierarchy. */
  bases: ReadonlyMap<Controller, string>;
  removeDir: (dir: string) => Promise<void>;
  killTimeoutMs: number;
}

/** Controllers every instance joins (when usable); cpuset only when a cpuset is asked for. */
const ALWAYS: readonly Controller[] = ['cpu', 'cpuacct', 'memory', 'pids', 'freezer'];

/**
 * Makes `rel` under `base`, level by level. In the cpuset hierarchy a new
 * cgroup starts with empty cpus/mems and refuses processes, so each level
 * copies them from its parent (what `cgroup.clone_children` would do, without
 * changing the node's own cgroup).
 */
async function makeDirs(base: string, rel: string[], cpuset: boolean): Promise<string> {
  let dir = base;
  for (const part of rel) {
    const parent = dir;
    dir = path.join(dir, part);
    try {
      await fs.mkdir(dir);
    } catch (error) {
      if (errnoCode(error) !== 'EEXIST') throw error;
    }
    if (cpuset) await inheritCpuset(parent, dir);
  }
  return dir;
}

async function inheritCpuset(parent: string, dir: string): Promise<void> {
  for (const file of ['cpuset.cpus', 'cpuset.mems']) {
    const own = (await readOptional(path.join(dir, file)))?.trim();
    if (own) continue;
    const inherited = (await readOptional(path.join(parent, file)))?.trim();
    if (inherited) await writeControl(path.join(dir, file), inherited);
  }
}

export class V1Cgroup implements Cgroup {
  /** Leaf directory per controller; joint hierarchies (cpu,cpuacct) share one. */
  private readonly dirs = new Map<Controller, string>();
  private destroyed = false;
  /** The CPU quota and cpuset this cgroup last got (only this object writes them). */
  private readonly written: { quota?: number; cpus?: string } = {};
  private parentCpus: string | undefined;
  /** Quota and cpuset files, kept open: the microtask scheduler writes them at phase changes. */
  private readonly controls = new Map<string, KeptControl>();

  private constructor(
    readonly name: string,
    private readonly parts: string[],
    private readonly ctx: V1Context,
  ) {}

  static async create(name: string, parts: string[], limits: CgroupLimits, ctx: V1Context) {
    const cgroup = new V1Cgroup(name, parts, ctx);
    for (const controller of ALWAYS) await cgroup.join(controller);
    try {
      await cgroup.setMemory(limits.memoryBytes);
      await cgroup.setPids(limits.pidsMax);
      await cgroup.setCpu(limits);
    } catch (error) {
      await cgroup.destroy();
      throw error;
    }
    return cgroup;
  }

  /** Creates this cgroup's directory in the controller's hierarchy, when the controller is usable. */
  private async join(controller: Controller): Promise<string | undefined> {
    const known = this.dirs.get(controller);
    if (known) return known;
    const base = this.ctx.bases.get(controller);
    if (!base) return undefined;
    const dir = await retryVanishedParent(() =>
      makeDirs(base, this.parts, controller === 'cpuset'),
    );
    this.dirs.set(controller, dir);
    return dir;
  }

  private uniqueDirs(): string[] {
    return [...new Set(this.dirs.values())];
  }

  procsFiles(): string[] {
    return this.uniqueDirs().map((dir) => path.join(dir, 'cgroup.procs'));
  }

  private file(controller: Controller, name: string): string | undefined {
    const dir = this.dirs.get(controller);
    return dir && path.join(dir, name);
  }

  /** Memory without swap: memsw = limit where swap accounting exists, else swappiness 0. */
  private async setMemory(bytes: number): Promise<void> {
    const dir = this.dirs.get('memory');
    if (!dir) return;
    const limit = path.join(dir, 'memory.limit_in_bytes');
    const memsw = path.join(dir, 'memory.memsw.limit_in_bytes');
    try {
      await writeControl(limit, bytes);
      if (!(await writeIfPresent(memsw, bytes)))
        await writeIfPresent(path.join(dir, 'memory.swappiness'), 0);
    } catch (error) {
      // The kernel keeps limit <= memsw: raising a limit must raise memsw first.
      if (errnoCode(error) !== 'EINVAL') throw error;
      await writeControl(memsw, bytes);
      await writeControl(limit, bytes);
    }
  }

  private async setPids(max: number): Promise<void> {
    const file = this.file('pids', 'pids.max');
    if (file) await writeControl(file, Number.isFinite(max) ? max : 'max');
  }

  /**
   * Writes only the files whose value changes: the microtask scheduler calls
   * this at every phase change, where one transition should cost one write
   * (or none), not a period, a quota and a cpuset each time.
   */
  async setCpu(setting: CpuSetting): Promise<void> {
    const dir = this.dirs.get('cpu');
    if (dir) {
      if (this.written.quota === undefined) {
        await writeControl(path.join(dir, 'cpu.cfs_period_us'), CFS_PERIOD_US);
      }
      const quota = cpuQuotaUs(setting.cpu) ?? -1;
      if (quota !== this.written.quota) {
        this.written.quota = undefined; // unknown until the write succeeds
        this.control(path.join(dir, 'cpu.cfs_quota_us')).write(quota);
        this.written.quota = quota;
      }
    }
    await this.setCpuset(setting.cpus);
  }

  /** Joins the cpuset hierarchy only once a cpuset is asked for, moving the processes already running. */
  private async setCpuset(cpus: string | undefined): Promise<void> {
    const joined = this.dirs.has('cpuset');
    if (cpus === undefined && !joined) return;
    // Once joined, no await before the write: it lands in the caller's turn.
    const dir = this.dirs.get('cpuset') ?? (await this.join('cpuset'));
    if (!dir) return;
    // The parent's cores are the node's: read once, not at every phase change.
    this.parentCpus ??= (await readOptional(path.join(path.dirname(dir), 'cpuset.cpus')))?.trim();
    const value = cpus ?? this.parentCpus;
    if (value && value !== this.written.cpus) {
      this.written.cpus = undefined;
      this.control(path.join(dir, 'cpuset.cpus')).write(value);
      this.written.cpus = value;
    }
    if (joined) return;
    for (const pid of await this.pids()) {
      try {
        await writeControl(path.join(dir, 'cgroup.procs'), pid);
      } catch {
        // The process exited meanwhile.
      }
    }
  }

  private control(file: string): KeptControl {
    let control = this.controls.get(file);
    if (!control) this.controls.set(file, (control = new KeptControl(file)));
    return control;
  }

  /** Usage is read after every invocation, so its files stay open (see KeptFile). */
  private readonly kept = new Map<string, KeptFile | undefined>();

  private keptFile(controller: Controller, name: string): KeptFile | undefined {
    const key = `${controller}/${name}`;
    if (!this.kept.has(key)) {
      const file = this.file(controller, name);
      this.kept.set(key, file === undefined ? undefined : new KeptFile(file));
    }
    return this.kept.get(key);
  }

  async usage(): Promise<CgroupUsage> {
    const usage: CgroupUsage = {};
    const cpuNs = this.keptFile('cpuacct', 'cpuacct.usage')?.readNumber();
    if (cpuNs !== undefined) usage.cpuMs = cpuNs / 1e6;
    const peak = this.keptFile('memory', 'memory.max_usage_in_bytes')?.readNumber();
    if (peak !== undefined) usage.peakMemoryBytes = peak;
    return usage;
  }

  async resetPeak(): Promise<boolean> {
    const file = this.keptFile('memory', 'memory.max_usage_in_bytes');
    if (!file) return false;
    file.write(0);
    return true;
  }

  /** `oom_kill` in memory.oom_control (kernel 4.13+); older kernels only have failcnt, which also counts reclaim. */
  async oomKilled(): Promise<boolean> {
    const dir = this.dirs.get('memory');
    if (!dir) return false;
    const kills = await readKey(path.join(dir, 'memory.oom_control'), 'oom_kill');
    if (kills !== undefined) return kills > 0;
    return ((await readNumber(path.join(dir, 'memory.failcnt'))) ?? 0) > 0;
  }

  get canFreeze(): boolean {
    return this.dirs.has('freezer');
  }

  async freeze(): Promise<void> {
    const dir = this.dirs.get('freezer');
    if (!dir) throw new Error('no freezer hierarchy');
    await freezeV1(dir);
  }

  async thaw(): Promise<void> {
    const dir = this.dirs.get('freezer');
    if (dir) await thawV1(dir);
  }

  async pids(): Promise<number[]> {
    const lists = await Promise.all(this.procsFiles().map(readPids));
    return [...new Set(lists.flat())];
  }

  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const file of this.kept.values()) file?.close();
    for (const control of this.controls.values()) control.close();
    // A frozen v1 task does not act on SIGKILL until thawed.
    await this.thaw();
    await killUntilEmpty(this.procsFiles(), this.ctx.killTimeoutMs);
    for (const dir of this.uniqueDirs()) await this.ctx.removeDir(dir);
  }
}
