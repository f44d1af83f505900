/**
 * The in-memory trace every workload tool works on: one row per function with
 * its per-minute invocation counts, duration percentiles (ms) and memory
 * percentiles (MB, already this function's share of its app).
 */
export interface DurationStats {
  average: number;
  count: number;
  minimum: number;
  maximum: number;
  /** percentile_Average_0, _1, _25, _50, _75, _99, _100 of the Azure trace. */
  p0: number;
  p1: number;
  p25: number;
  p50: number;
  p75: number;
  p99: number;
  p100: number;
}

export interface MemoryStats {
  sampleCount: number;
  average: number;
  p1: number;
  p5: number;
  p25: number;
  p50: number;
  p75: number;
  p95: number;
  p99: number;
  p100: number;
}

export interface TraceFunction {
  owner: string;
  app: string;
  func: string;
  trigger: string;
  /** Invocations in each minute of the trace window. */
  counts: Uint32Array;
  duration: DurationStats;
  memory: MemoryStats;
}

export interface Trace {
  minutes: number;
  functions: TraceFunction[];
}

/** The key Azure joins functions on. */
export function functionKey(app: string, func: string): string {
  return `${app}\u0000${func}`;
}

export function totalInvocations(fn: Pick<TraceFunction, 'counts'>): number {
  let sum = 0;
  for (const c of fn.counts) sum += c;
  return sum;
}

/** Invocations of the whole trace, per minute. */
export function invocationsPerMinute(trace: Trace): Float64Array {
  const perMinute = new Float64Array(trace.minutes);
  for (const fn of trace.functions)
    for (let m = 0; m < trace.minutes; m++) perMinute[m] += fn.counts[m];
  return perMinute;
}

/** A stable, Petri-safe function name for the i-th function of a trace. */
export function syntheticFunctionName(fn: TraceFunction, index: number): string {
  const suffix = fn.func
    .replace(/[^a-z0-9]/gi, '')
    .toLowerCase()
    .slice(0, 12);
  return `synth-${index}-${suffix}`.slice(0, 63);
}

export const DURATION_PERCENTILES = [0, 1, 25, 50, 75, 99, 100] as const;
export const MEMORY_PERCENTILES = [1, 5, 25, 50, 75, 95, 99, 100] as const;

/** The duration percentile points as (quantile, ms) pairs, monotone. */
export function durationBrackets(d: DurationStats): [number, number][] {
  return monotone([
    [0, d.p0],
    [0.01, d.p1],
    [0.25, d.p25],
    [0.5, d.p50],
    [0.75, d.p75],
    [0.99, d.p99],
    [1, d.p100],
  ]);
}

/** The memory percentile points as (quantile, MB) pairs, monotone. */
export function memoryBrackets(m: MemoryStats): [number, number][] {
  return monotone([
    [0, m.p1],
    [0.01, m.p1],
    [0.05, m.p5],
    [0.25, m.p25],
    [0.5, m.p50],
    [0.75, m.p75],
    [0.95, m.p95],
    [0.99, m.p99],
    [1, m.p100],
  ]);
}

/** Real traces have rows whose percentiles are not sorted; clamp so the inverse CDF is monotone. */
function monotone(points: [number, number][]): [number, number][] {
  let floor = 0;
  return points.map(([q, v]) => {
    floor = Math.max(floor, Number.isFinite(v) ? v : 0);
    return [q, floor];
  });
}

/**
 * Inverse CDF through percentile points, linear within each bracket: how
 * In-Vitro draws an invocation's runtime and memory.
 */
export function drawFromBrackets(points: readonly [number, number][], u: number): number {
  for (let i = 1; i < points.length; i++) {
    const [q1, v1] = points[i];
    if (u <= q1) {
      const [q0, v0] = points[i - 1];
      const span = q1 - q0;
      return span <= 0 ? v1 : v0 + ((u - q0) / span) * (v1 - v0);
    }
  }
  return points[points.length - 1][1];
}
