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
 * microtask scheduler uses only its daemon cpuset, to pin the daemon where
 * `daemonCore` says (`daemonPinOf`; by default on the heaviest class's core).
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
  if (typeof config.daemonCore === 'number' && config.daemonCore >= cores) {
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
  const daemon = daemonPinOf(config, cores);
  const pin =
    daemon && placement
      ? new DaemonPin(daemon.core, {
          ...placement,
          clock,
          ...(config.allocation === 'dynamic' && daemon.follows ? { follows: daemon.follows } : {}),
        })
      : undefined;
  return new MicrotaskScheduler({
    ...(placement ? { placementPolicy: placement.policy.name } : {}),
    ...(pin ? { placement: pin, pin } : {}),
    clock,
    classes: config.classes,
    allocation: config.allocation,
    intervalMs: config.intervalMs,
    moveIntervalMs: config.moveIntervalMs,
    onError,
  });
}

/**
 * Where the daemon is pinned, and the class its pin follows under dynamic
 * allocation. Unset means `auto` under the microtask policy. `auto` picks
 * the heaviest class (the largest share per microtask, `cpu` by default,
 * ties by name), whose phases compute and pay for a slow transition, and
 * its lowest core; a core given by number is followed through the class
 * that has it at start (none: it stays there). Undefined: not pinned
 * (`off`, or the task policy).
 */
export function daemonPinOf(
  config: Pick<SchedulerConfig, 'daemonCore' | 'classes' | 'policy'>,
  cores: number,
): { core: number; follows?: string } | undefined {
  const daemonCore = config.daemonCore ?? (config.policy === 'microtask' ? 'auto' : 'off');
  if (daemonCore === 'off' || config.policy !== 'microtask') return undefined;
  const classes = Object.entries(config.classes).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  if (daemonCore !== 'auto') {
    const owner = classes.find(([, cls]) => cls.cores.includes(daemonCore));
    return owner ? { core: daemonCore, follows: owner[0] } : { core: daemonCore };
  }
  const heaviest = classes
    .filter(([, cls]) => cls.cores.length > 0)
    .sort(([, a], [, b]) => b.vcpu - a.vcpu)[0];
  if (!heaviest) return { core: cores - 1 };
  return { core: Math.min(...heaviest[1].cores), follows: heaviest[0] };
}
