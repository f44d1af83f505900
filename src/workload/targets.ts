import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { type Http1Callback, type Http1Response, Http1Pool } from './http1.ts';
import { PetriError } from '../errors.ts';
import { z } from 'zod';
import { type Trace, type TraceFunction, syntheticFunctionName } from './trace.ts';

/** What one invocation asks for. */
export interface InvocationRequest {
  fn: number;
  durationMs: number;
  memoryMb: number;
}

/** Start paths a target may report (Petri's x-petri-start); '' when it does not say. */
export const START_PATHS = ['', 'warm', 'prewarm', 'restore', 'cold'] as const;
export type StartPath = (typeof START_PATHS)[number];

export interface InvocationOutcome {
  /** HTTP status, or 0 when no response came (connection error, timeout). */
  status: number;
  /** '' on success; the error code from the body, or the client error's code. */
  errorCode: string;
  start: StartPath;
  /** The duration the function itself reports, if it does. */
  actualDurationMs: number;
}

/**
 * An invocation's outcome without an object per invocation: `tag` is the
 * sender's (an index), `start` an index into START_PATHS, the rest as in
 * InvocationOutcome.
 */
export type OutcomeSink = (
  tag: number,
  status: number,
  errorCode: string,
  start: number,
  actualDurationMs: number,
) => void;

/** Sends one invocation; its outcome goes to the sink the sender was made with, with `tag`. */
export type Sender = (fn: number, durationMs: number, memoryMb: number, tag: number) => void;

/** Where `petri load` sends invocations. */
export interface LoadTarget {
  readonly kind: 'petri' | 'http';
  readonly description: string;
  /** Most requests in flight at once (its connections); more wait, and the wait is recorded. */
  readonly connections: number;
  /** Deploys or checks what the run needs; called before the schedule starts. */
  prepare(trace: Trace): Promise<void>;
  invoke(request: InvocationRequest): Promise<InvocationOutcome>;
  /**
   * The load generator's hot path, where the target has one: a sender with
   * no promise or closure per invocation (after `prepare`).
   */
  sender?(sink: OutcomeSink): Sender;
  /** The node's own CPU so far (its daemon + instance cgroups) and its cores, where it tells. */
  nodeCpu?(): Promise<{ ms: number; cores: number } | undefined>;
  /** The node's count of idle memory-time so far, MB·ms, where it tells. */
  nodeIdleMemoryMbMs?(): Promise<number | undefined>;
  /** The keep-alive policy its deploys ask for, if any. */
  readonly keepAlivePolicy?: string;
  /** Removes what `prepare` made and closes connections. */
  close(): Promise<void>;
}

export interface PoolOptions {
  /** Most concurrent connections per origin; open loop needs as many as requests in flight. */
  connections?: number;
  /** Longest wait for a response before it counts as failed. */
  timeoutMs?: number;
}

const DEFAULT_CONNECTIONS = 1024;

function makePool(origin: string, options: PoolOptions): Pool {
  const timeout = options.timeoutMs ?? 16 * 60_000;
  return new Pool(origin, {
    connections: options.connections ?? DEFAULT_CONNECTIONS,
    pipelining: 1,
    keepAliveTimeout: 60_000,
    headersTimeout: timeout,
    bodyTimeout: timeout,
  });
}

/** The hot path's connections to `origin` (an http: URL's origin). */
function makeInvokePool(
  origin: string,
  options: PoolOptions,
  headers: Record<string, string> = {},
): Http1Pool {
  const url = new URL(origin);
  if (url.protocol !== 'http:')
    throw new PetriError('InvalidRequest', `the load generator speaks http only: ${origin}`);
  return new Http1Pool({
    host: url.hostname.replace(/^\[|\]$/g, ''),
    port: Number(url.port || 80),
    connections: options.connections ?? DEFAULT_CONNECTIONS,
    timeoutMs: options.timeoutMs ?? 16 * 60_000,
    headers,
  });
}

/** Any HTTP endpoint: `{function}`, `{index}`, `{durationMs}`, `{memoryMb}` in the template are filled in. */
export class HttpTarget implements LoadTarget {
  readonly kind = 'http';
  readonly description: string;
  readonly connections: number;
  private readonly pools = new Map<string, Http1Pool>();
  private names: string[] = [];
  /** Per function, its pool and request head when the template does not name the request's own fields. */
  private fixed: { pool: Http1Pool; head: string }[] | undefined;

  constructor(
    private readonly urlTemplate: string,
    private readonly options: PoolOptions = {},
  ) {
    this.description = `http ${urlTemplate}`;
    this.connections = options.connections ?? DEFAULT_CONNECTIONS;
    let url: URL;
    try {
      url = new URL(
        fill(urlTemplate, { function: 'f', index: '0', durationMs: '1', memoryMb: '1' }),
      );
    } catch {
      throw new PetriError('InvalidRequest', `--url-template is not a URL: ${urlTemplate}`);
    }
    if (url.protocol !== 'http:')
      throw new PetriError('InvalidRequest', `--url-template must be http: ${urlTemplate}`);
  }

  async prepare(trace: Trace): Promise<void> {
    this.names = trace.functions.map(syntheticFunctionName);
    const perRequest = /\{(durationMs|memoryMb)\}/.test(this.urlTemplate);
    this.fixed = perRequest
      ? undefined
      : this.names.map((name, i) => this.route({ function: name, index: String(i) }));
  }

  private route(values: Record<string, string>): { pool: Http1Pool; head: string } {
    const url = new URL(fill(this.urlTemplate, values));
    let pool = this.pools.get(url.origin);
    if (!pool) {
      pool = makeInvokePool(url.origin, this.options);
      this.pools.set(url.origin, pool);
    }
    return { pool, head: pool.postHead(url.pathname + url.search) };
  }

  private routeOf(fn: number, durationMs: number, memoryMb: number) {
    return (
      this.fixed?.[fn] ??
      this.route({
        function: this.names[fn],
        index: String(fn),
        durationMs: String(Math.round(durationMs)),
        memoryMb: String(Math.round(memoryMb)),
      })
    );
  }

  sender(sink: OutcomeSink): Sender {
    const onResponse = responseHandler(sink);
    return (fn, durationMs, memoryMb, tag) => {
      const { pool, head } = this.routeOf(fn, durationMs, memoryMb);
      pool.request(requestBytes(head, durationMs, memoryMb), onResponse, tag);
    };
  }

  invoke(request: InvocationRequest): Promise<InvocationOutcome> {
    return invokeOnce(this, request);
  }

  async close(): Promise<void> {
    await Promise.all([...this.pools.values()].map((p) => p.close()));
    this.pools.clear();
  }
}

/**
 * The memory and timeout a trace function's synthetic function is deployed
 * with (the simulator sizes its instances the same way).
 */
export function syntheticLimits(fn: TraceFunction): { memoryMb: number; timeoutMs: number } {
  return {
    memoryMb: Math.min(10240, Math.max(64, Math.ceil(fn.memory.p100))),
    timeoutMs: Math.min(900_000, Math.max(5_000, Math.ceil(fn.duration.p100 * 4 + 5_000))),
  };
}

/** Options for deploying the synthetic functions on a Petri node. */
export interface PetriTargetOptions extends PoolOptions {
  /** The keep-alive policy the functions' specs choose (`keepAlive.policy`); absent: the node's. */
  keepAlivePolicy?: string;
  /** Memory (MB) left to the runtime itself; the function touches at most memoryMb − this. */
  headroomMb?: number;
  /** Remove the functions after the run. */
  cleanup?: boolean;
  /** Deploys in flight at once. */
  deployConcurrency?: number;
  /** The node's API token, sent with every request. */
  token?: string;
  /** The `autoscaling` field of every deployed function's spec; absent: the node's default. */
  autoscaling?: Record<string, unknown>;
  /** Calibrations in the sandbox; the median is used (default 3). */
  calibrations?: number;
}

/** The function `petri load` calibrates in, once per deploy (removed straight after). */
export const CALIBRATION_FUNCTION = 'synth-calibrate';

/** What `nodeCpu` needs of `/v1/node`. */
const NodeCpu = z.object({
  cores: z.number().positive(),
  cpu: z.object({
    daemonMs: z.number().nonnegative(),
    instancesMs: z.number().nonnegative().nullable(),
  }),
});

const NodeIdleMemory = z.object({ idleMemoryMbMs: z.number().nonnegative().finite() });

/** The calibration's answer; anything else from the function is refused. */
const Calibration = z.object({ itersPerCpuMs: z.number().positive().finite().max(1e9) });

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** Default location of the synthetic function's code. */
export const SYNTHETIC_FUNCTION_DIR = path.join(
  path.dirname(fileURLToPath(import.meta.url)),
  'synthetic-function',
);

/**
 * A Petri node: deploys one synthetic function per trace function (named
 * `synth-<i>-…`) with that function's memory, then invokes them synchronously.
 */
export class PetriTarget implements LoadTarget {
  readonly kind = 'petri';
  readonly description: string;
  readonly connections: number;
  private readonly pool: Pool;
  private readonly invokePool: Http1Pool;
  private heads: string[] = [];
  private names: string[] = [];
  itersPerMs = 0;
  /** Each calibration's iterations per CPU ms, in the order made (the median is `itersPerMs`). */
  calibrationRates: number[] = [];
  private readonly auth: Record<string, string>;

  constructor(
    private readonly url: string,
    private readonly options: PetriTargetOptions = {},
  ) {
    this.description = `petri ${url}`;
    this.connections = options.connections ?? DEFAULT_CONNECTIONS;
    this.auth = options.token ? { authorization: `Bearer ${options.token}` } : {};
    let origin: string;
    try {
      origin = new URL(url).origin;
    } catch {
      throw new PetriError('InvalidRequest', `--url is not a URL: ${url}`);
    }
    this.pool = makePool(origin, options);
    this.invokePool = makeInvokePool(origin, options, this.auth);
  }

  async prepare(trace: Trace): Promise<void> {
    this.itersPerMs = await this.calibrate();
    this.names = trace.functions.map(syntheticFunctionName);
    this.heads = this.names.map((name) => this.invokePool.postHead(`/v1/functions/${name}/invoke`));
    const specs = trace.functions.map((fn, i) => this.specFor(fn, this.names[i]));
    await forEachLimited(specs, this.options.deployConcurrency ?? 8, ({ name, body }) =>
      this.deploy(name, body),
    );
  }

  /**
   * Once per deploy, in CPU time, inside a sandbox on the node: deploys the
   * synthetic function as CALIBRATION_FUNCTION, asks it `calibrations` times
   * for its iterations per CPU ms (each the median of short timed runs),
   * keeps the median, removes it. CPU time does not count time descheduled,
   * so a busy node or a CPU quota does not change the figure; the median
   * drops a calibration that a burst of the runtime's other threads (counted
   * in the process's CPU clock) or the host pulled off.
   */
  private async calibrate(): Promise<number> {
    await this.deploy(CALIBRATION_FUNCTION, {
      runtime: 'node',
      handler: 'index.handler',
      memoryMb: 512,
      timeoutMs: 120_000,
      source: { path: SYNTHETIC_FUNCTION_DIR },
    });
    try {
      this.calibrationRates = [];
      const times = Math.max(1, Math.min(15, Math.round(this.options.calibrations ?? 3)));
      for (let k = 0; k < times; k++) this.calibrationRates.push(await this.calibrateOnce());
      const sorted = [...this.calibrationRates].sort((a, b) => a - b);
      return sorted[Math.floor(sorted.length / 2)];
    } finally {
      const removed = await this.pool.request({
        method: 'DELETE',
        path: `/v1/functions/${CALIBRATION_FUNCTION}`,
        headers: this.auth,
      });
      await removed.body.dump();
    }
  }

  private async calibrateOnce(): Promise<number> {
    const response = await this.pool.request({
      method: 'POST',
      path: `/v1/functions/${CALIBRATION_FUNCTION}/invoke`,
      headers: { ...this.auth, 'content-type': 'application/json' },
      body: '{"calibrate":true}',
    });
    const text = await response.body.text();
    const parsed = Calibration.safeParse(safeJson(text));
    if (response.statusCode >= 300 || !parsed.success)
      throw new PetriError(
        'InvalidRequest',
        `calibrating the synthetic function failed (${response.statusCode}): ${text.slice(0, 200)}`,
      );
    return parsed.data.itersPerCpuMs;
  }

  private async deploy(name: string, body: Record<string, unknown>): Promise<void> {
    const response = await this.pool.request({
      method: 'PUT',
      path: `/v1/functions/${name}`,
      headers: { ...this.auth, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    const text = await response.body.text();
    if (response.statusCode >= 300)
      throw new PetriError(
        'InvalidRequest',
        `deploying ${name} failed (${response.statusCode}): ${text}`,
      );
  }

  specFor(fn: TraceFunction, name: string): { name: string; body: Record<string, unknown> } {
    const { memoryMb, timeoutMs } = syntheticLimits(fn);
    const headroom = this.options.headroomMb ?? 48;
    return {
      name,
      body: {
        runtime: 'node',
        handler: 'index.handler',
        memoryMb,
        timeoutMs,
        ...(this.options.keepAlivePolicy
          ? { keepAlive: { policy: this.options.keepAlivePolicy } }
          : {}),
        env: {
          PETRI_SYNTH_ITERS_PER_MS: String(Math.round(this.itersPerMs)),
          PETRI_SYNTH_MEMORY_CAP_MB: String(Math.max(0, memoryMb - headroom)),
        },
        source: { path: SYNTHETIC_FUNCTION_DIR },
        ...(this.options.autoscaling ? { autoscaling: this.options.autoscaling } : {}),
      },
    };
  }

  sender(sink: OutcomeSink): Sender {
    const onResponse = responseHandler(sink);
    return (fn, durationMs, memoryMb, tag) =>
      this.invokePool.request(requestBytes(this.heads[fn], durationMs, memoryMb), onResponse, tag);
  }

  invoke(request: InvocationRequest): Promise<InvocationOutcome> {
    return invokeOnce(this, request);
  }

  /** From `/v1/node`: the daemon's CPU plus its instances' cgroups; undefined without cgroups. */
  async nodeCpu(): Promise<{ ms: number; cores: number } | undefined> {
    const response = await this.pool.request({
      method: 'GET',
      path: '/v1/node',
      headers: this.auth,
    });
    const parsed = NodeCpu.safeParse(safeJson(await response.body.text()));
    if (response.statusCode !== 200 || !parsed.success) return undefined;
    const { cores, cpu } = parsed.data;
    if (cpu.instancesMs === null) return undefined;
    return { ms: cpu.daemonMs + cpu.instancesMs, cores };
  }

  get keepAlivePolicy(): string | undefined {
    return this.options.keepAlivePolicy;
  }

  /** From `/v1/node`: the pool's idle memory-time so far. */
  async nodeIdleMemoryMbMs(): Promise<number | undefined> {
    const response = await this.pool.request({
      method: 'GET',
      path: '/v1/node',
      headers: this.auth,
    });
    const parsed = NodeIdleMemory.safeParse(safeJson(await response.body.text()));
    return response.statusCode === 200 && parsed.success ? parsed.data.idleMemoryMbMs : undefined;
  }

  async close(): Promise<void> {
    if (this.options.cleanup ?? true)
      await forEachLimited(this.names, 8, async (name) => {
        const response = await this.pool.request({
          method: 'DELETE',
          path: `/v1/functions/${name}`,
          headers: this.auth,
        });
        await response.body.dump();
      }).catch(() => undefined);
    await this.invokePool.close();
    await this.pool.close();
  }
}

/** An invocation's request: its preformatted head, the body's length and the body. */
function requestBytes(head: string, durationMs: number, memoryMb: number): string {
  return Http1Pool.postWith(head, `{"durationMs":${durationMs},"memoryMb":${memoryMb}}`);
}

/** One invocation as a promise of its outcome (the hot path uses `sender` instead). */
function invokeOnce(
  target: { sender(sink: OutcomeSink): Sender },
  request: InvocationRequest,
): Promise<InvocationOutcome> {
  return new Promise((resolve) =>
    target.sender((_tag, status, errorCode, start, actualDurationMs) =>
      resolve({ status, errorCode, start: START_PATHS[start], actualDurationMs }),
    )(request.fn, request.durationMs, request.memoryMb, 0),
  );
}

/** The pool callback that reads a response's outcome into `sink`: one per sender, not per request. */
function responseHandler(sink: OutcomeSink): Http1Callback {
  return (error: string, response: Http1Response | undefined, tag: number) => {
    if (!response) {
      sink(tag, 0, error || 'ClientError', 0, NaN);
      return;
    }
    const { status, body } = response;
    const start = startIndex(response.start);
    if (status >= 400) {
      sink(tag, status, errorCodeOf(body), start, NaN);
      return;
    }
    // The function's own measurement first (the synthetic function reports it); else the platform's.
    const reported = reportedDuration(body);
    const actualDurationMs = Number.isFinite(reported)
      ? reported
      : response.durationHeader === ''
        ? NaN
        : Number(response.durationHeader);
    sink(tag, status, '', start, actualDurationMs);
  };
}

function startIndex(text: string): number {
  if (text === '') return 0;
  return Math.max(0, (START_PATHS as readonly string[]).indexOf(text));
}

function errorCodeOf(body: string): string {
  try {
    const parsed = JSON.parse(body) as { error?: { code?: unknown } };
    return typeof parsed.error?.code === 'string' ? parsed.error.code : 'HttpError';
  } catch {
    return 'HttpError';
  }
}

function reportedDuration(body: string): number {
  try {
    const parsed = JSON.parse(body) as { durationMs?: unknown };
    return typeof parsed.durationMs === 'number' ? parsed.durationMs : NaN;
  } catch {
    return NaN;
  }
}

function fill(template: string, values: Record<string, string>): string {
  return template.replace(/\{(\w+)\}/g, (match, key: string) =>
    values[key] !== undefined ? encodeURIComponent(values[key]) : match,
  );
}

async function forEachLimited<T>(
  items: readonly T[],
  limit: number,
  work: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await work(items[next++]);
  });
  await Promise.all(workers);
}
