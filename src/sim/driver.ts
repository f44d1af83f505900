import type { Clock } from '../node/index.ts';
import type { ToInstance } from '../runtime/index.ts';
import type {
  CpuLimit,
  IsolationReport,
  Sandbox,
  SandboxDriver,
  SandboxEvents,
  SandboxExit,
  SandboxSpec,
  Usage,
} from '../sandbox/index.ts';
import type { CpuShare } from './cpu-share.ts';

const NO_USAGE: Usage = { cpuMs: 0, peakMemoryBytes: 0, netRxBytes: 0, netTxBytes: 0 };
const KILLED: SandboxExit = { code: null, signal: 'SIGKILL', oomKilled: false, stderrTail: '' };

/**
 * The simulator's sandbox driver: no processes, only time. A sandbox is
 * ready `startMs(function)` after it was made, and answers an invocation
 * `{durationMs}` that long after it was sent, all on the simulated clock.
 * With a CpuShare, an invocation `{cpuMs, durationMs}` first gets `cpuMs`
 * of a core shared with every other running invocation, then waits
 * `durationMs` more (time that takes no CPU of the node's).
 */
export class SimDriver implements SandboxDriver {
  readonly name = 'sim';

  constructor(
    private readonly clock: Clock,
    private readonly startMs: (functionName: string) => number,
    /** Time from kill to exit (a stopping instance holds its memory until then). */
    private readonly stopMs: (functionName: string) => number = () => 0,
    private readonly cpu?: CpuShare,
  ) {}

  capabilities(): IsolationReport {
    return { driver: this.name, mechanisms: [] };
  }

  async create(spec: SandboxSpec): Promise<Sandbox> {
    return new SimSandbox(
      spec.instanceId,
      this.clock,
      this.clock.now() + this.startMs(spec.functionName),
      this.stopMs(spec.functionName),
      this.cpu,
    );
  }

  async reconcile(): Promise<void> {}
  async close(): Promise<void> {}
}

class SimSandbox implements Sandbox {
  readonly pid = undefined;
  private dead = false;
  private readySet = false;
  private readonly messages: SandboxEvents['message'][] = [];
  private readonly exits: SandboxEvents['exit'][] = [];

  constructor(
    readonly id: string,
    private readonly clock: Clock,
    private readonly readyAt: number,
    private readonly stopMs: number,
    private readonly cpu: CpuShare | undefined,
  ) {}

  send(message: ToInstance): void {
    if (message.type !== 'invoke' || this.dead) return;
    const event = message.event as { durationMs?: unknown; cpuMs?: unknown } | null;
    const ms = typeof event?.durationMs === 'number' ? event.durationMs : 0;
    const id = message.id;
    const cpuMs = typeof event?.cpuMs === 'number' ? event.cpuMs : 0;
    // Inline closures, none held in a named const: tsx (esbuild keepNames)
    // names each such closure with a defineProperty call, once per invocation.
    if (this.cpu && cpuMs > 0)
      this.cpu.run(cpuMs, () => {
        if (!this.dead) this.clock.setTimer(ms, () => this.answer(id));
      });
    else this.clock.setTimer(ms, () => this.answer(id));
  }

  private answer(id: string): void {
    if (!this.dead) this.emitMessage({ type: 'result', id, value: null });
  }

  on<E extends keyof SandboxEvents>(event: E, listener: SandboxEvents[E]): void {
    if (event === 'message') {
      this.messages.push(listener as SandboxEvents['message']);
      // Ready is timed from creation but set once someone listens, so it is never missed.
      if (!this.readySet) {
        this.readySet = true;
        this.clock.setTimer(this.readyAt - this.clock.now(), () => {
          if (!this.dead) this.emitMessage({ type: 'ready' });
        });
      }
    } else if (event === 'exit') this.exits.push(listener as SandboxEvents['exit']);
  }

  async setCpu(_limit: CpuLimit): Promise<void> {}

  async usage(): Promise<Usage> {
    return NO_USAGE;
  }

  async destroy(): Promise<void> {
    if (this.dead) return;
    this.dead = true;
    // A real sandbox's exit is reported later, never inside the call that killed it.
    if (this.stopMs > 0)
      await new Promise<void>((resolve) => this.clock.setTimer(this.stopMs, resolve));
    else await Promise.resolve();
    for (const listener of this.exits) listener(KILLED);
  }

  private emitMessage(message: Parameters<SandboxEvents['message']>[0]): void {
    for (const listener of this.messages) listener(message);
  }
}
