import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import type { Writable } from 'node:stream';
import {
  FrameDecoder,
  FrameWriter,
  type FromInstance,
  type ToInstance,
} from '../runtime/protocol.ts';
import type { IsolationLayer, LayerInstance } from './layer.ts';
import type {
  CpuLimit,
  IsolationReport,
  Sandbox,
  SandboxDriver,
  SandboxEvents,
  SandboxExit,
  SandboxSpec,
  Usage,
} from './types.ts';

const STDERR_TAIL_BYTES = 4096;
/** Variables an instance inherits from the node; everything else comes from its spec. */
export const INHERITED_ENV = ['PATH', 'LANG', 'TZ', 'HOME'];

export interface ProcessDriverOptions {
  /** The bundled instance host script (see runtime/bundle.ts buildHost). */
  hostScript: string;
  /** The Node binary that runs the host (config runtime.nodeBinary, checked at start). */
  nodeBinary: string;
  /** Isolation layers, innermost first. Empty means plain child processes. */
  layers: IsolationLayer[];
}

/**
 * The `process` driver: every instance is a child process running the
 * instance host, wrapped by whatever isolation layers this node has.
 */
export class ProcessDriver implements SandboxDriver {
  readonly name = 'process';

  constructor(private readonly options: ProcessDriverOptions) {}

  capabilities(): IsolationReport {
    return {
      driver: this.name,
      mechanisms: this.options.layers.flatMap((layer) => layer.mechanisms()),
    };
  }

  async create(spec: SandboxSpec): Promise<Sandbox> {
    const prepared: LayerInstance[] = [];
    try {
      for (const layer of this.options.layers) prepared.push(await layer.prepare(spec));
      const command = [this.options.nodeBinary, this.options.hostScript];
      return new ProcessSandbox(spec, command, prepared);
    } catch (err) {
      await destroyLayers(prepared);
      throw err;
    }
  }

  async reconcile(): Promise<void> {
    for (const layer of this.options.layers) await layer.reconcile();
  }

  async close(): Promise<void> {
    for (const layer of [...this.options.layers].reverse()) await layer.close();
  }
}

async function destroyLayers(layers: LayerInstance[]): Promise<void> {
  for (const layer of [...layers].reverse()) await layer.destroy();
}

function instanceEnv(spec: SandboxSpec, layers: LayerInstance[]): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const key of INHERITED_ENV) if (process.env[key]) env[key] = process.env[key];
  Object.assign(env, spec.env, ...layers.map((layer) => layer.env ?? {}));
  env.PETRI_RUNTIME = spec.entry.runtime;
  env.PETRI_FUNCTION = spec.functionName;
  env.PETRI_VERSION = String(spec.version);
  env.PETRI_INSTANCE_ID = spec.instanceId;
  env.PETRI_MEMORY_MB = String(spec.resources.memoryMb);
  if (spec.entry.runtime === 'node') {
    env.PETRI_BUNDLE = spec.entry.bundle;
    env.PETRI_EXPORT = spec.entry.exportName;
  } else {
    env.PETRI_COMMAND = JSON.stringify(spec.entry.command);
  }
  return env;
}

/** Splits a stream into lines, keeping a partial last line until it ends. */
function onLines(stream: NodeJS.ReadableStream, listener: (line: string) => void): void {
  let partial = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    const lines = (partial + chunk).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) listener(line);
  });
  stream.on('end', () => {
    if (partial) listener(partial);
  });
}

class ProcessSandbox implements Sandbox {
  readonly id: string;
  readonly address?: string;
  private readonly child: ChildProcess;
  private readonly channel: Writable;
  private readonly writer: FrameWriter;
  /** Invocations sent and not yet answered. */
  private outstanding = 0;
  private readonly listeners: { [E in keyof SandboxEvents]: SandboxEvents[E][] } = {
    message: [],
    output: [],
    exit: [],
  };
  private stderrTail = '';
  private exited = false;
  private exitPromise: Promise<void>;
  private destroyed: Promise<void> | undefined;

  constructor(
    spec: SandboxSpec,
    /** The instance host's command line, before the layers wrap it. */
    hostCommand: string[],
    private readonly layers: LayerInstance[],
  ) {
    this.id = spec.instanceId;
    this.address = layers.find((layer) => layer.address)?.address;
    const command = layers.reduce((cmd, layer) => layer.wrap(cmd), hostCommand);
    const [file, ...args] = command;
    this.child = spawn(file, args, {
      cwd: spec.cwd,
      env: instanceEnv(spec, layers),
      stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
      // Its own process group, so a kill reaches the commands it runs too.
      detached: true,
    });
    if (this.child.pid !== undefined) for (const layer of layers) layer.attach?.(this.child.pid);
    this.channel = this.child.stdio[3] as Writable;
    this.writer = new FrameWriter(this.channel, setImmediate);
    this.channel.on('error', () => {}); // a dead instance surfaces through 'exit'
    const decoder = new FrameDecoder<FromInstance>((message) => {
      if (message.type === 'result' || message.type === 'error') this.outstanding -= 1;
      this.emit('message', message);
    });
    (this.child.stdio[3] as NodeJS.ReadableStream).on('data', (chunk: Buffer) =>
      decoder.push(chunk),
    );
    onLines(this.child.stdout!, (line) => this.emit('output', 'stdout', line));
    onLines(this.child.stderr!, (line) => {
      this.stderrTail = (this.stderrTail + line + '\n').slice(-STDERR_TAIL_BYTES);
      this.emit('output', 'stderr', line);
    });
    this.exitPromise = new Promise((resolve) => {
      this.child.on('error', (err) => {
        this.stderrTail += `spawn failed: ${err.message}\n`;
      });
      this.child.on('close', (code, signal) => {
        this.exited = true;
        void this.reportExit(code, signal).finally(resolve);
      });
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /**
   * An idle instance gets its frame at once (a request alone never waits);
   * one still working on others reads when it is done, so its frames gather
   * until the end of this event-loop turn and go in one write.
   */
  send(message: ToInstance): void {
    if (this.exited) return;
    if (this.outstanding === 0) this.writer.writeNow(message);
    else this.writer.write(message);
    if (message.type === 'invoke') this.outstanding += 1;
  }

  on<E extends keyof SandboxEvents>(event: E, listener: SandboxEvents[E]): void {
    this.listeners[event].push(listener);
  }

  async setCpu(limit: CpuLimit): Promise<void> {
    for (const layer of this.layers) await layer.setCpu?.(limit);
  }

  async usage(options: { resetPeak?: boolean } = {}): Promise<Usage> {
    const usage: Usage = { cpuMs: 0, peakMemoryBytes: 0, netRxBytes: 0, netTxBytes: 0 };
    let fromLayers = false;
    for (const layer of this.layers) {
      const part = await layer.usage?.();
      if (part) {
        for (const [key, value] of Object.entries(part)) {
          if (value !== undefined) usage[key as keyof Usage] = value;
        }
        fromLayers = fromLayers || part.cpuMs !== undefined;
      }
      if (options.resetPeak) await layer.resetPeak?.();
    }
    if (!fromLayers && this.child.pid && !this.exited) {
      Object.assign(usage, await procUsage(this.child.pid));
    }
    return usage;
  }

  destroy(): Promise<void> {
    this.destroyed ??= this.kill();
    return this.destroyed;
  }

  private async kill(): Promise<void> {
    if (!this.exited && this.child.pid) {
      try {
        process.kill(-this.child.pid, 'SIGKILL');
      } catch {
        this.child.kill('SIGKILL');
      }
    }
    await this.exitPromise;
  }

  private async reportExit(code: number | null, signal: NodeJS.Signals | null): Promise<void> {
    let oomKilled = false;
    for (const layer of this.layers) oomKilled ||= (await layer.oomKilled?.()) ?? false;
    await destroyLayers(this.layers);
    const exit: SandboxExit = { code, signal, oomKilled, stderrTail: this.stderrTail };
    this.emit('exit', exit);
  }

  private emit<E extends keyof SandboxEvents>(
    event: E,
    ...args: Parameters<SandboxEvents[E]>
  ): void {
    for (const listener of this.listeners[event]) {
      (listener as (...a: Parameters<SandboxEvents[E]>) => void)(...args);
    }
  }
}

const CLOCK_TICKS_PER_SECOND = 100;

/**
 * CPU time and peak memory of one process from /proc, for nodes without
 * cgroups. Read synchronously: two tiny procfs reads cost microseconds, far
 * less than the promise and thread-pool round trips of async reads on the
 * per-invocation path (measured with bench invoke).
 */
async function procUsage(pid: number): Promise<Partial<Usage>> {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    // Fields after the command name (which may hold spaces) start at ")".
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14]);
    const hwm = /VmHWM:\s+(\d+) kB/.exec(status);
    return {
      cpuMs: (ticks * 1000) / CLOCK_TICKS_PER_SECOND,
      peakMemoryBytes: hwm ? Number(hwm[1]) * 1024 : 0,
    };
  } catch {
    return {};
  }
}
