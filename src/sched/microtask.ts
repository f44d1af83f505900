import type { CpuLimit } from '../sandbox/index.ts';
import { chooseMove } from './dynamic.ts';
import { PhaseLog, type OpenPhase } from './phase-log.ts';
import { noPlacement, type CpuPlacement } from './placement.ts';
import {
  DEFAULT_CLASS,
  type CpuScheduler,
  type CpuSubject,
  type InvocationPhases,
  type SchedClock,
  type SchedulerStatus,
} from './types.ts';

export interface MicrotaskSchedulerOptions {
  clock: SchedClock;
  classes: Record<string, { vcpu: number; cores: number[] }>;
  allocation: 'static' | 'dynamic';
  /** Dynamic allocation: how often demand is re-evaluated, and how often a core may move. */
  intervalMs: number;
  moveIntervalMs: number;
  /** Called when a cgroup write fails (the instance is usually gone). */
  onError?: (err: unknown) => void;
  /** The node's placement policy, named in the status of the placement this scheduler replaces. */
  placementPolicy?: string;
}

/** A phase in a class: queued until the class has room, then running until the phase ends. */
interface Ticket {
  readonly cls: CpuClass;
  readonly owner: MicrotaskPhases;
  readonly phase: OpenPhase;
  readonly resolve: () => void;
  state: 'queued' | 'running' | 'done';
}

class CpuClass {
  used = 0;
  readonly running = new Set<Ticket>();
  readonly queue: Ticket[] = [];

  constructor(
    readonly name: string,
    readonly vcpu: number,
    public cores: number[],
  ) {}

  limit(): CpuLimit {
    return { cpu: this.vcpu, cpus: this.cores.join(',') };
  }

  /** Room for one more: the class's cores are its capacity in vCPU. */
  hasRoom(): boolean {
    return this.cores.length > 0 && this.used + this.vcpu <= this.cores.length + 1e-9;
  }
}

/**
 * The microtask-based scheduler. When an invocation enters a phase mapped to
 * a class it joins that class's FIFO queue; once the class has room (its
 * running microtasks' shares fit its cores) the instance's cgroup gets the
 * class's quota and cpuset and the phase runs. Leaving the phase frees the
 * room for the next in the queue; unmapped phases and the time outside
 * phases run at the instance's own share. With `dynamic` allocation a
 * greedy allocator moves cores between classes by demand (src/sched/dynamic.ts).
 */
export class MicrotaskScheduler implements CpuScheduler {
  readonly policy = 'microtask' as const;
  readonly placement: CpuPlacement;
  private readonly classes = new Map<string, CpuClass>();
  private timer: { cancel(): void } | undefined;
  private lastMoveAt = -Infinity;
  private readonly writes = new Map<string, Promise<void>>();
  private moves = 0;
  private closed = false;

  constructor(private readonly options: MicrotaskSchedulerOptions) {
    // One writer per cpuset: this scheduler places instances on its classes' cores.
    this.placement = noPlacement(
      options.placementPolicy ?? 'spread',
      "the microtask scheduler places instances on its classes' cores",
    );
    for (const [name, cls] of Object.entries(options.classes)) {
      this.classes.set(name, new CpuClass(name, cls.vcpu, [...cls.cores]));
    }
  }

  begin(
    _invocationId: string,
    subject: CpuSubject,
    classes: Record<string, string>,
    startedAt: number,
  ) {
    return new MicrotaskPhases(this, subject, classes, new PhaseLog(this.options.clock, startedAt));
  }

  classOf(name: string): CpuClass | undefined {
    return this.classes.get(name);
  }

  get clock(): SchedClock {
    return this.options.clock;
  }

  /**
   * Runs cgroup writes of one instance one after another, across its
   * invocations too, so a later limit never lands before an earlier one.
   */
  serial(instanceId: string, write: () => Promise<void>): Promise<void> {
    const tail = (this.writes.get(instanceId) ?? Promise.resolve())
      .then(write)
      .catch((err: unknown) => this.options.onError?.(err));
    this.writes.set(instanceId, tail);
    void tail.then(() => {
      if (this.writes.get(instanceId) === tail) this.writes.delete(instanceId);
    });
    return tail;
  }

  enqueue(ticket: Ticket): void {
    if (this.closed) return this.start(ticket);
    ticket.cls.queue.push(ticket);
    this.pump(ticket.cls);
    // Work is waiting: the dynamic allocator looks again (it sleeps while nothing waits).
    if (this.options.allocation === 'dynamic' && !this.timer && ticket.cls.queue.length > 0) {
      this.schedule();
    }
  }

  /** Ends a ticket's phase: frees its room, or takes it out of the queue. */
  release(ticket: Ticket): void {
    const { cls } = ticket;
    if (ticket.state === 'running') {
      cls.running.delete(ticket);
      cls.used = Math.max(0, cls.used - cls.vcpu);
      ticket.state = 'done';
      this.pump(cls);
      return;
    }
    if (ticket.state === 'queued') {
      const at = cls.queue.indexOf(ticket);
      if (at >= 0) cls.queue.splice(at, 1);
      ticket.state = 'done';
      ticket.resolve(); // superseded while waiting: the caller's await ends
    }
  }

  status(): SchedulerStatus {
    const classes = Object.fromEntries(
      [...this.classes].map(([name, cls]) => [
        name,
        {
          vcpu: cls.vcpu,
          cores: [...cls.cores],
          running: cls.running.size,
          queued: cls.queue.length,
        },
      ]),
    );
    return { policy: 'microtask', allocation: this.options.allocation, classes, moves: this.moves };
  }

  close(): void {
    this.closed = true;
    this.timer?.cancel();
    this.timer = undefined;
    for (const cls of this.classes.values()) {
      for (const ticket of cls.queue.splice(0)) this.start(ticket);
    }
  }

  /** One step of the dynamic allocator; the timer calls it, tests may too. */
  rebalance(): void {
    const now = this.options.clock.now();
    if (now - this.lastMoveAt < this.options.moveIntervalMs) return;
    const move = chooseMove(
      [...this.classes.values()].map((cls) => ({
        name: cls.name,
        vcpu: cls.vcpu,
        cores: cls.cores,
        running: cls.running.size,
        queued: cls.queue.length,
      })),
    );
    if (!move) return;
    const from = this.classes.get(move.from)!;
    const to = this.classes.get(move.to)!;
    from.cores = from.cores.filter((core) => core !== move.core);
    to.cores = [...to.cores, move.core].sort((a, b) => a - b);
    this.lastMoveAt = now;
    this.moves += 1;
    for (const cls of [from, to]) {
      for (const ticket of cls.running) ticket.owner.apply(cls.limit());
    }
    this.pump(to);
  }

  /** Arms the next evaluation; while no class has work waiting it is not re-armed. */
  private schedule(): void {
    this.timer = this.options.clock.setTimer(
      this.options.intervalMs,
      () => {
        this.timer = undefined;
        if (this.closed) return;
        this.rebalance();
        const waiting = [...this.classes.values()].some((cls) => cls.queue.length > 0);
        if (waiting) this.schedule();
      },
      { background: true },
    );
  }

  private pump(cls: CpuClass): void {
    while (cls.queue.length > 0 && cls.hasRoom()) {
      const ticket = cls.queue.shift()!;
      cls.used += cls.vcpu;
      cls.running.add(ticket);
      this.start(ticket);
    }
  }

  /** Runs a ticket: its class's limits first, then the phase's await ends. */
  private start(ticket: Ticket): void {
    ticket.state = 'running';
    ticket.owner.log.admitted(ticket.phase);
    void ticket.owner.apply(ticket.cls.limit()).then(ticket.resolve);
  }
}

function limitKey(limit: CpuLimit): string {
  return `${limit.cpu}|${limit.cpus ?? ''}`;
}

/** One invocation under the microtask scheduler. */
class MicrotaskPhases implements InvocationPhases {
  private current: Ticket | undefined;
  /** The limit last asked of the cgroup: invocations start at the instance's own. */
  private applied: string;
  private finished = false;

  constructor(
    private readonly scheduler: MicrotaskScheduler,
    private readonly subject: CpuSubject,
    private readonly classes: Record<string, string>,
    readonly log: PhaseLog,
  ) {
    this.applied = limitKey(subject.own());
  }

  enter(name: string): Promise<void> {
    if (this.finished) return Promise.resolve();
    this.leave();
    const mapped = this.classes[name];
    const cls = mapped === undefined ? undefined : this.scheduler.classOf(mapped);
    const phase = this.log.announce(name, cls ? cls.name : DEFAULT_CLASS);
    if (!phase) return Promise.resolve(); // over the cap: counted, not scheduled
    if (!cls) return this.apply(this.subject.own()); // never queued: waitedMs stays 0
    return new Promise((resolve) => {
      this.current = { cls, owner: this, phase, resolve, state: 'queued' };
      this.scheduler.enqueue(this.current);
    });
  }

  finish() {
    if (!this.finished) {
      this.finished = true;
      this.leave();
      void this.apply(this.subject.own());
    }
    return this.log.finish();
  }

  /** Asks the cgroup for `limit` after any write under way, unless it already has it. */
  apply(limit: CpuLimit): Promise<void> {
    const key = limitKey(limit);
    // Already asked for: wait only for the write under way, if any.
    if (key === this.applied) return this.scheduler.serial(this.subject.instanceId, async () => {});
    this.applied = key;
    return this.scheduler.serial(this.subject.instanceId, () => this.subject.setCpu(limit));
  }

  private leave(): void {
    if (this.current) this.scheduler.release(this.current);
    this.current = undefined;
  }
}
