import type { CpuLimit } from '../sandbox/index.ts';
import type { CpuPlacement } from './placement.ts';

/** One announced phase of an invocation, as `GET /v1/invocations/{id}` shows it. */
export interface MicrotaskRecord {
  name: string;
  /** The CPU class it ran in; `default` when the spec maps the name to none (the function's own share). */
  class: string;
  /** When it was announced, in ms since the invocation started. */
  startMs: number;
  /** From its announcement to the next one or the invocation's end (waiting included). */
  durationMs: number;
  /** How long it queued for its class's capacity before it ran. */
  waitedMs: number;
}

/** The class of a phase the spec does not map: the function's own share, never queued. */
export const DEFAULT_CLASS = 'default';

/** What a scheduler needs of the instance an invocation runs on. */
export interface CpuSubject {
  readonly instanceId: string;
  /** The instance's own share (memory-sized) and cpuset outside any class. */
  own(): CpuLimit;
  /** Applies a CPU limit to the instance's cgroup. */
  setCpu(limit: CpuLimit): Promise<void>;
}

/** Time as the scheduler sees it (the node's Clock, or a ManualClock in tests). */
export interface SchedClock {
  now(): number;
  setTimer(ms: number, fire: () => void, options?: { background?: boolean }): { cancel(): void };
}

/** One invocation's phases, from its start to its end. */
export interface InvocationPhases {
  /**
   * A phase begins (and the previous one ends). `admitted` is called, in
   * announcement order and synchronously, once the phase may run: at once
   * for the task scheduler and unmapped names, when its class has room for
   * the microtask scheduler, once the kernel has the class's limits (in the
   * same turn of the event loop as the cgroup write, when no earlier write
   * is under way). The promise resolves then too. Never rejects.
   */
  enter(name: string, admitted?: () => void): Promise<void>;
  /** The invocation ended: the last phase ends, what it held is released. Idempotent. */
  finish(): { microtasks: MicrotaskRecord[]; dropped: number };
}

export interface ClassStatus {
  vcpu: number;
  cores: number[];
  running: number;
  queued: number;
}

export interface SchedulerStatus {
  policy: 'task' | 'microtask';
  allocation: 'static' | 'dynamic';
  classes: Record<string, ClassStatus>;
  /** Cores the dynamic allocator moved since start. */
  moves: number;
}

/**
 * A CPU scheduler: the task-based one (the invocation keeps its own share on
 * its cores throughout) or the microtask-based one (each phase runs in its
 * class's queue, quota and cores). Both share this interface and
 * test/sched/scheduler.case.ts.
 */
export interface CpuScheduler {
  readonly policy: 'task' | 'microtask';
  /**
   * CPU placement (pack-when-sequential): the task scheduler's, so one part
   * writes instances' cpusets under either policy; the microtask scheduler
   * places instances on its classes' cores and has none.
   */
  readonly placement: CpuPlacement;
  /**
   * Starts tracking one invocation; `classes` is its spec's phase → class
   * map, `startedAt` when it started (phases' startMs count from it).
   */
  begin(
    invocationId: string,
    subject: CpuSubject,
    classes: Record<string, string>,
    startedAt: number,
  ): InvocationPhases;
  status(): SchedulerStatus;
  /** Stops timers; admits everything still queued, so no invocation waits forever. */
  close(): void;
}

/** At most this many phases are recorded and scheduled per invocation; later ones only count. */
export const MICROTASKS_PER_INVOCATION = 1000;
