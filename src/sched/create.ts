import type { SchedulerConfig } from '../config.ts';
import { PetriError } from '../errors.ts';
import { MicrotaskScheduler } from './microtask.ts';
import { CpuPlacer, DaemonPin, type CpuPlacerOptions } from './placement.ts';
import { TaskScheduler } from './task.ts';
import type { CpuScheduler, SchedClock } from './types.ts';

/**
 * The node's CPU scheduler from its config. Every class's cores must exist
 * on the node (cores 0 … `cores` − 1), or the node refuses to start. The
 * task scheduler places instances with `placement` (when given); the
 * microtask scheduler uses only its daemon cpuset, to pin the daemon to
 * `daemonCore` when that is set.
 */
export function createScheduler(
  config: SchedulerConfig,
  clock: SchedClock,
  cores: number,
  onError?: (err: unknown) => void,
  placement?: CpuPlacerOptions,
): CpuScheduler {
  for (const [name, cls] of Object.entries(config.classes)) {
    const missing = cls.cores.find((core) => core >= cores);
    if (missing !== undefined && config.policy === 'microtask') {
      throw new PetriError(
        'InvalidConfig',
        `invalid node configuration: scheduler.classes.${name}.cores names core ${missing}, but the node has ${cores} (0–${cores - 1})`,
        {
          issues: [
            { field: `scheduler.classes.${name}.cores`, message: `core ${missing} does not exist` },
          ],
        },
      );
    }
  }
  if (config.daemonCore !== undefined && config.daemonCore >= cores) {
    throw new PetriError(
      'InvalidConfig',
      `invalid node configuration: scheduler.daemonCore is core ${config.daemonCore}, but the node has ${cores} (0–${cores - 1})`,
      {
        issues: [
          { field: 'scheduler.daemonCore', message: `core ${config.daemonCore} does not exist` },
        ],
      },
    );
  }
  if (config.policy === 'task') {
    return placement
      ? new TaskScheduler(clock, config.classes, new CpuPlacer(placement))
      : new TaskScheduler(clock, config.classes);
  }
  const pin =
    config.daemonCore !== undefined && placement
      ? { placement: new DaemonPin(config.daemonCore, placement) }
      : {};
  return new MicrotaskScheduler({
    ...(placement ? { placementPolicy: placement.policy.name } : {}),
    ...pin,
    clock,
    classes: config.classes,
    allocation: config.allocation,
    intervalMs: config.intervalMs,
    moveIntervalMs: config.moveIntervalMs,
    onError,
  });
}
