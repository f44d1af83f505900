import { PetriError } from '../errors.ts';
import { Rng } from './rng.ts';
import { type Trace, drawFromBrackets, durationBrackets, memoryBrackets } from './trace.ts';

/** How gaps between a minute's invocations are drawn before being scaled to fill the minute. */
export type IatDistribution = 'exponential' | 'uniform' | 'equidistant';

export interface ScheduleOptions {
  minutes: number;
  warmupMinutes: number;
  iat: IatDistribution;
  seed: number;
  /** Length of a trace minute in ms; 60 000 except to compress time in tests and benchmarks. */
  minuteMs?: number;
}

/**
 * The whole run, computed before it starts (struct of arrays, sorted by time):
 * invocation i of function `fn[i]` is due at `atMs[i]` after the start and
 * asks for `durationMs[i]` of work touching `memoryMb[i]`.
 */
export interface Schedule {
  minuteMs: number;
  minutes: number;
  warmupMinutes: number;
  atMs: Float64Array;
  fn: Int32Array;
  durationMs: Float64Array;
  memoryMb: Float64Array;
  /** 1 for warm-up invocations, which are sent but excluded from results. */
  warmup: Uint8Array;
  /** Invocations per minute of the schedule (warm-up first). */
  perMinute: Uint32Array;
}

/**
 * Turns per-minute counts into send times. Warm-up replays the trace's first
 * `warmupMinutes`, then the measured minutes follow (wrapping around the
 * trace if it is shorter). In minute m, function f's c invocations get c + 1
 * gaps drawn from the chosen distribution and scaled so they sum to the
 * minute; the first c cumulative sums are the send times. For exponential
 * gaps that is exactly a Poisson process conditioned on c arrivals.
 */
export function buildSchedule(trace: Trace, options: ScheduleOptions): Schedule {
  const minuteMs = options.minuteMs ?? 60_000;
  const totalMinutes = options.warmupMinutes + options.minutes;
  if (trace.functions.length === 0)
    throw new PetriError('InvalidRequest', 'the trace has no functions');
  if (!(options.minutes >= 1) || !(options.warmupMinutes >= 0))
    throw new PetriError('InvalidRequest', 'need --minutes ≥ 1 and --warmup ≥ 0');

  const perMinute = new Uint32Array(totalMinutes);
  for (let m = 0; m < totalMinutes; m++)
    for (const fn of trace.functions) perMinute[m] += fn.counts[m % trace.minutes];
  const total = perMinute.reduce((a, b) => a + b, 0);

  const atMs = new Float64Array(total);
  const fnIndex = new Int32Array(total);
  const durationMs = new Float64Array(total);
  const memoryMb = new Float64Array(total);
  const warmup = new Uint8Array(total);
  const durations = trace.functions.map((fn) => durationBrackets(fn.duration));
  const memories = trace.functions.map((fn) => memoryBrackets(fn.memory));
  const gaps = new Float64Array(1024);

  let base = 0;
  for (let m = 0; m < totalMinutes; m++) {
    const rng = new Rng(options.seed).fork('minute', m);
    const start = base;
    trace.functions.forEach((fn, f) => {
      const count = fn.counts[m % trace.minutes];
      if (count === 0) return;
      const times =
        count + 1 <= gaps.length ? gaps.subarray(0, count + 1) : new Float64Array(count + 1);
      drawGaps(rng, options.iat, times);
      let sum = 0;
      for (const g of times) sum += g;
      let t = 0;
      for (let k = 0; k < count; k++) {
        t += times[k];
        const i = base++;
        atMs[i] = m * minuteMs + (t / sum) * minuteMs;
        fnIndex[i] = f;
        durationMs[i] = drawFromBrackets(durations[f], rng.next());
        memoryMb[i] = drawFromBrackets(memories[f], rng.next());
        warmup[i] = m < options.warmupMinutes ? 1 : 0;
      }
    });
    sortRange(start, base, { atMs, fn: fnIndex, durationMs, memoryMb, warmup });
  }
  return {
    minuteMs,
    minutes: options.minutes,
    warmupMinutes: options.warmupMinutes,
    atMs,
    fn: fnIndex,
    durationMs,
    memoryMb,
    warmup,
    perMinute,
  };
}

function drawGaps(rng: Rng, iat: IatDistribution, out: Float64Array): void {
  for (let k = 0; k < out.length; k++)
    out[k] = iat === 'exponential' ? rng.exponential(1) : iat === 'uniform' ? rng.next() : 1;
  // Equidistant: the c + 1 equal gaps put the c sends at minute·k/(c+1), centred in the minute.
}

/** Sorts one minute's slice of the columns by send time. */
function sortRange(
  from: number,
  to: number,
  columns: Pick<Schedule, 'atMs' | 'fn' | 'durationMs' | 'memoryMb' | 'warmup'>,
): void {
  const n = to - from;
  if (n < 2) return;
  const order = Int32Array.from({ length: n }, (_, i) => from + i).sort(
    (a, b) => columns.atMs[a] - columns.atMs[b],
  );
  for (const column of [
    columns.atMs,
    columns.fn,
    columns.durationMs,
    columns.memoryMb,
    columns.warmup,
  ]) {
    const copy = column.slice(from, to);
    for (let i = 0; i < n; i++) column[from + i] = copy[order[i] - from];
  }
}
