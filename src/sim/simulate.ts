import { PetriError } from '../errors.ts';
import {
  Instance,
  type InstanceHooks,
  ManualClock,
  Pool,
  type PoolLimits,
  type Slot,
} from '../node/index.ts';
import {
  KeepAliveByFunction,
  makeKeepAlivePolicy,
  type InstanceState,
  type KeepAlivePolicyName,
} from '../policy/index.ts';
import type { SandboxSpec } from '../sandbox/index.ts';
import { parseSpec } from '../spec/index.ts';
import type { FunctionRecord } from '../store/index.ts';
import {
  type IatDistribution,
  type RunData,
  type Schedule,
  START_PATHS,
  type StartPath,
  type Trace,
  buildSchedule,
  emptyRunData,
  syntheticFunctionName,
  syntheticLimits,
} from '../workload/index.ts';
import { CpuShare } from './cpu-share.ts';
import { SimDriver } from './driver.ts';
import { type PolicyFigures, coldOf, policyFigures } from './figures.ts';
import { coldStartStats } from './metrics.ts';

export interface SimOptions {
  policies: readonly KeepAlivePolicyName[];
  memoryBudgetMb: number;
  /** The fixed policy's keep-alive and the hybrid policy's fallback (ms). */
  keepAliveMs?: number;
  minutes: number;
  warmupMinutes?: number;
  minuteMs?: number;
  iat?: IatDistribution;
  seed: number;
  /** Cold-start time of a function (ms), as measured on the node; by trace index. */
  startMs: (fnIndex: number) => number;
  /**
   * How long an instance is busy with an invocation that asked for
   * `requestedMs` (the trace's duration), as measured on the node; by trace
   * index. Default: the requested time (a node with no overhead).
   */
  runMs?: (fnIndex: number, requestedMs: number) => number;
  /**
   * Processor sharing (see CpuShare): the node's `cores` shared by every
   * running invocation, each needing `demandMs(fnIndex, requestedMs)` of
   * one core; `runMs` is then the time an invocation takes beyond its CPU
   * (default 0). Absent: each invocation takes `runMs` whatever else runs.
   */
  cpu?: { cores: number; demandMs: (fnIndex: number, requestedMs: number) => number };
  /** Time from an instance's kill to its exit (ms), as measured on the node; by trace index. Default 0. */
  stopMs?: (fnIndex: number) => number;
  maxInstancesPerFunction?: number;
  queueMaxSize?: number;
  queueMaxWaitMs?: number;
  /**
   * Events within this many ms are handled as one step. Work that follows an
   * event asynchronously (a warm invocation's send after its slot) happens at
   * the step's end, so timings are exact to this resolution.
   */
  resolutionMs?: number;
  onProgress?: (policy: string, done: number, total: number) => void;
}

export interface FunctionResult {
  name: string;
  invocations: number;
  coldStarts: number;
  coldStartRatio: number;
}

/** One policy's figures over the measured minutes. */
export interface PolicyResult {
  policy: KeepAlivePolicyName;
  invocations: number;
  coldStarts: number;
  coldStartRatio: number;
  /** Memory of idle instances × the time they idled, GB·s. */
  wastedMemoryGbS: number;
  /** Time-weighted mean of live instances (starting, idle or busy). */
  meanInstances: number;
  /** Invocations that waited in a queue, and the mean wait over all served ones (ms). */
  queued: number;
  meanQueuedMs: number;
  /** Invocations the node refused or failed (queue full, queue timeout, …), and by error code. */
  failed: number;
  failures: Record<string, number>;
  /** Instances started ahead of a predicted arrival, and how many served one. */
  prewarmStarted: number;
  prewarmHits: number;
  perFunction: FunctionResult[];
  /** Geometric mean of response ÷ requested time across functions (the load run's slowdown). */
  slowdown: number;
  /** Seconds the simulation itself took (not its summary). */
  wallSeconds: number;
  /** CPU seconds of this process over the same span (user + system, all its threads). */
  cpuSeconds: number;
  /** The figures `petri report` puts beside a live run's (same code). */
  figures: PolicyFigures;
  /** Every invocation, as `petri load` records them. */
  data: RunData;
}

/**
 * Replays a trace through the live Pool, Instance and keep-alive policy code
 * on a ManualClock with a sandbox driver made of timers: arrivals come from
 * the load generator's own schedule (same inter-arrival reconstruction and
 * seed as `petri load`), run times from the trace, start times from the
 * figures given. Deterministic for a seed.
 */
export async function simulate(trace: Trace, options: SimOptions): Promise<PolicyResult[]> {
  const schedule = buildSchedule(trace, {
    minutes: options.minutes,
    warmupMinutes: options.warmupMinutes ?? 0,
    iat: options.iat ?? 'exponential',
    seed: options.seed,
    minuteMs: options.minuteMs,
  });
  const results: PolicyResult[] = [];
  for (const policy of options.policies)
    results.push(await simulateOne(trace, schedule, policy, options));
  return results;
}

async function simulateOne(
  trace: Trace,
  schedule: Schedule,
  policyName: KeepAlivePolicyName,
  options: SimOptions,
): Promise<PolicyResult> {
  const wallStart = performance.now();
  const cpuStart = process.cpuUsage();
  const clock = new ManualClock(0);
  const names = trace.functions.map(syntheticFunctionName);
  const indexOf = new Map(names.map((name, i) => [name, i]));
  const stopMs = options.stopMs;
  const driver = new SimDriver(
    clock,
    (name) => options.startMs(indexOf.get(name) ?? 0),
    stopMs ? (name) => stopMs(indexOf.get(name) ?? 0) : undefined,
    options.cpu ? new CpuShare(clock, options.cpu.cores) : undefined,
  );
  const windowStart = schedule.warmupMinutes * schedule.minuteMs;
  const windowEnd = (schedule.warmupMinutes + schedule.minutes) * schedule.minuteMs;
  const meter = new InstanceMeter(clock, windowStart, windowEnd);
  const limits: PoolLimits = {
    memoryBudgetMb: options.memoryBudgetMb,
    maxInstancesPerFunction: options.maxInstancesPerFunction ?? 32,
    queueMaxSize: options.queueMaxSize ?? 100,
    queueMaxWaitMs: options.queueMaxWaitMs ?? 30_000,
  };
  const keepAliveMs = options.keepAliveMs ?? 600_000;
  let started = 0;
  // The node's own arrangement: a per-function router over the node's default policy.
  const policy = new KeepAliveByFunction(
    policyName,
    (name) => makeKeepAlivePolicy(name, { keepAliveMs }),
    () => undefined,
  );
  // One set of instance hooks for every instance (none is per instance).
  const instanceHooks: InstanceHooks = {
    onState: (instance, state, _details, from) => {
      meter.change(state, from);
      if (state === 'dead') pool.forget(instance);
    },
    onLog: () => {},
  };
  const pool: Pool = new Pool(
    limits,
    policy,
    {
      startInstance: (record) =>
        Instance.start(
          driver,
          record,
          sandboxSpec(record, started++),
          instanceHooks,
          60_000,
          clock,
        ),
    },
    clock,
  );
  const entries = trace.functions.map((fn, i) => {
    const record = functionRecord(names[i], fn);
    pool.setFunction(record);
    return pool.entry(record.name)!;
  });

  const n = schedule.atMs.length;
  // Every invocation as a load run records it, so both are summarised by the same code.
  const data = scheduleRunData(trace, schedule, policyName, options);
  const failures: Record<string, number> = {};
  const fail = (k: number, err: unknown): void => {
    const error = err instanceof PetriError ? err : undefined;
    data.doneMs[k] = clock.now();
    data.status[k] = error?.status ?? 500;
    data.errorCode[k] = error?.code ?? 'Internal';
    if (schedule.warmup[k] !== 0) return;
    failures[data.errorCode[k]] = (failures[data.errorCode[k]] ?? 0) + 1;
  };
  // The pool's own count of idle memory-time, read where the measured window starts and ends.
  let idleAtStart = 0;
  let idleAtEnd: number | undefined;
  clock.setTimer(windowStart, () => (idleAtStart = pool.idleMemoryMbMs()));
  clock.setTimer(windowEnd, () => (idleAtEnd = pool.idleMemoryMbMs()));
  const runMs = options.runMs;
  const cpu = options.cpu;
  let queued = 0;
  let queuedMsSum = 0;
  let served = 0;
  let outstanding = 0;
  // One invocation, on callbacks: a warm slot comes back at once and the
  // result by the instance's callback, so most invocations make no promise.
  const finished = (i: number, instance: Instance, sentAt: number): void => {
    data.doneMs[i] = clock.now();
    data.status[i] = 200;
    data.actualDurationMs[i] = clock.now() - sentAt;
    pool.release(instance);
    outstanding -= 1;
  };
  const failed = (i: number, instance: Instance | undefined, err: unknown): void => {
    fail(i, err);
    if (instance) pool.release(instance);
    outstanding -= 1;
  };
  const dispatch = (i: number, receivedAt: number, slot: Slot): void => {
    const path =
      slot.startPath === 'warm' ? WARM : START_PATHS.indexOf(slot.startPath as StartPath);
    data.start[i] = Math.max(0, path);
    if (schedule.warmup[i] === 0) {
      const wait = Math.max(0, slot.dispatchedAt - receivedAt);
      served += 1;
      queuedMsSum += wait;
      if (wait > 0) queued += 1;
    }
    const requested = schedule.durationMs[i];
    const f = schedule.fn[i];
    const instance = slot.instance;
    const sentAt = clock.now();
    const event = cpu
      ? { cpuMs: cpu.demandMs(f, requested), durationMs: runMs ? runMs(f, requested) : 0 }
      : { durationMs: runMs ? runMs(f, requested) : requested };
    instance.invokeThen(
      `i${i}`,
      event,
      () => finished(i, instance, sentAt),
      (err) => failed(i, instance, err),
    );
  };
  const coldMarker =
    (i: number): (() => void) =>
    () =>
      (data.start[i] = COLD);
  const run = (i: number): void => {
    outstanding += 1;
    const receivedAt = clock.now();
    let got: Slot | Promise<Slot>;
    try {
      got = pool.acquireNow(entries[schedule.fn[i]], coldMarker(i));
    } catch (err) {
      failed(i, undefined, err);
      return;
    }
    if (got instanceof Promise)
      got.then(
        (slot) => dispatch(i, receivedAt, slot),
        (err: unknown) => failed(i, undefined, err),
      );
    else dispatch(i, receivedAt, got);
  };

  const resolution = options.resolutionMs ?? 1;
  let i = 0;
  const every = Math.max(1, Math.floor(n / 100));
  for (;;) {
    const nextArrival = i < n ? schedule.atMs[i] : Infinity;
    const nextTimer = clock.nextDue() ?? Infinity;
    const next = Math.min(nextArrival, nextTimer);
    if (i >= n && outstanding === 0 && !(next <= windowEnd)) break;
    if (next === Infinity) break;
    const stepEnd = next + resolution;
    while (i < n && schedule.atMs[i] <= stepEnd) {
      clock.advanceTo(schedule.atMs[i]);
      run(i);
      i += 1;
      if (i % every === 0) options.onProgress?.(policyName, i, n);
    }
    clock.advanceTo(stepEnd);
    // Lets every promise continuation of this step run before time moves on.
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  clock.advanceTo(Math.max(clock.now(), windowEnd));
  meter.closeAll();
  const prewarm = pool.prewarmStats();
  pool.rejectAll(new PetriError('NodeRestarted', 'the simulation ended'));
  let stopped = false;
  const stops = Promise.allSettled(pool.allInstances().map((instance) => instance.stop())).then(
    () => (stopped = true),
  );
  // Stops take simulated time (the driver's stopMs): run the clock until they are done.
  while (!stopped) {
    const due = clock.nextDue();
    if (due !== undefined) clock.advanceTo(due);
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  await stops;

  const wallSeconds = (performance.now() - wallStart) / 1000;
  const used = process.cpuUsage(cpuStart);
  const cpuSeconds = (used.user + used.system) / 1e6;
  const stats = coldStartStats(
    trace.functions.length,
    schedule.fn,
    coldOf(data),
    (k) => schedule.warmup[k] === 0,
  );
  const figures = policyFigures(policyName, 'sim', data, {
    idleMemoryGbS: ((idleAtEnd ?? pool.idleMemoryMbMs()) - idleAtStart) / 1024 / 1000,
    cpuSeconds: null,
  });
  const span = windowEnd - windowStart;
  return {
    policy: policyName,
    invocations: stats.invocations,
    coldStarts: stats.coldStarts,
    coldStartRatio: stats.coldStartRatio,
    wastedMemoryGbS: figures.idleMemoryGbS ?? 0,
    slowdown: figures.slowdown,
    meanInstances: span > 0 ? meter.liveMs / span : 0,
    queued,
    meanQueuedMs: served > 0 ? queuedMsSum / served : 0,
    failed: Object.values(failures).reduce((a, b) => a + b, 0),
    failures,
    prewarmStarted: prewarm.started,
    prewarmHits: prewarm.hits,
    perFunction: names.map((name, f) => {
      const invocations = stats.perFunction.invocations[f];
      const coldStarts = stats.perFunction.coldStarts[f];
      return {
        name,
        invocations,
        coldStarts,
        coldStartRatio: invocations ? coldStarts / invocations : 0,
      };
    }),
    wallSeconds,
    cpuSeconds,
    figures,
    data,
  };
}

const COLD = START_PATHS.indexOf('cold');
const WARM = START_PATHS.indexOf('warm');

/** The schedule as a load run's records, before any invocation ran. */
function scheduleRunData(
  trace: Trace,
  schedule: Schedule,
  policy: KeepAlivePolicyName,
  options: SimOptions,
): RunData {
  const n = schedule.atMs.length;
  const measured = schedule.warmup.reduce((sum, w) => sum + (w ? 0 : 1), 0);
  const data = emptyRunData(
    {
      label: `sim ${policy}`,
      target: 'petri sim',
      trace: '',
      functions: trace.functions.length,
      functionNames: trace.functions.map(syntheticFunctionName),
      minutes: schedule.minutes,
      warmupMinutes: schedule.warmupMinutes,
      minuteMs: schedule.minuteMs,
      iat: options.iat ?? 'exponential',
      seed: options.seed,
      startedAt: new Date(0).toISOString(),
      wallSeconds: 0,
      scheduled: n,
      offeredRate: measured / ((schedule.minutes * schedule.minuteMs) / 1000),
      nodeCpuUtilisation: null,
      itersPerMs: null,
      cores: 0,
      connections: null,
      delayedByConnections: 0,
      maxQueuedForConnection: 0,
      drainEndMs: null,
      timerLatenessMs: null,
      clientCpuCores: null,
      dispatchLatenessP99Ms: null,
      hostCpuUtilisation: null,
      keepAlivePolicy: policy,
      idleMemoryGbS: null,
      nodeCpuSeconds: null,
    },
    n,
  );
  data.fn.set(schedule.fn);
  data.warmup.set(schedule.warmup);
  data.scheduledMs.set(schedule.atMs);
  // Sent at once: the simulator has no client between schedule and node.
  data.sentMs.set(schedule.atMs);
  data.requestedDurationMs.set(schedule.durationMs);
  data.requestedMemoryMb.set(schedule.memoryMb);
  return data;
}

/**
 * Integrates live instances (starting, idle, paused or busy; not stopping)
 * over time, inside the measured window: a count and the time it last
 * changed, so a state change costs no allocation.
 */
class InstanceMeter {
  liveMs = 0;
  private live = 0;
  private since: number;

  constructor(
    private readonly clock: ManualClock,
    private readonly from: number,
    private readonly to: number,
  ) {
    this.since = clock.now();
  }

  /** `from` is absent for an instance's first state (starting). */
  change(state: InstanceState, from: InstanceState | undefined): void {
    const was = from !== undefined && isLive(from);
    const is = isLive(state);
    if (was === is) return;
    this.accrue();
    this.live += is ? 1 : -1;
  }

  closeAll(): void {
    this.accrue();
    this.live = 0;
  }

  private accrue(): void {
    const now = this.clock.now();
    const ms = Math.min(now, this.to) - Math.max(this.since, this.from);
    if (ms > 0) this.liveMs += this.live * ms;
    this.since = now;
  }
}

function isLive(state: InstanceState): boolean {
  return state !== 'stopping' && state !== 'dead';
}

function functionRecord(name: string, fn: Trace['functions'][number]): FunctionRecord {
  const { memoryMb, timeoutMs } = syntheticLimits(fn);
  return {
    name,
    version: 1,
    spec: parseSpec({ name, runtime: 'node', handler: 'index.handler', memoryMb, timeoutMs }),
    codeDir: '/nonexistent',
    createdAt: 0,
    updatedAt: 0,
  };
}

function sandboxSpec(record: FunctionRecord, seq: number): SandboxSpec {
  return {
    instanceId: `${record.name}-${record.version}-${seq.toString(36)}`,
    functionName: record.name,
    version: record.version,
    codeDir: record.codeDir,
    cwd: record.codeDir,
    entry: { runtime: 'node', bundle: '/nonexistent/bundle.mjs', exportName: 'handler' },
    env: {},
    resources: {
      cpu: 0,
      initCpu: 0,
      memoryMb: record.spec.memoryMb,
      bandwidthMbit: 0,
      burstBytes: 0,
      pidsMax: 0,
      tmpSizeMb: 0,
    },
    network: record.spec.network,
  };
}
