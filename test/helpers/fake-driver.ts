import { systemClock, type Clock } from '../../src/node/index.ts';
import type { ToInstance } from '../../src/runtime/index.ts';
import type {
  CpuLimit,
  IsolationReport,
  Sandbox,
  SandboxDriver,
  SandboxEvents,
  SandboxExit,
  SandboxSpec,
  Usage,
} from '../../src/sandbox/index.ts';

/**
 * An in-memory driver for pool and API tests: no processes. Each sandbox
 * answers `invoke` according to the event:
 *   {sleepMs}  answer after that long;   {crash: true}  "boom" on stderr, exit with code 3;
 *   {spinMs}   as long, all of it CPU;   {oom: true}  killed for memory;
 *   {fail: "message"}  handler error;    anything else  echoed back.
 * test/sandbox/fake-driver.test.ts holds it to the process driver's behaviour.
 */
export class FakeDriver implements SandboxDriver {
  readonly name = 'fake';
  readonly created: FakeSandbox[] = [];
  startDelayMs = 0;
  failStart: string | undefined;
  /** Whether new sandboxes can be frozen (as with a cgroup freezer). */
  freezable = false;

  /** Start and reply delays run on `clock`: a ManualClock makes the driver timeless. */
  constructor(readonly clock: Clock = systemClock) {}

  capabilities(): IsolationReport {
    return { driver: this.name, mechanisms: [] };
  }

  async create(spec: SandboxSpec): Promise<Sandbox> {
    const sandbox = new FakeSandbox(spec, this.clock, this.freezable);
    this.created.push(sandbox);
    const failure = this.failStart;
    this.clock.setTimer(this.startDelayMs, () => {
      if (failure) sandbox.die({ code: 1, signal: null, oomKilled: false, stderrTail: failure });
      else if (!sandbox.dead) sandbox.emit('message', { type: 'ready' });
    });
    return sandbox;
  }

  live(): FakeSandbox[] {
    return this.created.filter((sandbox) => !sandbox.dead);
  }

  async reconcile(): Promise<void> {}
  async close(): Promise<void> {}
}

export class FakeSandbox implements Sandbox {
  readonly id: string;
  readonly pid = 1;
  dead = false;
  /** CPU time of the `spinMs` invocations so far. */
  private cpuMs = 0;
  readonly received: ToInstance[] = [];
  private readonly listeners: { [E in keyof SandboxEvents]: SandboxEvents[E][] } = {
    message: [],
    output: [],
    exit: [],
  };

  /** While frozen, what it was sent and what it would have done wait for the thaw. */
  frozen = false;
  freezes = 0;
  private held: (() => void)[] = [];

  constructor(
    readonly spec: SandboxSpec,
    private readonly clock: Clock = systemClock,
    readonly freezable = false,
  ) {
    this.id = spec.instanceId;
  }

  async freeze(): Promise<void> {
    if (!this.freezable) throw new Error('this sandbox cannot be frozen');
    this.frozen = true;
    this.freezes += 1;
  }

  async thaw(): Promise<void> {
    this.frozen = false;
    for (const run of this.held.splice(0)) run();
  }

  send(message: ToInstance): void {
    if (this.frozen && !this.dead) {
      this.held.push(() => this.send(message));
      return;
    }
    this.received.push(message);
    // A dead instance reads nothing, and one killed mid-invocation says nothing more.
    if (message.type !== 'invoke' || this.dead) return;
    const event = (message.event ?? {}) as Record<string, unknown>;
    const spinMs = Number(event.spinMs ?? 0);
    const answer = (): void => {
      if (this.dead) return;
      if (this.frozen) {
        this.held.push(answer);
        return;
      }
      this.cpuMs += spinMs;
      if (event.crash) {
        this.emit('output', 'stderr', 'boom');
        return this.die({ code: 3, signal: null, oomKilled: false, stderrTail: 'boom\n' });
      }
      if (event.oom)
        return this.die({ code: null, signal: 'SIGKILL', oomKilled: true, stderrTail: '' });
      this.emit('output', 'stdout', `handling ${message.id}`);
      if (typeof event.fail === 'string') {
        return this.emit('message', {
          type: 'error',
          id: message.id,
          code: 'HandlerError',
          message: event.fail,
        });
      }
      this.emit('message', { type: 'result', id: message.id, value: message.event });
    };
    this.clock.setTimer(Number(event.sleepMs ?? 0) + spinMs, answer);
  }

  on<E extends keyof SandboxEvents>(event: E, listener: SandboxEvents[E]): void {
    this.listeners[event].push(listener);
  }

  emit<E extends keyof SandboxEvents>(event: E, ...args: Parameters<SandboxEvents[E]>): void {
    for (const listener of this.listeners[event]) {
      (listener as (...a: Parameters<SandboxEvents[E]>) => void)(...args);
    }
  }

  die(exit: SandboxExit): void {
    if (this.dead) return;
    this.dead = true;
    this.emit('exit', exit);
  }

  /** Every CPU limit set after start, in order. */
  readonly cpuLimits: CpuLimit[] = [];

  async setCpu(limit: CpuLimit): Promise<void> {
    this.cpuLimits.push(limit);
  }

  async usage(): Promise<Usage> {
    return { cpuMs: this.cpuMs, peakMemoryBytes: 0, netRxBytes: 0, netTxBytes: 0 };
  }

  async destroy(): Promise<void> {
    this.die({ code: null, signal: 'SIGKILL', oomKilled: false, stderrTail: '' });
  }
}
