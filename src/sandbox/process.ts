import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { PetriError } from '../errors.ts';
import fs from 'node:fs';
import type net from 'node:net';
import path from 'node:path';
import {
  cutText,
  encodeFunctionEnv,
  ERROR_TEXT_BYTES,
  FrameDecoder,
  FrameWriter,
  FUNCTION_ENV_VAR,
  parseFromInstance,
  PREWARM_RUNTIME,
  type FrameError,
  type FromInstance,
  type ToInstance,
} from '../runtime/index.ts';
import {
  CodeSlot,
  findMountTools,
  MountShell,
  unmountUnder,
  type MountTools,
} from './code-slot.ts';
import { TRUSTED_PATH, type HostTools } from './host-tools.ts';
import type { InheritedDescriptor, IsolationLayer, LayerInstance } from './layer.ts';
import { LineSplitter } from './lines.ts';
import { READ_BUFFER_BYTES, readIntoSharedBuffer, socketClosed } from './shared-reads.ts';
import type {
  CpuLimit,
  IsolationReport,
  PrewarmSandbox,
  PrewarmSpec,
  LaunchReport,
  Sandbox,
  SandboxDriver,
  SandboxEvents,
  SandboxExit,
  SandboxSpec,
  InstanceLimits,
  Usage,
} from './types.ts';

const STDERR_TAIL_BYTES = 4096;
/**
 * Room in a frame beyond the response limit for the envelope around a result
 * (type, id, key names): a result frame up to this much over the limit is
 * still read, and refused as ResponseTooLarge; any longer frame is BadFrame.
 */
export const FRAME_ENVELOPE_BYTES = 64 * 1024;
/** A result frame's bytes besides its value: `{"type":"result","id":"<id>","value":}`. */
const RESULT_ENVELOPE_BYTES = 256;
/** Variables an instance takes from the node's own environment (the operator's, not a function's). */
export const INHERITED_ENV = ['LANG', 'TZ', 'HOME'];
/** System folders on an instance's PATH, after the folder of the node binary. */
const SYSTEM_PATH = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

export interface ProcessDriverOptions {
  /** The bundled instance host script (see runtime/bundle.ts buildHost). */
  hostScript: string;
  /** Isolation layers, innermost first. Empty means plain child processes. */
  layers: IsolationLayer[];
  /** What an instance may send back. */
  limits: InstanceLimits;
  /** The launch tools resolved at start, reported by `capabilities()`. */
  launchTools?: HostTools;
  /** The Node binary that runs the host (config runtime.nodeBinary, checked at start). */
  nodeBinary?: string;
  /**
   * Where prewarmed runtimes' code folders are made (`<stateDir>/prewarms`);
   * absent: this driver makes no prewarmed runtimes.
   */
  prewarmDir?: string;
}

/**
 * PATH inside instances: the folder of the node binary instances run, so
 * `node` is the daemon's own Node and not a shim, then system folders. Never
 * the daemon's PATH (npm puts node_modules/.bin first; pyenv and nvm shims
 * live in home folders instances cannot see).
 */
export function instancePath(nodeBinary = process.execPath): string {
  return [...new Set([path.dirname(nodeBinary), ...SYSTEM_PATH])].join(':');
}

/**
 * The `process` driver: every instance is a child process running the
 * instance host, wrapped by whatever isolation layers this node has.
 */
export class ProcessDriver implements SandboxDriver {
  readonly name = 'process';
  /**
   * Every instance's pipes are read into this one buffer (see
   * shared-reads.ts): reads run one at a time on the event loop, and each
   * is consumed before the next.
   */
  private readonly readBuffer = Buffer.allocUnsafe(READ_BUFFER_BYTES);

  constructor(private readonly options: ProcessDriverOptions) {}

  private get nodeBinary(): string {
    return this.options.nodeBinary ?? process.execPath;
  }

  capabilities(): IsolationReport {
    const sandboxRoot = this.options.layers
      .map((layer) => layer.sandboxRoot?.())
      .find((report) => report !== undefined);
    return {
      driver: this.name,
      mechanisms: this.options.layers.flatMap((layer) => layer.mechanisms()),
      ...(this.options.launchTools
        ? { launch: launchReport(this.options.launchTools, this.nodeBinary) }
        : {}),
      ...(sandboxRoot ? { sandboxRoot } : {}),
    };
  }

  async create(spec: SandboxSpec): Promise<Sandbox> {
    const prepared: LayerInstance[] = [];
    try {
      for (const layer of this.options.layers) prepared.push(await layer.prepare(spec));
      return new ProcessSandbox(spec, this.options, prepared, this.readBuffer);
    } catch (err) {
      await destroyLayers(prepared);
      throw err;
    }
  }

  prewarmUnsupported(): string | undefined {
    if (this.options.prewarmDir === undefined) return 'the sandbox driver has no prewarm folder';
    if (process.geteuid?.() !== 0) return 'prewarmed runtimes need root (their code is mounted)';
    if (!this.mountTools()) return 'mount, umount (util-linux) or sh is not on the trusted PATH';
    return undefined;
  }

  /**
   * A runtime with no function: its code folder is an empty CodeSlot that
   * `bindCode` fills later, the host waits for a `bind` frame, and the slot
   * is unmounted and removed with the sandbox.
   */
  async createPrewarm(spec: PrewarmSpec): Promise<PrewarmSandbox> {
    const unsupported = this.prewarmUnsupported();
    if (unsupported !== undefined) throw new PetriError('Internal', unsupported);
    const tools = this.mountTools()!;
    this.mountShell ??= new MountShell(tools);
    const slot = await CodeSlot.make(
      this.options.prewarmDir!,
      spec.instanceId,
      tools,
      this.mountShell,
    );
    const full: SandboxSpec = {
      ...spec,
      functionName: '',
      version: 0,
      codeDir: slot.dir,
      cwd: slot.dir,
      entry: { runtime: 'node', bundle: '', exportName: '' },
      env: {},
    };
    const slotLayer: LayerInstance = { wrap: (command) => command, destroy: () => slot.remove() };
    const prepared: LayerInstance[] = [slotLayer];
    try {
      for (const layer of this.options.layers) prepared.push(await layer.prepare(full));
      const sandbox = new ProcessSandbox(full, this.options, prepared, this.readBuffer, true);
      return Object.assign(sandbox, {
        codeMount: slot.dir,
        bindCode: (codeDir: string) => slot.fill(codeDir),
      });
    } catch (err) {
      await destroyLayers(prepared);
      throw err;
    }
  }

  private tools: MountTools | undefined | null = null;
  /** Makes binds' mounts without a spawn from the daemon (created with the first prewarm). */
  private mountShell: MountShell | undefined;

  private mountTools(): MountTools | undefined {
    if (this.tools === null) this.tools = findMountTools();
    return this.tools;
  }

  async reconcile(): Promise<void> {
    for (const layer of this.options.layers) await layer.reconcile();
    // Code folders of prewarmed runtimes a crashed run left (their sandboxes died with it).
    const dir = this.options.prewarmDir;
    const tools = this.mountTools();
    if (dir !== undefined && tools) {
      await unmountUnder(dir, tools);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }

  async close(): Promise<void> {
    await this.mountShell?.close();
    for (const layer of [...this.options.layers].reverse()) await layer.close();
  }

  /** The first layer that measures it (the cgroup layer): every instance's CPU, ended ones too. */
  async instancesCpuMs(): Promise<number | undefined> {
    for (const layer of this.options.layers) {
      const ms = await layer.instancesCpuMs?.();
      if (ms !== undefined) return ms;
    }
    return undefined;
  }
}

async function destroyLayers(layers: LayerInstance[]): Promise<void> {
  for (const layer of [...layers].reverse()) await layer.destroy();
}

function launchReport(tools: HostTools, nodeBinary: string): LaunchReport {
  return {
    trustedPath: TRUSTED_PATH.join(':'),
    tools: Object.fromEntries(Object.entries(tools).map(([name, file]) => [name, file ?? null])),
    instancePath: instancePath(nodeBinary),
  };
}

/**
 * The environment of the whole launch chain and of the instance host: only
 * Petri's own variables. The function's env travels as one opaque value.
 */
function instanceEnv(
  spec: SandboxSpec,
  layers: LayerInstance[],
  limits: InstanceLimits,
  nodeBinary: string,
  prewarm = false,
): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: instancePath(nodeBinary) };
  for (const key of INHERITED_ENV) if (process.env[key]) env[key] = process.env[key];
  Object.assign(env, ...layers.map((layer) => layer.env ?? {}));
  // The function's env as one opaque value, decoded by the host inside the sandbox (runtime/env.ts).
  env[FUNCTION_ENV_VAR] = encodeFunctionEnv(spec.env);
  env.PETRI_RUNTIME = spec.entry.runtime;
  env.PETRI_FUNCTION = spec.functionName;
  env.PETRI_VERSION = String(spec.version);
  env.PETRI_INSTANCE_ID = spec.instanceId;
  env.PETRI_MEMORY_MB = String(spec.resources.memoryMb);
  // The host refuses over-long results and lines itself; the daemon checks again.
  env.PETRI_RESPONSE_LIMIT_BYTES = String(limits.responseBytes);
  env.PETRI_LOG_LINE_BYTES = String(limits.logLineBytes);
  // A prewarmed host learns its function (and the bundle) from the `bind` frame.
  if (prewarm) env.PETRI_RUNTIME = PREWARM_RUNTIME;
  else if (spec.entry.runtime === 'node') {
    env.PETRI_BUNDLE = spec.entry.bundle;
    env.PETRI_EXPORT = spec.entry.exportName;
  } else {
    env.PETRI_COMMAND = JSON.stringify(spec.entry.command);
  }
  if (spec.group) {
    // Rank, size and peers come from the coordinator, which the host asks once it runs.
    env.PETRI_GROUP = spec.group.name;
    env.PETRI_RANK = String(spec.group.rank);
    env.PETRI_COORDINATOR = spec.group.coordinator;
  }
  return env;
}

/** stdin ignored, stdout, stderr and the protocol pipe (fd 3), then the layers' descriptors. */
function stdioWith(descriptors: InheritedDescriptor[]): StdioOptions {
  const stdio: ('ignore' | 'pipe' | number)[] = ['ignore', 'pipe', 'pipe', 'pipe'];
  for (const { fd, source } of descriptors) {
    if (fd <= 3 || stdio[fd] !== undefined) throw new Error(`descriptor ${fd} is taken`);
    stdio[fd] = source;
  }
  for (let fd = 0; fd < stdio.length; fd++) stdio[fd] ??= 'ignore';
  return stdio;
}

/** Runs `step`; anything it throws goes to `onError`, never out of a stream's handler. */
function guarded(step: () => void, onError: (err: unknown) => void): void {
  try {
    step();
  } catch (err) {
    onError(err);
  }
}

/**
 * Reads a child's output socket into `buffer`, calling `listener` with each
 * line cut at `maxLineBytes`. Returns the socket it reads.
 */
function readLines(
  stream: net.Socket,
  buffer: Buffer,
  maxLineBytes: number,
  listener: (line: string) => void,
  onError: (err: unknown) => void,
): net.Socket {
  const splitter = new LineSplitter(maxLineBytes, listener);
  const socket = readIntoSharedBuffer(stream, buffer, (chunk) =>
    guarded(() => splitter.push(chunk), onError),
  );
  socket.on('end', () => guarded(() => splitter.end(), onError));
  socket.on('error', () => {}); // a dead instance surfaces through 'exit'
  return socket;
}

class ProcessSandbox implements Sandbox {
  readonly id: string;
  readonly address?: string;
  private readonly child: ChildProcess;
  private readonly channel: net.Socket;
  private readonly writer: FrameWriter;
  /** Invocations sent and not yet answered. */
  private outstanding = 0;
  private readonly listeners: { [E in keyof SandboxEvents]: SandboxEvents[E][] } = {
    message: [],
    output: [],
    exit: [],
  };
  private stderrTail = '';
  /** Why the instance was killed for breaking the protocol, once it was. */
  private protocolError: string | undefined;
  private exited = false;
  private exitPromise: Promise<void>;
  private destroyed: Promise<void> | undefined;

  constructor(
    spec: SandboxSpec,
    options: ProcessDriverOptions,
    private readonly layers: LayerInstance[],
    readBuffer: Buffer,
    prewarm = false,
  ) {
    this.id = spec.instanceId;
    this.address = layers.find((layer) => layer.address)?.address;
    const { limits } = options;
    const context = { ownPaths: layers.flatMap((layer) => layer.ownPaths ?? []) };
    const command = layers.reduce(
      (cmd, layer) => layer.wrap(cmd, context),
      [options.nodeBinary ?? process.execPath, ...(spec.nodeArgs ?? [options.hostScript])],
    );
    const [file, ...args] = command;
    const descriptors = layers.flatMap((layer) => layer.descriptors?.() ?? []);
    try {
      this.child = spawn(file, args, {
        cwd: spec.cwd,
        env: instanceEnv(spec, layers, limits, options.nodeBinary ?? process.execPath, prewarm),
        stdio: stdioWith(descriptors),
        // Its own process group, so a kill reaches the commands it runs too.
        detached: true,
      });
    } finally {
      for (const { source } of descriptors) fs.closeSync(source);
    }
    if (this.child.pid !== undefined) for (const layer of layers) layer.attach?.(this.child.pid);
    const decoder = new FrameDecoder<FromInstance>(
      (message, bodyBytes) => this.onFrame(message, bodyBytes, limits),
      {
        maxFrameBytes: limits.responseBytes + FRAME_ENVELOPE_BYTES,
        parse: parseFromInstance,
        onError: (error: FrameError) => this.breakProtocol(error.message),
      },
    );
    // Nothing an instance sends may throw out of these handlers: that would take the daemon down.
    const frameFailed = (err: unknown): void =>
      this.breakProtocol(`a frame the daemon failed on (${(err as Error).message})`);
    this.channel = readIntoSharedBuffer(this.child.stdio[3] as net.Socket, readBuffer, (chunk) =>
      guarded(() => decoder.push(chunk), frameFailed),
    );
    this.channel.on('error', () => {}); // a dead instance surfaces through 'exit'
    this.writer = new FrameWriter(this.channel, setImmediate);
    const outputFailed = (err: unknown): void =>
      this.breakProtocol(`output the daemon failed on (${(err as Error).message})`);
    const stdout = readLines(
      this.child.stdout as net.Socket,
      readBuffer,
      limits.logLineBytes,
      (line) => this.emit('output', 'stdout', line),
      outputFailed,
    );
    const stderr = readLines(
      this.child.stderr as net.Socket,
      readBuffer,
      limits.logLineBytes,
      (line) => {
        this.stderrTail = (this.stderrTail + line + '\n').slice(-STDERR_TAIL_BYTES);
        this.emit('output', 'stderr', line);
      },
      outputFailed,
    );
    const childClosed = new Promise<[number | null, NodeJS.Signals | null]>((resolve) => {
      this.child.on('error', (err) => {
        this.stderrTail += `spawn failed: ${err.message}\n`;
      });
      this.child.on('close', (code, signal) => resolve([code, signal]));
    });
    // The exit is reported once every frame and line the instance sent has been read
    // (a process that never started has no pipes to wait for).
    const streams = this.child.pid === undefined ? [] : [this.channel, stdout, stderr];
    const streamsClosed = Promise.all(streams.map(socketClosed));
    this.exitPromise = Promise.all([childClosed, streamsClosed]).then(([[code, signal]]) => {
      this.exited = true;
      return this.reportExit(code, signal);
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /**
   * An idle instance gets its frame at once (a request alone never waits);
   * one still working on others reads when it is done, so its frames gather
   * until the end of this event-loop turn and go in one write. An `admit`
   * always goes at once: the invocation it names is waiting for it.
   */
  send(message: ToInstance): void {
    if (this.exited) return;
    if (this.outstanding === 0 || message.type === 'admit') this.writer.writeNow(message);
    else this.writer.write(message);
    if (message.type === 'invoke') this.outstanding += 1;
  }

  on<E extends keyof SandboxEvents>(event: E, listener: SandboxEvents[E]): void {
    this.listeners[event].push(listener);
  }

  async setCpu(limit: CpuLimit): Promise<void> {
    // Layers without limits are skipped, not awaited: the cgroup write starts in this call.
    for (const layer of this.layers) if (layer.setCpu) await layer.setCpu(limit);
  }

  get freezable(): boolean {
    return this.layers.some((layer) => layer.freeze);
  }

  async freeze(): Promise<void> {
    const layer = this.layers.find((l) => l.freeze);
    if (!layer?.freeze) throw new Error('this sandbox cannot be frozen');
    await layer.freeze();
  }

  async thaw(): Promise<void> {
    for (const layer of this.layers) await layer.thaw?.();
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
      // A frozen process acts on the SIGKILL only once thawed (cgroup v1), and runs no code then.
      await this.thaw().catch(() => undefined);
    }
    await this.exitPromise;
  }

  private onFrame(message: FromInstance, bodyBytes: number, limits: InstanceLimits): void {
    if (this.protocolError !== undefined) return;
    if (message.type === 'result' || message.type === 'error') {
      this.outstanding = Math.max(0, this.outstanding - 1);
    }
    if (message.type === 'log') message.line = cutText(message.line, limits.logLineBytes);
    if (message.type === 'error' || message.type === 'init-error') {
      message.message = cutText(message.message, ERROR_TEXT_BYTES.message);
      if (message.stack !== undefined)
        message.stack = cutText(message.stack, ERROR_TEXT_BYTES.stack);
    }
    if (message.type === 'result' && bodyBytes > limits.responseBytes + RESULT_ENVELOPE_BYTES) {
      // An honest host refuses such a result itself; this one did not.
      this.emit('message', {
        type: 'error',
        id: message.id,
        code: 'ResponseTooLarge',
        message: `the result is about ${bodyBytes} bytes, over the ${limits.responseBytes}-byte response limit`,
      });
      return;
    }
    this.emit('message', message);
  }

  /** Kills an instance that sent something the protocol does not allow; `exit` says why. */
  private breakProtocol(reason: string): void {
    if (this.protocolError !== undefined) return;
    this.protocolError = reason;
    void this.destroy();
  }

  private async reportExit(code: number | null, signal: NodeJS.Signals | null): Promise<void> {
    let oomKilled = false;
    for (const layer of this.layers) oomKilled ||= (await layer.oomKilled?.()) ?? false;
    await destroyLayers(this.layers);
    const exit: SandboxExit = { code, signal, oomKilled, stderrTail: this.stderrTail };
    if (this.protocolError !== undefined) exit.protocolError = this.protocolError;
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
