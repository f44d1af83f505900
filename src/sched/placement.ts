import type { Logger } from 'pino';
import type { DaemonCpuset } from '../cgroup/index.ts';
import type { Placement, PlacementPolicy } from '../policy/index.ts';
import type { CpuLimit } from '../sandbox/index.ts';
import type { SchedClock } from './types.ts';

/** An instance as placement sees it (the node's Instance is one). */
export interface PlacedInstance {
  readonly id: string;
  /** Its own share in vCPU. */
  readonly cpu: number;
  /** The cpuset last applied; undefined: never set (placement leaves it alone). */
  cpus: string | undefined;
  readonly state: string;
  readonly sandbox: { setCpu(limit: CpuLimit): Promise<void> };
}

export interface PlacementStatus {
  policy: string;
  active: boolean;
  /** Why placement is off, when it is (or what it does instead). */
  reason?: string;
  /** The core the daemon is pinned to while packed, which packed instances share. */
  daemonCpu?: number;
  /** Every core the node may use: a spread instance's cpuset. */
  allCpus?: string;
  /** Microtask policy, `daemonCore` under dynamic allocation: the class whose cores the daemon's pin follows. */
  daemonFollows?: string;
  /** How many times the pin has followed it to another core. */
  daemonRepins?: number;
  current: Placement;
}

export interface CpuPlacerOptions {
  policy: PlacementPolicy;
  intervalMs: number;
  /** The node's live instances. */
  instances: () => Iterable<PlacedInstance>;
  /** The most invocations in flight at once since the last call. */
  takePeakInFlight: () => number;
  /** Moves the daemon into a cpuset of its own; undefined where it cannot. */
  daemonCpuset: () => Promise<DaemonCpuset | undefined>;
  log: Logger;
}

/** What a scheduler offers the node of CPU placement (CpuPlacer, or none). */
export interface CpuPlacement {
  /** Joins the daemon's cpuset and starts deciding, when placement can run. */
  start(): Promise<void>;
  /** The cpuset a new instance starts with; undefined: any core (placement off). */
  startCpus(): string | undefined;
  status(): PlacementStatus;
  /** Stops deciding. */
  stop(): Promise<void>;
  /** Stops deciding and gives the daemon back its cores (last, on shutdown). */
  close(): Promise<void>;
}

/** Placement that never runs, with why. */
export function noPlacement(policy: string, reason: string): CpuPlacement {
  return {
    start: async () => undefined,
    startCpus: () => undefined,
    status: () => ({ policy, active: false, reason, current: 'spread' }),
    stop: async () => undefined,
    close: async () => undefined,
  };
}

/**
 * Applies the placement policy, as part of the task scheduler (the one
 * writer of instances' cpusets under that policy): every `intervalMs` it asks the policy for
 * the last window's placement. Packed, the daemon's cpuset is its last core
 * and so are the instances'; spread, both may run on every core (a daemon
 * pinned under load would fight its own instances for one core). Instances
 * with more than one vCPU always spread: one core would cap them below their
 * share.
 */
export class CpuPlacer implements CpuPlacement {
  private current: Placement = 'spread';
  private timer: NodeJS.Timeout | undefined;
  private cpuset: DaemonCpuset | undefined;
  private daemonCpu: string | undefined;
  private allCpus: string | undefined;
  private reason: string | undefined;
  private applying: Promise<void> | undefined;
  private stopped = false;

  constructor(private readonly options: CpuPlacerOptions) {}

  async start(): Promise<void> {
    const { options } = this;
    this.reason = await this.join();
    if (this.reason) {
      if (options.policy.name !== 'spread') options.log.info(`cpu placement off: ${this.reason}`);
      return;
    }
    this.timer = setInterval(() => void this.tick(), options.intervalMs);
    this.timer.unref();
  }

  /**
   * The cpuset a new instance starts with: every core, since starting Node is
   * CPU-heavy and multi-threaded; the next window packs it if it should be.
   * Undefined when placement is off.
   */
  startCpus(): string | undefined {
    return this.cpuset ? this.allCpus : undefined;
  }

  /** The cpuset an instance of `cpu` vCPUs belongs in now; undefined when placement is off. */
  cpusFor(cpu: number): string | undefined {
    if (!this.cpuset) return undefined;
    return this.current === 'pack' && cpu <= 1 ? this.daemonCpu : this.allCpus;
  }

  status(): PlacementStatus {
    return {
      policy: this.options.policy.name,
      active: this.cpuset !== undefined,
      ...(this.reason ? { reason: this.reason } : {}),
      ...(this.cpuset ? { daemonCpu: Number(this.daemonCpu), allCpus: this.allCpus } : {}),
      current: this.current,
    };
  }

  /** One window: decide, and move the daemon and instances when the placement changed. */
  tick(): Promise<void> {
    if (!this.cpuset || this.stopped || this.applying) return this.applying ?? Promise.resolve();
    const next = this.options.policy.place({ peakInFlight: this.options.takePeakInFlight() });
    this.applying = this.apply(next)
      .catch((err: Error) => this.options.log.warn({ err }, 'cpu placement change failed'))
      .finally(() => (this.applying = undefined));
    return this.applying;
  }

  /** Stops deciding; the daemon stays where it is until `close`. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.applying;
  }

  /**
   * Stops deciding and gives the daemon back to the node's cgroup. Call it
   * last on shutdown, once instances are gone: a child the daemon forked
   * while pinned (an instance start, an `ip` run) is inside its cpuset too.
   */
  async close(): Promise<void> {
    await this.stop();
    const cpuset = this.cpuset;
    this.cpuset = undefined;
    await cpuset?.release().catch((err: Error) => {
      this.options.log.warn({ err }, 'cannot release the daemon cpuset');
    });
  }

  private async join(): Promise<string | undefined> {
    const { options } = this;
    if (options.policy.name === 'spread') return 'policy is spread';
    try {
      this.cpuset = await options.daemonCpuset();
    } catch (err) {
      return `cannot give the daemon a cpuset: ${(err as Error).message}`;
    }
    if (!this.cpuset)
      return 'no cgroup cpuset the daemon can join (needs a usable v1 cpuset controller)';
    const cores = this.cpuset.allCpus;
    if (cores.length < 2) {
      await this.close();
      return 'the node has one core';
    }
    this.allCpus = cores.join(',');
    this.daemonCpu = String(cores[cores.length - 1]);
    return undefined;
  }

  /** Packing pins the daemon before moving instances to its core; spreading moves them off first. */
  private async apply(next: Placement): Promise<void> {
    const cpuset = this.cpuset;
    if (!cpuset) return;
    const changed = next !== this.current;
    if (changed && next === 'pack') await cpuset.setCpus(this.daemonCpu ?? '');
    this.current = next;
    await this.moveInstances();
    if (changed && next === 'spread') await cpuset.setCpus(this.allCpus ?? '');
  }

  private async moveInstances(): Promise<void> {
    for (const instance of this.options.instances()) {
      const cpus = this.cpusFor(instance.cpu);
      if (instance.cpus === undefined || instance.cpus === cpus) continue;
      if (instance.state === 'dead' || instance.state === 'stopping') continue;
      instance.cpus = cpus;
      await instance.sandbox.setCpu({ cpu: instance.cpu, cpus }).catch((err: Error) => {
        this.options.log.debug({ err, instance: instance.id }, 'cpuset move failed');
      });
    }
  }
}

/** How often at most the daemon's pin follows its class to another core. */
export const DAEMON_REPIN_MS = 100;

export interface DaemonPinOptions extends Pick<
  CpuPlacerOptions,
  'daemonCpuset' | 'log' | 'policy'
> {
  /** Times the re-pins (the scheduler's clock). */
  clock: SchedClock;
  /** The class the pin follows under dynamic allocation ("follows" in status); none: fixed. */
  follows?: string;
  /** At most one re-pin this often (DAEMON_REPIN_MS); a later core wins, the ones between are skipped. */
  repinMs?: number;
}

/**
 * The microtask scheduler's placement when `scheduler.daemonCore` is set:
 * the daemon alone, pinned to one core. Instances are left to the classes
 * (the one writer of their cpusets), so a class on the daemon's core
 * exchanges its phase frames without crossing cores. Under dynamic
 * allocation the pin follows its class (`follow`, called after each core
 * move): while the daemon's core is still the class's it stays; when the
 * class lost it, the daemon moves to the class's lowest core, at most once
 * per `repinMs` (a move inside that window is applied at its end, to the
 * core wanted then); while the class has no core the daemon stays put.
 */
export class DaemonPin implements CpuPlacement {
  private cpuset: DaemonCpuset | undefined;
  private reason: string | undefined;
  /** The core asked for last, and the one the kernel has. */
  private wanted: number;
  private pinned: number | undefined;
  private lastPinAt = -Infinity;
  private timer: { cancel(): void } | undefined;
  private writing: Promise<void> = Promise.resolve();
  private repins = 0;
  private closed = false;

  constructor(
    core: number,
    private readonly options: DaemonPinOptions,
  ) {
    this.wanted = core;
    this.follows = options.follows;
  }

  /** The class the pin follows (dynamic allocation), if any. */
  readonly follows: string | undefined;

  async start(): Promise<void> {
    try {
      this.cpuset = await this.options.daemonCpuset();
    } catch (err) {
      this.reason = `cannot give the daemon a cpuset: ${(err as Error).message}`;
    }
    if (!this.cpuset) {
      this.reason ??= 'no cgroup cpuset the daemon can join (needs a usable v1 cpuset controller)';
      this.options.log.info(`daemon not pinned to core ${this.wanted}: ${this.reason}`);
      return;
    }
    this.lastPinAt = this.options.clock.now();
    this.pinned = this.wanted;
    await this.cpuset.setCpus(String(this.wanted));
  }

  /** The core the daemon is pinned to, or will be once a pending re-pin is written. */
  get core(): number {
    return this.wanted;
  }

  /** The followed class's cores now: re-pins when the daemon's core is no longer one of them. */
  follow(cores: readonly number[]): void {
    if (this.closed || cores.length === 0 || cores.includes(this.wanted)) return;
    this.wanted = Math.min(...cores);
    if (!this.cpuset || this.timer) return; // not pinned, or a re-pin is already armed
    const wait =
      this.lastPinAt + (this.options.repinMs ?? DAEMON_REPIN_MS) - this.options.clock.now();
    if (wait <= 0) return this.repin();
    this.timer = this.options.clock.setTimer(
      wait,
      () => {
        this.timer = undefined;
        this.repin();
      },
      { background: true },
    );
  }

  /** Writes the wanted core, when it is not the one the kernel has. */
  private repin(): void {
    const cpuset = this.cpuset;
    if (!cpuset || this.closed || this.wanted === this.pinned) return;
    const core = this.wanted;
    this.pinned = core;
    this.lastPinAt = this.options.clock.now();
    this.repins += 1;
    this.writing = this.writing
      .then(() => cpuset.setCpus(String(core)))
      .catch((err: Error) => this.options.log.warn({ err, core }, 'cannot re-pin the daemon'));
  }

  /**
   * Every core, while the daemon is pinned: an instance forked by it would
   * otherwise stay in the daemon's cpuset, on its one core, until a class
   * first moves it (and for good if its function announces no phase).
   */
  startCpus(): string | undefined {
    return this.cpuset?.allCpus.join(',');
  }

  status(): PlacementStatus {
    const follows = this.follows ? `, following class ${this.follows}` : '';
    return {
      policy: this.options.policy.name,
      active: this.cpuset !== undefined,
      reason:
        this.reason ??
        `the microtask scheduler places instances on its classes' cores; the daemon is pinned to core ${this.pinned}${follows}`,
      ...(this.cpuset
        ? {
            daemonCpu: this.pinned,
            allCpus: this.cpuset.allCpus.join(','),
            ...(this.follows ? { daemonFollows: this.follows, daemonRepins: this.repins } : {}),
          }
        : {}),
      current: 'spread',
    };
  }

  async stop(): Promise<void> {
    this.timer?.cancel();
    this.timer = undefined;
    await this.writing;
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.stop();
    const cpuset = this.cpuset;
    this.cpuset = undefined;
    await cpuset?.release().catch((err: Error) => {
      this.options.log.warn({ err }, 'cannot release the daemon cpuset');
    });
  }
}
