export * from './types.ts';
export { createScheduler, daemonPinOf } from './create.ts';
export { chooseMove, type ClassDemand, type CoreMove } from './dynamic.ts';
export { MicrotaskScheduler, type MicrotaskSchedulerOptions } from './microtask.ts';
export { TaskScheduler } from './task.ts';
export {
  CpuPlacer,
  DaemonPin,
  DAEMON_REPIN_MS,
  type DaemonPinOptions,
  noPlacement,
  type CpuPlacement,
  type CpuPlacerOptions,
  type PlacedInstance,
  type PlacementStatus,
} from './placement.ts';
