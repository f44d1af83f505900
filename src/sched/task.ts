import { PhaseLog } from './phase-log.ts';
import { noPlacement, type CpuPlacement } from './placement.ts';
import {
  DEFAULT_CLASS,
  type CpuScheduler,
  type InvocationPhases,
  type SchedClock,
  type SchedulerStatus,
} from './types.ts';

/**
 * The task-based scheduler, today's behaviour and the baseline: an
 * invocation holds its memory-sized share on its cores for its whole
 * duration. Phases are recorded, never queued; the only cgroup writes are
 * CPU placement's (its `placement`, which packs instances onto the daemon's
 * core while invocations run one at a time).
 */
export class TaskScheduler implements CpuScheduler {
  readonly policy = 'task' as const;

  constructor(
    private readonly clock: SchedClock,
    private readonly classes: Record<string, { vcpu: number; cores: number[] }>,
    readonly placement: CpuPlacement = noPlacement('spread', 'no placement configured'),
  ) {}

  begin(
    _invocationId: string,
    _subject: unknown,
    classes: Record<string, string>,
    startedAt: number,
  ) {
    const log = new PhaseLog(this.clock, startedAt);
    const phases: InvocationPhases = {
      enter: (name, admitted) => {
        log.announce(name, classes[name] ?? DEFAULT_CLASS); // never queued: waitedMs stays 0
        admitted?.();
        return Promise.resolve();
      },
      finish: () => log.finish(),
    };
    return phases;
  }

  status(): SchedulerStatus {
    const classes = Object.fromEntries(
      Object.entries(this.classes).map(([name, cls]) => [
        name,
        { vcpu: cls.vcpu, cores: [...cls.cores], running: 0, queued: 0 },
      ]),
    );
    return { policy: 'task', allocation: 'static', classes, moves: 0 };
  }

  close(): void {}
}
