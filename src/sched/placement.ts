import type { Logger } from 'pino';
import type { DaemonCpuset } from '../cgroup/index.ts';
import type { Placement, PlacementPolicy } from '../policy/index.ts';
import type { CpuLimit } from '../sandbox/index.ts';

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

/**
 * The microtask scheduler's placement when `scheduler.daemonCore` is set:
 * the daemon alone, pinned to that core for the node's life. Instances are
 * left to the classes (the one writer of their cpusets), so a class on the
 * daemon's core exchanges its phase frames without crossing cores.
 */
export class DaemonPin implements CpuPlacement {
  private cpuset: DaemonCpuset | undefined;
  private reason: string | undefined;

  constructor(
    private readonly core: number,
    private readonly options: Pick<CpuPlacerOptions, 'daemonCpuset' | 'log' | 'policy'>,
  ) {}

  async start(): Promise<void> {
    try {
      this.cpuset = await this.options.daemonCpuset();
    } catch (err) {
      this.reason = `cannot give the daemon a cpuset: ${(err as Error).message}`;
    }
    if (!this.cpuset) {
      this.reason ??= 'no cgroup cpuset the daemon can join (needs a usable v1 cpuset controller)';
      this.options.log.info(`daemon not pinned to core ${this.core}: ${this.reason}`);
      return;
    }
    await this.cpuset.setCpus(String(this.core));
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
    return {
      policy: this.options.policy.name,
      active: this.cpuset !== undefined,
      reason:
        this.reason ??
        `the microtask scheduler places instances on its classes' cores; the daemon is pinned to core ${this.core}`,
      ...(this.cpuset ? { daemonCpu: this.core, allCpus: this.cpuset.allCpus.join(',') } : {}),
      current: 'spread',
    };
  }

  async stop(): Promise<void> {}

  async close(): Promise<void> {
    const cpuset = this.cpuset;
    this.cpuset = undefined;
    await cpuset?.release().catch((err: Error) => {
      this.options.log.warn({ err }, 'cannot release the daemon cpuset');
    });
  }
}
