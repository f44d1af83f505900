/**
 * cgroup v1 and v2 behind one interface: detection, per-instance cgroups with
 * CPU, memory and pids limits, usage, OOM detection, clean-up, and the
 * isolation layer the process driver uses.
 */
export type * from './types.ts';
export { detectCgroups, DEFAULT_CGROUP_ROOT } from './detect.ts';
export { joinCgroupCommand, shellQuote } from './join.ts';
export { cpuQuotaUs, CFS_PERIOD_US } from './files.ts';
export {
  cgroupLayer,
  instanceCgroupName,
  CGROUP_PREFIX,
  type CgroupLayerOptions,
  type CgroupLayerInstance,
} from './layer.ts';
export { DAEMON_CPUSET_PREFIX, type DaemonCpuset, parseCpuList } from './daemon-cpuset.ts';
export { ThawGuard, type FreezeControl } from './thaw-guard.ts';
export { enableFastCgroupMoves, type FastMovesResult } from './fast-moves.ts';
