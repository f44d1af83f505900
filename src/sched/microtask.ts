import type { CpuLimit } from '../sandbox/index.ts';
import { chooseMove } from './dynamic.ts';
import { PhaseLog, type OpenPhase } from './phase-log.ts';
import { noPlacement, type CpuPlacement, type DaemonPin } from './placement.ts';
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
  /** The daemon's pinning (scheduler.daemonCore); none by default. */
  placement?: CpuPlacement;
  /** The same pin, told of core moves when it follows a class (dynamic allocation). */
  pin?: Pick<DaemonPin, 'follows' | 'follow'>;
}

/** A phase in a class: queued until the class has room, then running until the phase ends. */
interface Ticket {
  readonly cls: CpuClass;
  readonly owner: MicrotaskPhases;
  readonly phase: OpenPhase;
  /** Tells the instance the phase may run (in announcement order: MicrotaskPhases.admitInOrder). */
  readonly admit: () => void;
  /** Ends the caller's await: admitted and the class's limits written. */
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
    this.placement =
      options.placement ??
      noPlacement(
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
   * `admit` (a phase may run) comes once the kernel has every limit asked
   * for so far: with no write, at once; after a write, in the same turn of
   * the event loop (a write on a kept descriptor is synchronous), unless an
   * earlier write is still under way (an instance's first cpuset join).
   * Admitting first and writing after was tried and measured: the instance
   * then ran 14 % of its phases' first instructions on its previous cores
   * (docs/research.md, "Transition cost").
   */
  serial(instanceId: string, write: (() => Promise<void>) | undefined, admit?: () => void) {
    const under = this.writes.get(instanceId);
    if (!write) {
      if (!under) {
        admit?.();
        return Promise.resolve();
      }
      return admit ? under.then(admit) : under;
    }
    const tail = this.track(instanceId, under ? under.then(write) : started(write));
    return admit ? tail.then(admit) : tail;
  }

  private track(instanceId: string, write: Promise<void>): Promise<void> {
    const tail = write.catch((err: unknown) => this.options.onError?.(err));
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
      // A class left with no core gets the freed one before this class refills it.
      if (this.options.allocation === 'dynamic' && !this.closed) this.step(true);
      this.pump(cls);
      return;
    }
    if (ticket.state === 'queued') {
      const at = cls.queue.indexOf(ticket);
      if (at >= 0) cls.queue.splice(at, 1);
      ticket.state = 'done';
      // Superseded while waiting: the caller's await ends, with nothing written.
      ticket.admit();
      ticket.resolve();
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
    this.step(false);
  }

  /**
   * Moves a core when chooseMove says so: at most one move per
   * moveIntervalMs, except to a class with no core at all (it cannot run
   * anything until it gets one); `onRelease`, only that kind of move.
   */
  private step(onRelease: boolean): void {
    const now = this.options.clock.now();
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
    const starved = to.cores.length === 0;
    if (!starved && (onRelease || now - this.lastMoveAt < this.options.moveIntervalMs)) return;
    from.cores = from.cores.filter((core) => core !== move.core);
    to.cores = [...to.cores, move.core].sort((a, b) => a - b);
    this.lastMoveAt = now;
    this.moves += 1;
    for (const cls of [from, to]) {
      for (const ticket of cls.running) ticket.owner.apply(cls.limit());
    }
    const pin = this.options.pin;
    if (pin?.follows !== undefined) pin.follow(this.classes.get(pin.follows)?.cores ?? []);
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

  /** Runs a ticket: its class's limits written, then admitted (see `serial`). */
  private start(ticket: Ticket): void {
    ticket.state = 'running';
    ticket.owner.log.admitted(ticket.phase);
    void ticket.owner.apply(ticket.cls.limit(), ticket.admit).then(ticket.resolve);
  }
}

/** Starts a write now (its synchronous part runs before this returns); a throw becomes a rejection. */
function started(write: () => Promise<void>): Promise<void> {
  try {
    return write();
  } catch (err) {
    return Promise.reject(err as Error);
  }
}

/** An admission waiting for its turn: admits go back in announcement order. */
interface Admission {
  ready: boolean;
  readonly fire: (() => void) | undefined;
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
  /** Announced phases whose admission has not been told yet, oldest first. */
  private readonly admissions: Admission[] = [];

  constructor(
    private readonly scheduler: MicrotaskScheduler,
    private readonly subject: CpuSubject,
    private readonly classes: Record<string, string>,
    readonly log: PhaseLog,
  ) {
    this.applied = limitKey(subject.own());
  }

  enter(name: string, admitted?: () => void): Promise<void> {
    const admission: Admission = { ready: false, fire: admitted };
    this.admissions.push(admission);
    const admit = () => this.admitInOrder(admission);
    if (this.finished) {
      admit();
      return Promise.resolve();
    }
    this.leave();
    const mapped = this.classes[name];
    const cls = mapped === undefined ? undefined : this.scheduler.classOf(mapped);
    const phase = this.log.announce(name, cls ? cls.name : DEFAULT_CLASS);
    if (!phase) {
      admit(); // over the cap: counted, not scheduled
      return Promise.resolve();
    }
    if (!cls) return this.apply(this.subject.own(), admit); // never queued: waitedMs stays 0
    return new Promise((resolve) => {
      this.current = { cls, owner: this, phase, admit, resolve, state: 'queued' };
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

  /**
   * Asks the cgroup for `limit` after any write under way, unless it already
   * has it (then only the write under way, if any, is waited for); `admit`
   * as in MicrotaskScheduler.serial.
   */
  apply(limit: CpuLimit, admit?: () => void): Promise<void> {
    const key = limitKey(limit);
    const changed = key !== this.applied;
    this.applied = key;
    const write = changed ? () => this.subject.setCpu(limit) : undefined;
    return this.scheduler.serial(this.subject.instanceId, write, admit);
  }

  /** Marks one admission ready and tells every ready one at the head, in order. */
  private admitInOrder(admission: Admission): void {
    admission.ready = true;
    while (this.admissions.length > 0 && this.admissions[0].ready) {
      this.admissions.shift()!.fire?.();
    }
  }

  private leave(): void {
    if (this.current) this.scheduler.release(this.current);
    this.current = undefined;
  }
}
