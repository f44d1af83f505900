import { PetriError, type ErrorCode } from '../errors.ts';
import type { InstanceState, InstanceView } from '../policy/index.ts';
import { INSTANCE_ERROR_CODES, type FromInstance } from '../runtime/index.ts';
import type { Sandbox, SandboxDriver, SandboxExit, SandboxSpec, Usage } from '../sandbox/index.ts';
import type { FunctionRecord } from '../store/index.ts';
import type { Clock, Timer } from './clock.ts';

export interface InstanceHooks {
  onState(instance: Instance, state: InstanceState, details?: unknown): void;
  onLog(instance: Instance, stream: 'stdout' | 'stderr', line: string, invocationId?: string): void;
}

interface Pending {
  resolve(value: unknown): void;
  reject(error: PetriError): void;
  timer: Timer;
}

const ZERO_USAGE: Usage = { cpuMs: 0, peakMemoryBytes: 0, netRxBytes: 0, netTxBytes: 0 };

/**
 * How long after an invocation ends alone its instance's output still counts
 * as that invocation's. Output and results travel on different pipes (and a
 * Node handler's stdout is written asynchronously), so lines printed just
 * before returning often arrive just after the result.
 */
export const OUTPUT_TRAIL_MS = 1000;

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
  invocations = 0;
  keepAliveTimer: Timer | undefined;
  /** Freezes the instance once its pause grace has passed idle (see Pool). */
  pauseTimer: Timer | undefined;
  /** A freeze under way: a thaw waits for it first. */
  private freezing: Promise<void> | undefined;
  /** Resource counters at the end of the last invocation, to diff the next against. */
  baseline: Usage = ZERO_USAGE;
  /** A usage read under way, shared by invocations that finish in the same turn. */
  usageRead: Promise<{ before: Usage; after: Usage }> | undefined;
  exit: SandboxExit | undefined;
  /** The cpuset last applied (see CpuPlacer); undefined: never set. */
  cpus: string | undefined;
  /** vCPUs of its own share (after the start boost). */
  cpu = 0;
  private readonly pending = new Map<string, Pending>();
  private stopReason: PetriError | undefined;

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
  ): Promise<Instance> {
    const sandbox = await driver.create(spec);
    const instance = new Instance(fn, sandbox, hooks, clock);
    hooks.onState(instance, 'starting', {
      pid: sandbox.pid,
      address: sandbox.address,
      startPath,
    });
    await instance.waitReady(startTimeoutMs);
    await sandbox.setCpu({ cpu: spec.resources.cpu, cpus: spec.resources.cpus });
    instance.cpu = spec.resources.cpu;
    instance.cpus = spec.resources.cpus;
    return instance;
  }

  /** A frozen plain copy of what policies may see: no methods, no live state. */
  view(): InstanceView {
    return Object.freeze({
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
    });
  }

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
    this.clearKeepAlive();
    this.setState('busy', details);
  }

  /** Sends one invocation (after `reserve`) and settles with the handler's value or an error. */
  invoke(id: string, event: unknown): Promise<unknown> {
    this.invocations += 1;
    const deadline = this.clock.now() + this.fn.spec.timeoutMs;
    return new Promise((resolve, reject) => {
      const timer = this.clock.setTimer(this.fn.spec.timeoutMs, () => this.onTimeout(id));
      this.pending.set(id, { resolve, reject, timer });
      this.sandbox.send({ type: 'invoke', id, event, deadline });
    });
  }

  /** Marks one invocation done; the instance is idle when none is left. */
  release(): void {
    this.inFlight -= 1;
    this.lastUsedAt = this.clock.now();
    if (this.inFlight === 0 && this.state === 'busy') this.setState('idle');
  }

  /** Cancels the idle timers: keep-alive and pause. */
  clearKeepAlive(): void {
    this.keepAliveTimer?.cancel();
    this.keepAliveTimer = undefined;
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
    if (this.state !== 'dead') this.setState('stopping');
    await this.sandbox.destroy();
  }

  setState(state: InstanceState, details?: unknown): void {
    if (this.state === state) return;
    this.state = state;
    this.hooks.onState(this, state, details);
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
    const trailing = this.trailing;
    if (this.pending.size === 0 && trailing && this.clock.now() < trailing.until)
      return trailing.id;
    return undefined;
  }

  /** The last invocation that finished alone, and until when its output may trail. */
  private trailing: { id: string; until: number } | undefined;

  private onMessage(message: FromInstance): void {
    switch (message.type) {
      case 'ready':
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
        this.settle(message.id, (p) => p.resolve(message.value));
        return;
      case 'error':
        this.settle(message.id, (p) => p.reject(instanceError(message)));
        return;
    }
  }

  private settle(id: string, action: (pending: Pending) => void): void {
    const pending = this.pending.get(id);
    if (!pending) return;
    this.pending.delete(id);
    pending.timer.cancel();
    this.trailing =
      this.pending.size === 0 ? { id, until: this.clock.now() + OUTPUT_TRAIL_MS } : undefined;
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
    this.settleReady(exitError(exit, 'while starting'));
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
