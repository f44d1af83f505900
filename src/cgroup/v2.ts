import fs from 'node:fs/promises';
import path from 'node:path';
import {
  cpuQuotaUs,
  CFS_PERIOD_US,
  errnoCode,
  exists,
  KeptControl,
  killUntilEmpty,
  readKey,
  readNumber,
  readPids,
  retryVanishedParent,
  writeControl,
  writeIfPresent,
} from './files.ts';
import { freezeV2, thawV2 } from './freezer.ts';
import type { Cgroup, CgroupLimits, CgroupUsage, Controller, CpuSetting } from './types.ts';

export interface V2Context {
  /** The node's own cgroup directory in the unified hierarchy. */
  base: string;
  /** Usable controllers (v2 names: cpu, cpuset, memory, pids; freezer: `cgroup.freeze` is there). */
  controllers: ReadonlySet<Controller>;
  removeDir: (dir: string) => Promise<void>;
  killTimeoutMs: number;
}

/**
 * Makes `parts` under the base, enabling the controllers in each ancestor's
 * `cgroup.subtree_control` (v2 hands a controller to children only when the
 * parent enables it).
 */
async function makeDirs(ctx: V2Context, parts: string[], cpuset: boolean): Promise<string> {
  const wanted = [...ctx.controllers].filter(
    (c) => c === 'cpu' || c === 'memory' || c === 'pids' || (cpuset && c === 'cpuset'),
  );
  const enable = wanted.map((c) => `+${c}`).join(' ');
  let dir = ctx.base;
  for (const part of parts) {
    if (enable) await writeControl(path.join(dir, 'cgroup.subtree_control'), enable);
    dir = path.join(dir, part);
    try {
      await fs.mkdir(dir);
    } catch (error) {
      if (errnoCode(error) !== 'EEXIST') throw error;
    }
  }
  return dir;
}

export class V2Cgroup implements Cgroup {
  private destroyed = false;
  /**
   * memory.peak resets per open file (kernel 6.12+): a write through a file
   * handle starts a new window seen only through that handle, so keep it open.
   */
  private peakHandle: fs.FileHandle | undefined;
  private peakResettable = true;
  /** The cpu.max and cpuset.cpus this cgroup last got (only this object writes them). */
  private readonly written: { max?: string; cpus?: string } = {};
  private cpusetFile = false;
  /** cpu.max and cpuset.cpus, kept open: the microtask scheduler writes them at phase changes. */
  private readonly cpuMax: KeptControl;
  private readonly cpusetCpus: KeptControl;

  private constructor(
    readonly name: string,
    private readonly dir: string,
    private readonly ctx: V2Context,
  ) {
    this.cpuMax = new KeptControl(this.file('cpu.max'));
    this.cpusetCpus = new KeptControl(this.file('cpuset.cpus'));
  }

  static async create(name: string, parts: string[], limits: CgroupLimits, ctx: V2Context) {
    const useCpuset = limits.cpus !== undefined && ctx.controllers.has('cpuset');
    const dir = await retryVanishedParent(() => makeDirs(ctx, parts, useCpuset));
    const cgroup = new V2Cgroup(name, dir, ctx);
    try {
      await cgroup.setLimits(limits);
    } catch (error) {
      await cgroup.destroy();
      throw error;
    }
    return cgroup;
  }

  private file(name: string): string {
    return path.join(this.dir, name);
  }

  private async setLimits(limits: CgroupLimits): Promise<void> {
    const has = (c: Controller) => this.ctx.controllers.has(c);
    if (has('memory')) {
      await writeControl(this.file('memory.max'), limits.memoryBytes);
      await writeIfPresent(this.file('memory.swap.max'), 0);
      // Kill the whole instance on OOM, not one of its processes, so the outcome is unambiguous.
      await writeIfPresent(this.file('memory.oom.group'), 1);
    }
    if (has('pids')) {
      await writeControl(
        this.file('pids.max'),
        Number.isFinite(limits.pidsMax) ? limits.pidsMax : 'max',
      );
    }
    await this.setCpu(limits);
  }

  procsFiles(): string[] {
    return [this.file('cgroup.procs')];
  }

  /**
   * Writes only the files whose value changes: the microtask scheduler calls
   * this at every phase change, where one transition should cost one write
   * (or none).
   */
  async setCpu(setting: CpuSetting): Promise<void> {
    const { written } = this;
    if (this.ctx.controllers.has('cpu')) {
      const max = `${cpuQuotaUs(setting.cpu) ?? 'max'} ${CFS_PERIOD_US}`;
      if (max !== written.max) {
        written.max = undefined; // unknown until the write succeeds
        this.cpuMax.write(max);
        written.max = max;
      }
    }
    if (!this.ctx.controllers.has('cpuset')) return;
    // An empty cpuset.cpus in v2 means "inherit the parent's".
    const cpus = setting.cpus ?? '';
    if (cpus === written.cpus) return;
    written.cpus = undefined;
    if (await this.hasCpuset()) {
      this.cpusetCpus.write(cpus);
    } else if (setting.cpus !== undefined) {
      await writeControl(path.join(path.dirname(this.dir), 'cgroup.subtree_control'), '+cpuset');
      await writeControl(this.file('cpuset.cpus'), setting.cpus);
      this.cpusetFile = true;
    } else return;
    written.cpus = cpus;
  }

  /** Whether the cpuset controller is enabled here (its file exists); asked once until it is. */
  private async hasCpuset(): Promise<boolean> {
    this.cpusetFile ||= await exists(this.file('cpuset.cpus'));
    return this.cpusetFile;
  }

  async usage(): Promise<CgroupUsage> {
    const usage: CgroupUsage = {};
    const usec = await readKey(this.file('cpu.stat'), 'usage_usec');
    if (usec !== undefined) usage.cpuMs = usec / 1000;
    const peak = await this.readPeak();
    if (peak !== undefined) usage.peakMemoryBytes = peak;
    return usage;
  }

  private async readPeak(): Promise<number | undefined> {
    if (!this.peakHandle) return readNumber(this.file('memory.peak'));
    const buffer = Buffer.alloc(64);
    const { bytesRead } = await this.peakHandle.read(buffer, 0, buffer.length, 0);
    const value = Number(buffer.subarray(0, bytesRead).toString().trim());
    return Number.isFinite(value) ? value : undefined;
  }

  async resetPeak(): Promise<boolean> {
    if (!this.peakResettable || !this.ctx.controllers.has('memory')) return false;
    try {
      this.peakHandle ??= await fs.open(this.file('memory.peak'), 'r+');
      await this.peakHandle.write('reset\n', 0);
      return true;
    } catch {
      // memory.peak is missing or read-only (kernels before 6.12): keep the whole-life peak.
      this.peakResettable = false;
      await this.closePeak();
      return false;
    }
  }

  private async closePeak(): Promise<void> {
    const handle = this.peakHandle;
    this.peakHandle = undefined;
    await handle?.close().catch(() => undefined);
  }

  async oomKilled(): Promise<boolean> {
    return ((await readKey(this.file('memory.events'), 'oom_kill')) ?? 0) > 0;
  }

  get canFreeze(): boolean {
    return this.ctx.controllers.has('freezer');
  }

  async freeze(): Promise<void> {
    if (!this.canFreeze) throw new Error('cgroup.freeze is not available');
    await freezeV2(this.dir);
  }

  /** v2 delivers SIGKILL to frozen tasks, so destroy needs no thaw first. */
  async thaw(): Promise<void> {
    if (this.canFreeze) await thawV2(this.dir);
  }

  async pids(): Promise<number[]> {
    return readPids(this.file('cgroup.procs'));
  }

  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    this.cpuMax.close();
    this.cpusetCpus.close();
    await this.closePeak();
    await killCgroupV2(this.dir, this.ctx.killTimeoutMs);
    await this.ctx.removeDir(this.dir);
  }
}

/** cgroup.kill (kernel 5.14+) kills the whole subtree atomically, even processes forking meanwhile. */
export async function killCgroupV2(dir: string, timeoutMs: number): Promise<void> {
  try {
    await writeIfPresent(path.join(dir, 'cgroup.kill'), 1);
  } catch (error) {
    if (errnoCode(error) !== 'ENOENT') throw error;
  }
  await killUntilEmpty([path.join(dir, 'cgroup.procs')], timeoutMs);
}
