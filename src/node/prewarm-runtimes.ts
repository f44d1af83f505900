import type { PrewarmConfig } from '../config.ts';
import { PetriError } from '../errors.ts';
import type { PrewarmSandbox, PrewarmSpec, SandboxDriver } from '../sandbox/index.ts';
import type { FunctionRecord } from '../store/index.ts';
import type { Clock, Timer } from './clock.ts';
import type { Instance } from './instance.ts';

/** How long a set waits before it tries again after a start failed or memory was short. */
export const PREWARM_RETRY_MS = 1000;

/**
 * How long after a bind its replacement starts: spawning a sandbox blocks the
 * daemon's event loop for milliseconds and takes a core for tens, which would
 * land on the bound instance's first response.
 */
export const PREWARM_REFILL_DELAY_MS = 100;

export interface PrewarmRuntimeDeps {
  config: readonly PrewarmConfig[];
  driver: SandboxDriver;
  clock: Clock;
  startTimeoutMs: number;
  /** The runtime part of a new prewarmed runtime of one configured size. */
  spec(entry: PrewarmConfig): PrewarmSpec;
  /** Binds a ready runtime to a version: the instance it becomes. */
  bind(record: FunctionRecord, sandbox: PrewarmSandbox): Promise<Instance>;
  /** Takes memory from the node's budget only if it is free (evicts nothing). */
  reserveMemory(mb: number): boolean;
  releaseMemory(mb: number): void;
  warn(message: string, details?: object): void;
}

/** A ready runtime taken for one version; the pool starts it or gives it back. */
export interface PrewarmClaim {
  /** The memory it holds, which the caller now counts as its starting instance's. */
  memoryMb: number;
  /** Binds it (once): resolves with the function's instance. */
  start(): Promise<Instance>;
  /** Gives it back unbound (its memory with it: the caller reserves it again). */
  cancel(): void;
}

/** One configured set, as GET /v1/node shows it. */
export interface PrewarmSetView {
  runtime: 'node';
  memoryMb: number;
  egress: boolean;
  mode: 'static' | 'reactive';
  /** Ready runtimes, waiting for a bind. */
  ready: number;
  starting: number;
  /** How many the set keeps now (reactive: moves between min and max). */
  target: number;
  /** Runtimes bound to functions so far. */
  bound: number;
}

interface ReadyRuntime {
  sandbox: PrewarmSandbox;
  /** Reactive sets stop a runtime left unbound this long. */
  ttl: Timer | undefined;
}

/**
 * The prewarmed generic runtimes of one configured size (OpenWhisk's stem
 * cells): sandboxes running Node and the instance host with no function. A
 * static set keeps `count` ready and refills after each bind; a reactive one
 * starts at `count`, grows by one (to `max`) per bind and stops a runtime
 * unbound for `ttlMs` while more than `min` are kept. Each ready or starting
 * runtime holds its memoryMb of the node's budget.
 */
class PrewarmSet {
  readonly ready: ReadyRuntime[] = [];
  starting = 0;
  target: number;
  bound = 0;
  private retry: Timer | undefined;
  closed = false;
  /** Sandboxes made and not yet gone (ready, starting or being stopped): close waits for them. */
  private readonly live = new Set<Promise<unknown>>();

  constructor(
    readonly entry: PrewarmConfig,
    private readonly deps: PrewarmRuntimeDeps,
  ) {
    this.target = entry.count;
  }

  matches(record: FunctionRecord): boolean {
    const { spec } = record;
    return (
      spec.runtime === 'node' &&
      spec.memoryMb === this.entry.memoryMb &&
      spec.network.inbound === false &&
      spec.network.egress === this.entry.egress
    );
  }

  /** Starts runtimes until ready + starting reach the target, while memory is free. */
  refill(): void {
    if (this.closed) return;
    while (this.ready.length + this.starting < this.target) {
      if (!this.deps.reserveMemory(this.entry.memoryMb)) {
        this.retryLater();
        return;
      }
      this.starting += 1;
      const started = this.startOne();
      this.live.add(started);
      void started.finally(() => this.live.delete(started));
    }
  }

  claim(record: FunctionRecord): PrewarmClaim | undefined {
    const runtime = this.ready.shift();
    if (!runtime) return undefined;
    runtime.ttl?.cancel();
    let settled = false;
    return {
      memoryMb: this.entry.memoryMb,
      start: async () => {
        settled = true;
        this.bound += 1;
        if (this.entry.reactive) {
          this.target = Math.min(this.entry.reactive.max, this.target + 1);
        }
        try {
          return await this.deps.bind(record, runtime.sandbox);
        } finally {
          // Later than the bind, so a replacement's start does not slow the bound instance's first response.
          this.deps.clock.setTimer(PREWARM_REFILL_DELAY_MS, () => this.refill());
        }
      },
      cancel: () => {
        if (settled) return;
        settled = true;
        if (this.closed || !this.deps.reserveMemory(this.entry.memoryMb)) {
          void this.destroy(runtime.sandbox);
          return;
        }
        this.addReady(runtime.sandbox);
      },
    };
  }

  view(): PrewarmSetView {
    return {
      runtime: this.entry.runtime,
      memoryMb: this.entry.memoryMb,
      egress: this.entry.egress,
      mode: this.entry.reactive ? 'reactive' : 'static',
      ready: this.ready.length,
      starting: this.starting,
      target: this.target,
      bound: this.bound,
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    this.retry?.cancel();
    for (const runtime of this.ready.splice(0)) {
      runtime.ttl?.cancel();
      void this.destroy(runtime.sandbox);
    }
    while (this.live.size > 0) await Promise.allSettled([...this.live]);
  }

  private async startOne(): Promise<void> {
    let sandbox: PrewarmSandbox | undefined;
    try {
      sandbox = await this.deps.driver.createPrewarm!(this.deps.spec(this.entry));
      await this.waitReady(sandbox);
    } catch (err) {
      this.starting -= 1;
      if (sandbox) await sandbox.destroy().catch(() => undefined);
      this.deps.releaseMemory(this.entry.memoryMb);
      if (!this.closed) {
        this.deps.warn('a prewarmed runtime failed to start', { error: (err as Error).message });
        this.retryLater();
      }
      return;
    }
    this.starting -= 1;
    if (this.closed) {
      await this.destroy(sandbox);
      return;
    }
    this.addReady(sandbox);
  }

  /** Resolves at the host's `ready`; rejects if it exits or times out first. */
  private waitReady(sandbox: PrewarmSandbox): Promise<void> {
    return new Promise((resolve, reject) => {
      let done = false;
      const finish = (error?: Error): void => {
        if (done) return;
        done = true;
        timer.cancel();
        if (error) reject(error);
        else resolve();
      };
      const timer = this.deps.clock.setTimer(this.deps.startTimeoutMs, () =>
        finish(new Error(`not ready within ${this.deps.startTimeoutMs} ms`)),
      );
      sandbox.on('message', (message) => {
        if (message.type === 'ready') finish();
        else if (message.type === 'init-error') finish(new Error(message.message));
      });
      sandbox.on('exit', (exit) => finish(new Error(`exited (${exit.code ?? exit.signal})`)));
    });
  }

  private addReady(sandbox: PrewarmSandbox): void {
    const runtime: ReadyRuntime = { sandbox, ttl: undefined };
    this.ready.push(runtime);
    // A ready runtime that dies (killed, out of memory) leaves the set and is replaced.
    sandbox.on('exit', () => {
      const index = this.ready.indexOf(runtime);
      if (index < 0) return;
      this.ready.splice(index, 1);
      runtime.ttl?.cancel();
      this.deps.releaseMemory(this.entry.memoryMb);
      this.retryLater();
    });
    this.armTtl(runtime);
  }

  private armTtl(runtime: ReadyRuntime): void {
    const reactive = this.entry.reactive;
    if (!reactive) return;
    runtime.ttl = this.deps.clock.setTimer(
      reactive.ttlMs,
      () => {
        if (!this.ready.includes(runtime)) return;
        if (this.ready.length + this.starting <= reactive.min) return this.armTtl(runtime);
        this.ready.splice(this.ready.indexOf(runtime), 1);
        this.target = Math.max(reactive.min, this.target - 1);
        void this.destroy(runtime.sandbox);
      },
      { background: true },
    );
  }

  /** Stops a runtime that is not ready any more, and gives its memory back. */
  private async destroy(sandbox: PrewarmSandbox): Promise<void> {
    const gone = sandbox.destroy().catch(() => undefined);
    this.live.add(gone);
    await gone;
    this.live.delete(gone);
    this.deps.releaseMemory(this.entry.memoryMb);
  }

  private retryLater(): void {
    if (this.closed || this.retry) return;
    this.retry = this.deps.clock.setTimer(
      PREWARM_RETRY_MS,
      () => {
        this.retry = undefined;
        this.refill();
      },
      { background: true },
    );
  }
}

/** Every configured prewarm set of the node (node config `prewarm`). */
export class PrewarmRuntimes {
  private readonly sets: PrewarmSet[];

  constructor(deps: PrewarmRuntimeDeps) {
    const unsupported =
      deps.config.length === 0
        ? undefined
        : deps.driver.createPrewarm
          ? deps.driver.prewarmUnsupported?.()
          : `the ${deps.driver.name} driver cannot make prewarmed runtimes`;
    if (unsupported !== undefined) {
      throw new PetriError('InvalidConfig', `prewarm is configured, but ${unsupported}`);
    }
    this.sets = deps.config.map((entry) => new PrewarmSet(entry, deps));
  }

  /** Fills every set (once the node has reconciled what a crashed run left). */
  start(): void {
    for (const set of this.sets) set.refill();
  }

  /** Ready runtimes the version could bind. */
  readyFor(record: FunctionRecord): number {
    return this.setFor(record)?.ready.length ?? 0;
  }

  /** Takes a ready runtime for the version, if one matches. */
  claim(record: FunctionRecord): PrewarmClaim | undefined {
    return this.setFor(record)?.claim(record);
  }

  views(): PrewarmSetView[] {
    return this.sets.map((set) => set.view());
  }

  /** Memory the ready and starting runtimes hold. */
  memoryMb(): number {
    let total = 0;
    for (const set of this.sets) total += (set.ready.length + set.starting) * set.entry.memoryMb;
    return total;
  }

  /** Stops every unbound runtime (bound ones are instances: the pool stops them). */
  async close(): Promise<void> {
    await Promise.all(this.sets.map((set) => set.close()));
  }

  private setFor(record: FunctionRecord): PrewarmSet | undefined {
    return this.sets.find((set) => set.matches(record));
  }
}
