import { PetriError, toPetriError, type ErrorCode } from '../errors.ts';
import type { InstanceState, InstanceView } from '../policy/index.ts';
import {
  INSTANCE_ERROR_CODES,
  parseBindMessage,
  type BindMessage,
  type FromInstance,
} from '../runtime/index.ts';
import type {
  PrewarmSandbox,
  ResourceLimits,
  Sandbox,
  SandboxDriver,
  SandboxExit,
  SandboxSpec,
  Usage,
} from '../sandbox/index.ts';
import type { CpuScheduler, InvocationPhases, MicrotaskRecord } from '../sched/index.ts';
import type { FunctionRecord } from '../store/index.ts';
import type { Clock, Timer } from './clock.ts';

export interface InstanceHooks {
  /** `from`: the state it left (absent for the first, 'starting'). */
  onState(instance: Instance, state: InstanceState, details?: unknown, from?: InstanceState): void;
  onLog(instance: Instance, stream: 'stdout' | 'stderr', line: string, invocationId?: string): void;
}

interface Pending {
  resolve(value: unknown): void;
  reject(error: PetriError): void;
  timer: Timer;
  startedAt: number;
  /** Its phases, made at its first `microtask` frame (so unannotated invocations cost nothing). */
  phases?: InvocationPhases;
}

/** An invocation's phases once it ended (`Instance.takeMicrotasks`). */
export interface FinishedPhases {
  microtasks: MicrotaskRecord[];
  dropped: number;
}

const ZERO_USAGE: Usage = { cpuMs: 0, peakMemoryBytes: 0, netRxBytes: 0, netTxBytes: 0 };

/**
 * How long after an invocation ends alone its instance's output still counts
 * as that invocation's. Output and results travel on different pipes (and a
 * Node handler's stdout is written asynchronously), so lines printed just
 * before returning often arrive just after the result.
 */
export const OUTPUT_TRAIL_MS = 1000;

/**
 * How long a failed connection to an instance's server waits for the
 * instance's exit, which the driver reports only after tearing its layers
 * down (hundreds of ms on a loaded node), so a dying server is reported as
 * InstanceCrashed rather than a bare "socket hang up".
 */
const EXIT_GRACE_MS = 1000;

/** The codes an instance may report, as registered codes (the compiler checks they are). */
const REPORTABLE: readonly ErrorCode[] = INSTANCE_ERROR_CODES;

/** Describes how an instance ended as the error its in-flight invocations get. */
export function exitError(exit: SandboxExit, during: string): PetriError {
  if (exit.protocolError !== undefined) {
    return new PetriError(
      'BadFrame',
      `instance was killed ${during}: it sent ${exit.protocolError}`,
      { reason: exit.protocolError, stderr: exit.stderrTail },
    );
  }
  const how = exit.signal ? `signal ${exit.signal}` : `exit code ${exit.code}`;
  const details = { exitCode: exit.code, signal: exit.signal, stderr: exit.stderrTail };
  if (exit.oomKilled) {
    return new PetriError('OutOfMemory', `instance exceeded its memory limit ${during}`, details);
  }
  return new PetriError('InstanceCrashed', `instance exited ${during} (${how})`, details);
}

/**
 * One sandbox serving one function version: tracks its state, its in-flight
 * invocations, and turns protocol frames into settled promises.
 */
export class Instance {
  state: InstanceState = 'starting';
  inFlight = 0;
  lastUsedAt: number;
  readonly startedAt: number;
  /** How it started: its own module import (cold) or from the version's snapshot. */
  startPath: 'cold' | 'restore' = 'cold';
  invocations = 0;
  /**
   * Keep-alive expiry is lazy (see Pool): the timer may be due before the
   * deadline (the instance was used and went idle again since it was set),
   * and then it re-arms for the rest when it fires. `keepAliveAt` is the
   * timer's due time, `keepAliveDeadline` when the instance really expires
   * (Infinity while it is busy, or when the policy keeps it until evicted).
   */
  keepAliveTimer: Timer | undefined;
  keepAliveAt = Number.POSITIVE_INFINITY;
  keepAliveDeadline = Number.POSITIVE_INFINITY;
  /**
   * The pool's set of idle instances of the function this instance serves
   * while it is one of that function's instances (the pool keeps it, so a
   * state change finds it without a look-up by name).
   */
  idleSet: Set<Instance> | undefined;
  /** Freezes the instance once its pause grace has passed idle (see Pool). */
  pauseTimer: Timer | undefined;
  /** A freeze under way: a thaw waits for it first. */
  private freezing: Promise<void> | undefined;
  /** Resource counters at the end of the last invocation, to diff the next against. */
  baseline: Usage = ZERO_USAGE;
  /** A usage read under way, shared by invocations that finish in the same turn or window (sink.ts). */
  usageRead: Promise<{ before: Usage; after: Usage }> | undefined;
  /** Calls waiting for no invocation to be in flight (see whenDrained). */
  private drainWaiters: (() => void)[] = [];
  exit: SandboxExit | undefined;
  /** The cpuset last applied (see CpuPlacer); undefined: never set. */
  cpus: string | undefined;
  /** vCPUs of its own share (after the start boost). */
  cpu = 0;
  /** The node's CPU scheduler, which runs this instance's phases; absent: phases are not scheduled. */
  scheduler: CpuScheduler | undefined;
  private readonly pending = new Map<string, Pending>();
  private readonly finishedPhases = new Map<string, FinishedPhases>();
  private stopReason: PetriError | undefined;
  /** The http runtime's server port, as the instance's `ready` said. */
  private httpPort: number | undefined;

  private constructor(
    readonly fn: FunctionRecord,
    readonly sandbox: Sandbox,
    private readonly hooks: InstanceHooks,
    private readonly clock: Clock,
  ) {
    this.startedAt = clock.now();
    this.lastUsedAt = this.startedAt;
    sandbox.on('message', (message) => this.onMessage(message));
    sandbox.on('output', (stream, line) =>
      this.hooks.onLog(this, stream, line, this.outputOwner()),
    );
    sandbox.on('exit', (exit) => this.onExit(exit));
  }

  get id(): string {
    return this.sandbox.id;
  }
  get functionName(): string {
    return this.fn.name;
  }
  get version(): number {
    return this.fn.version;
  }
  get memoryMb(): number {
    return this.fn.spec.memoryMb;
  }
  get keepAliveMs(): number | undefined {
    return this.fn.spec.keepAlive.ms;
  }

  /** Starts a sandbox and resolves once its runtime reports `ready`. */
  static async start(
    driver: SandboxDriver,
    fn: FunctionRecord,
    spec: SandboxSpec,
    hooks: InstanceHooks,
    startTimeoutMs: number,
    clock: Clock,
    startPath: 'cold' | 'restore' = 'cold',
    /** Why this cold start is not the restore that was asked for. */
    restoreFailed?: string,
  ): Promise<Instance> {
    const sandbox = await driver.create(spec);
    const instance = new Instance(fn, sandbox, hooks, clock);
    instance.startPath = startPath;
    hooks.onState(instance, 'starting', {
      pid: sandbox.pid,
      address: sandbox.address,
      startPath,
      ...(restoreFailed === undefined ? {} : { restoreFailed }),
    });
    await instance.waitReady(startTimeoutMs);
    await sandbox.setCpu({ cpu: spec.resources.cpu, cpus: spec.resources.cpus });
    instance.cpu = spec.resources.cpu;
    instance.cpus = spec.resources.cpus;
    return instance;
  }

  /**
   * Makes a ready prewarmed runtime an instance of this version, once: its
   * version folder is mounted read-only in the sandbox's empty code folder,
   * the `bind` frame (checked first) makes the host import the handler, and
   * once it answers `ready` the CPU share is lowered from the start boost to
   * the function's own. The sandbox keeps its id, uid and cgroups; it is
   * never a prewarm again (it dies as this function's instance).
   */
  static async bind(
    sandbox: PrewarmSandbox,
    fn: FunctionRecord,
    codeDir: string,
    message: BindMessage,
    resources: ResourceLimits,
    hooks: InstanceHooks,
    startTimeoutMs: number,
    clock: Clock,
  ): Promise<Instance> {
    const instance = new Instance(fn, sandbox, hooks, clock);
    hooks.onState(instance, 'starting', {
      pid: sandbox.pid,
      address: sandbox.address,
      startPath: 'prewarm',
    });
    const ready = instance.waitReady(startTimeoutMs);
    try {
      const frame = parseBindMessage(message);
      await sandbox.bindCode(codeDir);
      sandbox.send(frame);
    } catch (err) {
      instance.settleReady(toPetriError(err));
      void instance.stop();
    }
    await ready;
    await sandbox.setCpu({ cpu: resources.cpu, cpus: resources.cpus });
    instance.cpu = resources.cpu;
    instance.cpus = resources.cpus;
    return instance;
  }

  /** A frozen plain copy of what policies may see: no methods, no live state. */
  /**
   * A frozen snapshot, reused while nothing in it changed (the pool offers
   * every idle instance of a function to the start-path policy per arrival).
   */
  view(): InstanceView {
    const last = this.lastView;
    if (
      last !== undefined &&
      last.state === this.state &&
      last.inFlight === this.inFlight &&
      last.lastUsedAt === this.lastUsedAt &&
      last.invocations === this.invocations
    )
      return last;
    return (this.lastView = Object.freeze({
      id: this.id,
      functionName: this.functionName,
      version: this.version,
      state: this.state,
      memoryMb: this.memoryMb,
      inFlight: this.inFlight,
      startedAt: this.startedAt,
      lastUsedAt: this.lastUsedAt,
      invocations: this.invocations,
      keepAliveMs: this.keepAliveMs,
    }));
  }

  private lastView: InstanceView | undefined;

  /** True when the sandbox can be frozen (the node has a cgroup freezer). */
  get pausable(): boolean {
    return this.sandbox.freezable === true && this.sandbox.freeze !== undefined;
  }

  /**
   * Freezes an idle instance: it keeps its memory and gets no CPU. The state
   * is `paused` from the first step, so the pool never hands it out as warm;
   * a freeze that fails leaves it idle (and running) again.
   */
  pause(): Promise<void> {
    if (this.state !== 'idle' || !this.pausable) return Promise.resolve();
    this.setState('paused');
    const freezing = this.sandbox.freeze!().catch((error: unknown) => {
      if (this.state === 'paused') this.setState('idle', { freezeFailed: String(error) });
    });
    this.freezing = freezing;
    return freezing;
  }

  /** Takes a slot on a paused instance and resolves once it runs again. */
  async reserveThawed(): Promise<void> {
    this.reserve({ startPath: 'paused' });
    await this.freezing;
    this.freezing = undefined;
    await this.sandbox.thaw?.();
  }

  hasRoom(): boolean {
    return (
      this.state === 'idle' || (this.state === 'busy' && this.inFlight < this.fn.spec.concurrency)
    );
  }

  /** Takes one of the instance's concurrency slots for an invocation about to be sent. */
  reserve(details?: unknown): void {
    this.inFlight += 1;
    // The keep-alive timer stays: it finds the instance busy (or idle with a
    // later deadline) when it fires, so an invocation does not cancel and
    // set a timer each time.
    this.keepAliveDeadline = Number.POSITIVE_INFINITY;
    this.clearPause();
    this.setState('busy', details);
  }

  /** Sends one invocation (after `reserve`) and settles with the handler's value or an error. */
  invoke(id: string, event: unknown): Promise<unknown> {
    return new Promise((resolve, reject) => this.invokeThen(id, event, resolve, reject));
  }

  /**
   * `invoke` with callbacks instead of a promise: exactly one of them is
   * called, never inside this call (the trace simulator runs millions of
   * invocations and spares the promise).
   */
  invokeThen(
    id: string,
    event: unknown,
    resolve: (value: unknown) => void,
    reject: (error: PetriError) => void,
  ): void {
    this.invocations += 1;
    const now = this.clock.now();
    const timeoutMs = this.fn.spec.timeoutMs;
    const timer = this.clock.setTimer(timeoutMs, () => this.onTimeout(id));
    this.pending.set(id, { resolve, reject, timer, startedAt: now });
    this.sandbox.send({ type: 'invoke', id, event, deadline: now + timeoutMs });
  }

  /**
   * Where the http runtime's server takes connections from the node: the
   * instance's bridge address (loopback when it shares the node's network)
   * and the port it reported; undefined for other runtimes.
   */
  get httpEndpoint(): { host: string; port: number } | undefined {
    if (this.httpPort === undefined) return undefined;
    return { host: this.sandbox.address ?? '127.0.0.1', port: this.httpPort };
  }

  /**
   * Runs one invocation that talks to the instance directly instead of by
   * frame (a function URL proxied to the http runtime's server), under the
   * same rules as `invoke`: the timeout kills the instance and its exit ends
   * the invocation. Either aborts `work`'s signal.
   */
  track<T>(id: string, work: (signal: AbortSignal) => Promise<T>): Promise<T> {
    this.invocations += 1;
    const controller = new AbortController();
    const settled = new Promise<T>((resolve, reject) => {
      const timer = this.clock.setTimer(this.fn.spec.timeoutMs, () => this.onTimeout(id));
      const startedAt = this.clock.now();
      // As is, not wrapped: a named closure costs keepNames (tsx) a defineProperty per invocation.
      this.pending.set(id, {
        resolve: resolve as (value: unknown) => void,
        reject,
        timer,
        startedAt,
      });
    });
    work(controller.signal).then(
      (value) => this.settle(id, (p) => p.resolve(value)),
      (err: unknown) => {
        const error = toPetriError(err);
        if (error.code !== 'HandlerError') return this.settle(id, (p) => p.reject(error));
        // A connection that failed may be the server dying: its exit, if it comes, says more.
        this.clock.setTimer(EXIT_GRACE_MS, () => this.settle(id, (p) => p.reject(error)));
      },
    );
    settled.catch(() => controller.abort());
    return settled;
  }

  /** The phases an ended invocation announced (once; undefined when it announced none). */
  takeMicrotasks(id: string): FinishedPhases | undefined {
    const phases = this.finishedPhases.get(id);
    this.finishedPhases.delete(id);
    return phases;
  }

  /** Marks one invocation done; the instance is idle when none is left. */
  release(): void {
    this.inFlight -= 1;
    this.lastUsedAt = this.clock.now();
    if (this.inFlight === 0 && this.state === 'busy') this.setState('idle');
    if (this.inFlight <= 0 && this.drainWaiters.length > 0) {
      const waiters = this.drainWaiters;
      this.drainWaiters = [];
      for (const wake of waiters) wake();
    }
  }

  /**
   * Resolves once no invocation is in flight, or after `ms` of real time at
   * most (a bound on how late a record may be, not a simulated delay).
   */
  whenDrained(ms: number): Promise<void> {
    if (this.inFlight <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const wake = (): void => {
        clearTimeout(timer);
        resolve();
      };
      // A waiter that timed out leaves the list: an instance that never drains
      // (always some invocation in flight) would otherwise keep one per window.
      const timer = setTimeout(() => {
        this.drainWaiters = this.drainWaiters.filter((w) => w !== wake);
        resolve();
      }, ms);
      this.drainWaiters.push(wake);
    });
  }

  /** Cancels the idle timers: keep-alive and pause. */
  clearKeepAlive(): void {
    this.keepAliveTimer?.cancel();
    this.keepAliveTimer = undefined;
    this.keepAliveAt = Number.POSITIVE_INFINITY;
    this.keepAliveDeadline = Number.POSITIVE_INFINITY;
    this.clearPause();
  }

  /** Cancels the pause timer. */
  clearPause(): void {
    this.pauseTimer?.cancel();
    this.pauseTimer = undefined;
  }

  /**
   * Kills the instance. Invocations still in flight fail with `reason`
   * (default: InstanceCrashed, "instance was stopped").
   */
  async stop(reason?: PetriError): Promise<void> {
    this.stopReason ??= reason;
    this.clearKeepAlive();
    if (this.state !== 'dead') {
      this.setState('stopping');
      // A last read, so the node's CPU account keeps what it used since the previous one.
      this.baseline = await this.sandbox.usage().catch(() => this.baseline);
    }
    await this.sandbox.destroy();
  }

  /**
   * The pool's own bookkeeping (memory and idle instances by state), told
   * before the hooks so that what they call sees the new figures.
   */
  stateListener: ((instance: Instance, from: InstanceState) => void) | undefined;

  setState(state: InstanceState, details?: unknown): void {
    if (this.state === state) return;
    const from = this.state;
    this.state = state;
    this.stateListener?.(this, from);
    this.hooks.onState(this, state, details, from);
  }

  private waitReady(timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = this.clock.setTimer(timeoutMs, () => {
        reject(new PetriError('Timeout', `instance did not start within ${timeoutMs} ms`));
        void this.stop();
      });
      this.readyWaiter = { resolve, reject, timer };
    });
  }

  private readyWaiter: { resolve(): void; reject(err: PetriError): void; timer: Timer } | undefined;

  private settleReady(error?: PetriError): void {
    const waiter = this.readyWaiter;
    if (!waiter) return;
    this.readyWaiter = undefined;
    waiter.timer.cancel();
    if (error) waiter.reject(error);
    else waiter.resolve();
  }

  /**
   * The invocation output now belongs to: the one in flight when it is
   * alone, or the last one to finish alone while its output may still
   * trail (OUTPUT_TRAIL_MS); none when several run at once.
   */
  private outputOwner(): string | undefined {
    if (this.pending.size === 1) return this.pending.keys().next().value;
    if (
      this.pending.size === 0 &&
      this.trailingId !== undefined &&
      this.clock.now() < this.trailingUntil
    )
      return this.trailingId;
    return undefined;
  }

  /** The last invocation that finished alone, and until when its output may trail. */
  private trailingId: string | undefined;
  private trailingUntil = 0;

  private onMessage(message: FromInstance): void {
    switch (message.type) {
      case 'ready':
        this.httpPort = message.port;
        this.setState('idle');
        this.settleReady();
        return;
      case 'init-error':
        this.settleReady(
          new PetriError('HandlerError', `function failed to initialise: ${message.message}`, {
            phase: 'init',
            stack: message.stack,
          }),
        );
        return;
      case 'log': {
        // An instance names only its own invocations; any other id is not believed.
        const owner = this.outputOwner();
        const id =
          message.id !== undefined && (this.pending.has(message.id) || message.id === owner)
            ? message.id
            : owner;
        this.hooks.onLog(this, message.stream, message.line, id);
        return;
      }
      case 'result':
        this.settle(message.id, (p) => p.resolve(resultValue(message)));
        return;
      case 'error':
        this.settle(message.id, (p) => p.reject(instanceError(message)));
        return;
      case 'microtask':
        this.onMicrotask(message.id, message.name);
        return;
    }
  }

  /**
   * An invocation enters a phase: the scheduler decides when it runs, and the
   * instance hears `admit` then. An instance names only its own invocations;
   * any other id is ignored.
   */
  private onMicrotask(id: string, name: string): void {
    const pending = this.pending.get(id);
    if (!pending) return;
    const scheduler = this.scheduler;
    if (scheduler && !pending.phases) {
      const subject = {
        instanceId: this.id,
        own: () => ({ cpu: this.cpu, cpus: this.cpus }),
        setCpu: (limit: { cpu: number; cpus?: string }) => this.sandbox.setCpu(limit),
      };
      pending.phases = scheduler.begin(
        id,
        subject,
        this.fn.spec.microtasks ?? {},
        pending.startedAt,
      );
    }
    const admit = () => {
      if (this.pending.has(id)) this.sandbox.send({ type: 'admit', id });
    };
    // The scheduler admits an invocation's phases in order, synchronously (CpuScheduler.enter).
    if (pending.phases) void pending.phases.enter(name, admit);
    else admit();
  }

  private settle(id: string, action: (pending: Pending) => void): void {
    const pending = this.pending.get(id);
    if (!pending) return;
    this.pending.delete(id);
    pending.timer.cancel();
    if (pending.phases) this.finishedPhases.set(id, pending.phases.finish());
    if (this.pending.size === 0) {
      this.trailingId = id;
      this.trailingUntil = this.clock.now() + OUTPUT_TRAIL_MS;
    } else this.trailingId = undefined;
    action(pending);
  }

  private onTimeout(id: string): void {
    const ms = this.fn.spec.timeoutMs;
    this.settle(id, (p) =>
      p.reject(new PetriError('Timeout', `invocation ran past its timeout of ${ms} ms`)),
    );
    // A handler that overran may still be running: the instance cannot be trusted again.
    void this.stop();
  }

  private onExit(exit: SandboxExit): void {
    this.exit = exit;
    this.clearKeepAlive();
    const wasStopping = this.state === 'stopping';
    this.setState('dead', { exitCode: exit.code, signal: exit.signal, oomKilled: exit.oomKilled });
    if (this.readyWaiter) this.settleReady(exitError(exit, 'while starting'));
    for (const id of [...this.pending.keys()]) {
      this.settle(id, (p) =>
        p.reject(
          wasStopping
            ? (this.stopReason ?? new PetriError('InstanceCrashed', 'instance was stopped'))
            : exitError(exit, 'during the invocation'),
        ),
      );
    }
  }
}

/**
 * The error an instance reported. It may claim only the codes an instance
 * can know (a handler cannot cause QueueFull); any other code, registered or
 * not, is reported as HandlerError with the code it sent in the details.
 */
function instanceError(message: Extract<FromInstance, { type: 'error' }>): PetriError {
  const code = REPORTABLE.find((reportable) => reportable === message.code);
  if (code) return new PetriError(code, message.message, { stack: message.stack });
  return new PetriError('HandlerError', message.message, {
    stack: message.stack,
    sentCode: message.code,
  });
}

/** A result frame's value as the handler returned it: JSON, a string, or bytes. */
function resultValue(message: Extract<FromInstance, { type: 'result' }>): unknown {
  if (message.encoding === 'base64') return Buffer.from(message.value as string, 'base64');
  return message.value;
}
