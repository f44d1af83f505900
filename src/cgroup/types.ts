import type { DaemonCpuset } from './daemon-cpuset.ts';
import type { FreezeControl } from './thaw-guard.ts';

/** Which cgroup interface the node drives: v1 (one hierarchy per controller), v2 (unified), or none. */
export type CgroupVersion = 'v1' | 'v2' | 'none';

/**
 * The controllers Petri uses. `cpuacct` exists only in v1 (v2 accounts CPU in
 * `cpu.stat`); so does `freezer` (v2 freezes any cgroup with `cgroup.freeze`).
 */
export type Controller = 'cpu' | 'cpuacct' | 'cpuset' | 'memory' | 'pids' | 'freezer';

export const CONTROLLERS: readonly Controller[] = [
  'cpu',
  'cpuacct',
  'cpuset',
  'memory',
  'pids',
  'freezer',
];

/** Whether a controller can be used on this node, and why not when it cannot. */
export interface ControllerStatus {
  name: Controller;
  usable: boolean;
  reason?: string;
}

export interface CpuSetting {
  /** vCPUs (quota ÷ period); 0 or less means unlimited. */
  cpu: number;
  /** cpuset, e.g. "0" or "0-1". Only used when given. */
  cpus?: string;
}

export interface CgroupLimits extends CpuSetting {
  memoryBytes: number;
  pidsMax: number;
}

/** What a cgroup has used. A field is absent when its controller is not usable. */
export interface CgroupUsage {
  cpuMs?: number;
  peakMemoryBytes?: number;
}

/** One instance's cgroup (a directory per v1 hierarchy, one directory in v2). */
export interface Cgroup {
  /** Relative name, e.g. `petri/ab12cd34/i-1`. */
  readonly name: string;
  /** Every `cgroup.procs` file a process must be written into to be fully inside. */
  procsFiles(): string[];
  setCpu(setting: CpuSetting): Promise<void>;
  usage(): Promise<CgroupUsage>;
  /** Starts a new peak-memory window; false when the kernel cannot reset the peak. */
  resetPeak(): Promise<boolean>;
  /** True once the kernel's OOM killer has killed a process of this cgroup. */
  oomKilled(): Promise<boolean>;
  /** True when the node can freeze this cgroup (v1 freezer controller, v2 `cgroup.freeze`). */
  readonly canFreeze: boolean;
  /** Stops every process (memory kept, no CPU) and resolves once the kernel says all are frozen. */
  freeze(): Promise<void>;
  /** Lets frozen processes run again; a no-op when not frozen. */
  thaw(): Promise<void>;
  /** PIDs currently in the cgroup. */
  pids(): Promise<number[]>;
  /** Kills every process left, waits until the cgroup is empty and removes it. Idempotent. */
  destroy(): Promise<void>;
}

export interface CgroupSystem {
  readonly version: CgroupVersion;
  /** Where the cgroup file systems are mounted (a fake tree in tests). */
  readonly root: string;
  controllers(): ControllerStatus[];
  usable(controller: Controller): boolean;
  /**
   * Where the freeze switches of instances under `prefix` live, for the thaw
   * guard; undefined when the node cannot freeze.
   */
  freezeControl?(prefix: string): FreezeControl | undefined;
  /** Makes `name` (relative to the node's own cgroup) with the limits applied. */
  create(name: string, limits: CgroupLimits): Promise<Cgroup>;
  /**
   * Kills and removes every cgroup under `prefix` (e.g. `petri/<nodeTag>`), the
   * prefix itself, and its parents up to the node's cgroup when they are empty.
   * Returns how many instance cgroups it removed.
   */
  cleanup(prefix: string): Promise<number>;
  /**
   * Moves this process into a cpuset cgroup `name` of its own, beside the
   * node's; undefined where cpusets cannot hold the daemon (v2 here: a cgroup
   * with processes cannot also delegate to instances).
   */
  daemonCpuset(name: string): Promise<DaemonCpuset | undefined>;
  /**
   * Removes daemon cpusets (`petri-daemon-*`) that crashed nodes left empty,
   * of any node: one still in use holds its daemon and cannot be removed, and
   * one younger than `minAgeMs` may be a node between mkdir and joining it.
   */
  removeStaleDaemonCpusets(minAgeMs?: number): Promise<string[]>;
  /**
   * CPU time (ms) used in the cgroup `prefix` and everything below it, gone
   * children included (the kernel charges usage up the tree); undefined
   * where it is not accounted or does not exist yet.
   */
  cpuUsageMs?(prefix: string): Promise<number | undefined>;
}

export interface DetectOptions {
  /**
   * Contents of /proc/self/cgroup: Petri nests its cgroups under the node's own
   * cgroup so they stay inside whatever limits the node itself runs under.
   * Defaults to the real file for the real root and to "all at the root" otherwise.
   */
  selfCgroup?: string;
  /** Removes a cgroup directory; tests on fake trees pass a recursive rm. */
  removeDir?: (dir: string) => Promise<void>;
  /** How long `destroy` waits for killed processes to leave. */
  killTimeoutMs?: number;
}
