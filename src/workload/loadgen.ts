import os from 'node:os';
import { CpuMonitor } from './cpu.ts';
import { type Clock, ConnectionGate, dispatch, realClock } from './dispatcher.ts';
import { preciseClock } from './precise-clock.ts';
import { type RunData, emptyRunData, writeRun } from './results.ts';
import { type ScheduleOptions, buildSchedule } from './schedule.ts';
import { type LoadTarget, START_PATHS } from './targets.ts';
import { type Trace, syntheticFunctionName } from './trace.ts';

export interface LoadOptions extends ScheduleOptions {
  target: LoadTarget;
  /** Where results go (run.json, invocations.csv, results.db); none when omitted. */
  out?: string;
  /** Describes the trace in the results (its directory). */
  traceLabel?: string;
  label?: string;
  /** How long to wait for responses after the last send before counting them as lost. */
  drainTimeoutMs?: number;
  /** The dispatcher's clock; absent: `preciseClock` (sub-ms wake-ups, a worker thread). */
  clock?: Clock;
  /** Least ms between the dispatcher's wake-ups (default 1): lateness traded for CPU. */
  quantumMs?: number;
  onPhase?: (phase: 'prepare' | 'run' | 'drain' | 'write') => void;
  onProgress?: (sent: number, total: number) => void;
}

/** Least ms between the dispatcher's wake-ups: at most 1,000 a second, as libuv's timers. */
const DEFAULT_QUANTUM_MS = 1;

/**
 * Runs a trace against a target: computes the schedule first, prepares the
 * target (Petri: deploy and calibrate), dispatches open loop, waits for the
 * stragglers, and writes every invocation's record.
 */
export async function runLoad(trace: Trace, options: LoadOptions): Promise<RunData> {
  const schedule = buildSchedule(trace, options);
  const n = schedule.atMs.length;
  options.onPhase?.('prepare');
  await options.target.prepare(trace);

  const measuredMinutes = schedule.minutes;
  let measured = 0;
  for (let i = 0; i < n; i++) measured += schedule.warmup[i] ? 0 : 1;
  const meta = {
    label: options.label ?? 'load',
    target: options.target.description,
    trace: options.traceLabel ?? '',
    functions: trace.functions.length,
    functionNames: trace.functions.map(syntheticFunctionName),
    minutes: schedule.minutes,
    warmupMinutes: schedule.warmupMinutes,
    minuteMs: schedule.minuteMs,
    iat: options.iat,
    seed: options.seed,
    startedAt: new Date().toISOString(),
    wallSeconds: 0,
    scheduled: n,
    offeredRate: measured / ((measuredMinutes * schedule.minuteMs) / 1000),
    nodeCpuUtilisation: null as number | null,
    itersPerMs: 'itersPerMs' in options.target ? Number(options.target.itersPerMs) || null : null,
    cores: os.availableParallelism(),
    connections: options.target.connections,
    delayedByConnections: 0,
    maxQueuedForConnection: 0,
    drainEndMs: null as number | null,
    timerLatenessMs: null as number | null,
    clientCpuCores: null as number | null,
    dispatchLatenessP99Ms: null as number | null,
    hostCpuUtilisation: null as number | null,
    keepAlivePolicy: options.target.keepAlivePolicy ?? null,
    idleMemoryGbS: null as number | null,
    nodeCpuSeconds: null as number | null,
  };
  const data = emptyRunData(meta, n);
  data.fn.set(schedule.fn);
  data.warmup.set(schedule.warmup);
  data.scheduledMs.set(schedule.atMs);
  data.requestedDurationMs.set(schedule.durationMs);
  data.requestedMemoryMb.set(schedule.memoryMb);

  const cpu = new CpuMonitor();
  const precise = options.clock === undefined ? preciseClock() : undefined;
  let outstanding = 0;
  let drained: (() => void) | undefined;
  let startedAt = 0;
  const clock: Clock = precise ?? options.clock ?? realClock;
  const now = (): number => clock.now();
  /** The clock as of the last read (one per dispatcher tick or response), ms after the start. */
  let lastMs = 0;
  // One outcome sink for every invocation: the results go straight into the typed arrays.
  const record = (
    i: number,
    status: number,
    errorCode: string,
    start: number,
    actualDurationMs: number,
  ): void => {
    lastMs = now() - startedAt;
    data.doneMs[i] = lastMs;
    data.status[i] = status;
    data.errorCode[i] = errorCode;
    data.start[i] = start;
    data.actualDurationMs[i] = actualDurationMs;
    gate.release();
    if (--outstanding === 0) drained?.();
  };
  const target = options.target;
  const sender = target.sender?.(record);
  const fn = schedule.fn;
  const durationMs = schedule.durationMs;
  const memoryMb = schedule.memoryMb;
  // A request leaves when a connection is free; its sent time is when it left: the
  // dispatcher's tick when one was free, the response that freed one otherwise.
  const gate = new ConnectionGate(target.connections, (i) => {
    data.sentMs[i] = lastMs;
    if (sender) sender(fn[i], durationMs[i], memoryMb[i], i);
    else
      void target
        .invoke({ fn: fn[i], durationMs: durationMs[i], memoryMb: memoryMb[i] })
        .then((o) =>
          record(
            i,
            o.status,
            o.errorCode,
            Math.max(0, START_PATHS.indexOf(o.start)),
            o.actualDurationMs,
          ),
        );
  });
  const send = (i: number, atMs: number): void => {
    lastMs = atMs;
    outstanding++;
    gate.submit(i);
  };

  options.onPhase?.('run');
  cpu.start();
  const nodeCpuBefore = await options.target.nodeCpu?.().catch(() => undefined);
  const wallStart = performance.now();
  const clientCpu = process.cpuUsage();
  startedAt = now();
  const idleMemory = readAtWindowEdges(options.target, schedule);
  const { timerLatenessMs, sentMs: dispatchedMs } = await dispatch(schedule.atMs, send, {
    clock,
    quantumMs: options.quantumMs ?? DEFAULT_QUANTUM_MS,
    onProgress: (sent) => options.onProgress?.(sent, n),
  }).finally(() => precise?.close());
  meta.timerLatenessMs = timerLatenessMs;
  // The dispatcher's own lateness (when it handed each measured request over), before any connection wait.
  meta.dispatchLatenessP99Ms = p99(
    dispatchedMs.map((t, i) => t - schedule.atMs[i]).filter((_, i) => !schedule.warmup[i]),
  );
  // The load client's own CPU while dispatching, in cores (user + system ÷ wall).
  const used = process.cpuUsage(clientCpu);
  meta.clientCpuCores =
    (used.user + used.system) / 1000 / Math.max(1, performance.now() - wallStart);
  options.onPhase?.('drain');
  if (outstanding > 0)
    await new Promise<void>((resolve) => {
      drained = resolve;
      setTimeout(resolve, options.drainTimeoutMs ?? maxDrainMs(schedule.durationMs)).unref();
    });
  meta.drainEndMs = now() - startedAt;
  meta.delayedByConnections = gate.delayed;
  meta.maxQueuedForConnection = gate.maxWaiting;
  meta.hostCpuUtilisation = cpu.stop();
  const nodeCpuAfter = await options.target.nodeCpu?.().catch(() => undefined);
  meta.nodeCpuUtilisation =
    nodeCpuBefore && nodeCpuAfter
      ? (nodeCpuAfter.ms - nodeCpuBefore.ms) /
        ((performance.now() - wallStart) * nodeCpuAfter.cores)
      : null;
  meta.nodeCpuSeconds =
    nodeCpuBefore && nodeCpuAfter ? (nodeCpuAfter.ms - nodeCpuBefore.ms) / 1000 : null;
  meta.idleMemoryGbS = await idleMemory;
  meta.wallSeconds = (performance.now() - wallStart) / 1000;
  await options.target.close();
  if (options.out) {
    options.onPhase?.('write');
    await writeRun(options.out, data);
  }
  return data;
}

/**
 * The node's idle memory-time over the measured window (GB·s): its own
 * count read when the warm-up ends and when the measured minutes end, as
 * the simulator reads the same count on its clock. Null if it does not tell.
 */
async function readAtWindowEdges(
  target: LoadTarget,
  schedule: { warmupMinutes: number; minutes: number; minuteMs: number },
): Promise<number | null> {
  const read = target.nodeIdleMemoryMbMs?.bind(target);
  if (!read) return null;
  const at = (ms: number): Promise<number | undefined> =>
    new Promise((resolve) => setTimeout(resolve, ms)).then(() => read().catch(() => undefined));
  const start = schedule.warmupMinutes * schedule.minuteMs;
  const [from, to] = await Promise.all([
    at(start),
    at(start + schedule.minutes * schedule.minuteMs),
  ]);
  return from !== undefined && to !== undefined ? (to - from) / 1024 / 1000 : null;
}

/** Waits long enough for the longest requested invocation, plus slack for queueing. */
function maxDrainMs(durations: Float64Array): number {
  let longest = 0;
  for (const d of durations) longest = Math.max(longest, d);
  return Math.min(16 * 60_000, longest * 3 + 30_000);
}

function p99(values: Float64Array): number | null {
  if (values.length === 0) return null;
  const sorted = values.slice().sort();
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.99))];
}
