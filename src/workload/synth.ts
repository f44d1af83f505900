import { scaleMemory } from './azure2019.ts';
import type { Rng } from './rng.ts';
import type { DurationStats, MemoryStats, Trace, TraceFunction } from './trace.ts';

/**
 * A synthetic trace in the Azure 2019 shape, for when the real one cannot be
 * downloaded. Every distribution is taken from the published characterisation
 * of that trace (Shahrad et al., "Serverless in the Wild", USENIX ATC'20);
 * docs/workload.md lists them with the figure each comes from.
 */
export interface SynthOptions {
  functions: number;
  minutes: number;
  /** Minute of the day the window starts at; the diurnal cycle peaks at 14:00. */
  startMinuteOfDay?: number;
}

/** Functions per trigger type, in percent (Shahrad et al., Fig. 2(a)). */
export const TRIGGER_MIX: readonly [string, number][] = [
  ['http', 55.0],
  ['queue', 15.2],
  ['timer', 15.6],
  ['orchestration', 6.9],
  ['storage', 2.8],
  ['event', 2.2],
  ['others', 2.2],
];

/**
 * log10 of a function's mean invocations per minute ~ Normal(μ, σ): chosen so
 * that 45 % of functions are invoked at most once an hour and 81 % at most once
 * a minute on average (Fig. 5(a)), which spreads rates over 8 orders of magnitude.
 */
export const RATE_LOG10 = { mu: -1.555, sigma: 1.772, min: -3.2, max: 3.7 };

/** ln(average execution time in s) ~ Normal(−0.38, 2.36): the paper's log-normal fit (Fig. 7). */
export const DURATION_LN_SECONDS = { mu: -0.38, sigma: 2.36, minMs: 1, maxMs: 600_000 };

/** App memory (MB) ~ Burr XII(c = 11.652, k = 0.221, λ = 107.083): the paper's fit (Fig. 8). */
export const MEMORY_BURR = { c: 11.652, k: 0.221, lambda: 107.083, minMb: 64, maxMb: 1024 };

/** Functions per app: 54 % of apps have one function, 95 % at most ten (Fig. 1). */
export const FUNCTIONS_PER_APP = { single: 0.54, geometricP: 0.217, max: 50 };

/** Timer periods (s) and their weights: timers fire on fixed schedules, mostly each few minutes. */
const TIMER_PERIODS_S: readonly [number, number][] = [
  [10, 1],
  [30, 1],
  [60, 4],
  [300, 4],
  [600, 2],
  [900, 1],
  [1800, 1],
  [3600, 2],
];

/** Peak-to-trough ratio of the diurnal cycle is about 2 (Fig. 4); amplitude per function 0.1–0.5. */
const DIURNAL = { peakMinute: 14 * 60, minAmplitude: 0.1, maxAmplitude: 0.5 };

const Z = { p0: -3.09, p1: -2.326, p5: -1.645, p25: -0.674, p75: 0.674, p95: 1.645, p99: 2.326 };

export function synthesize(options: SynthOptions, rng: Rng): Trace {
  const startMinute = options.startMinuteOfDay ?? 0;
  const functions: TraceFunction[] = [];
  let owner = hash(rng);
  while (functions.length < options.functions) {
    if (rng.next() < 0.6) owner = hash(rng);
    const app = hash(rng);
    const size = Math.min(functionsInApp(rng), options.functions - functions.length);
    const memory = appMemory(rng);
    for (let i = 0; i < size; i++) {
      const trigger = TRIGGER_MIX[rng.weighted(TRIGGER_MIX.map(([, w]) => w))][0];
      const counts =
        trigger === 'timer'
          ? timerCounts(rng, options.minutes)
          : poissonCounts(rng, options.minutes, startMinute);
      ensureActive(rng, counts);
      functions.push({
        owner,
        app,
        func: hash(rng),
        trigger,
        counts,
        duration: durationStats(rng, counts),
        memory: scaleMemory(memory, 1 / size),
      });
    }
  }
  return { minutes: options.minutes, functions };
}

function functionsInApp(rng: Rng): number {
  if (rng.next() < FUNCTIONS_PER_APP.single) return 1;
  let k = 2;
  while (rng.next() > FUNCTIONS_PER_APP.geometricP && k < FUNCTIONS_PER_APP.max) k++;
  return k;
}

function poissonCounts(rng: Rng, minutes: number, startMinute: number): Uint32Array {
  const log10Rate = clamp(
    rng.normal(RATE_LOG10.mu, RATE_LOG10.sigma),
    RATE_LOG10.min,
    RATE_LOG10.max,
  );
  const rate = 10 ** log10Rate;
  const amplitude = rng.uniform(DIURNAL.minAmplitude, DIURNAL.maxAmplitude);
  const phase = rng.normal(0, 30);
  // Burstiness: a mean-preserving log-normal multiplier per minute, stronger for some functions.
  const burst = rng.uniform(0, 1);
  const counts = new Uint32Array(minutes);
  for (let m = 0; m < minutes; m++) {
    const minuteOfDay = startMinute + m + phase;
    const diurnal =
      1 + amplitude * Math.cos((2 * Math.PI * (minuteOfDay - DIURNAL.peakMinute)) / 1440);
    const multiplier = Math.exp(burst * rng.normal() - (burst * burst) / 2);
    counts[m] = rng.poisson(rate * diurnal * multiplier);
  }
  return counts;
}

function timerCounts(rng: Rng, minutes: number): Uint32Array {
  const periodS = TIMER_PERIODS_S[rng.weighted(TIMER_PERIODS_S.map(([, w]) => w))][0];
  const counts = new Uint32Array(minutes);
  const offsetS = rng.uniform(0, periodS);
  for (let t = offsetS; t < minutes * 60; t += periodS) counts[Math.floor(t / 60)]++;
  return counts;
}

/**
 * The trace's functions are those seen in the window (preprocessing drops the
 * rest), so a function that drew no invocation gets one at a random minute.
 */
function ensureActive(rng: Rng, counts: Uint32Array): void {
  for (const c of counts) if (c > 0) return;
  counts[rng.int(counts.length)] = 1;
}

function durationStats(rng: Rng, counts: Uint32Array): DurationStats {
  const averageMs = clamp(
    1000 * rng.logNormal(DURATION_LN_SECONDS.mu, DURATION_LN_SECONDS.sigma),
    DURATION_LN_SECONDS.minMs,
    DURATION_LN_SECONDS.maxMs,
  );
  // Spread within one function: the trace's percentiles are of 30-s averages, so modest.
  const spread = rng.uniform(0.1, 1.0);
  const median = averageMs / Math.exp((spread * spread) / 2);
  const at = (z: number): number => round3(Math.max(0.001, median * Math.exp(spread * z)));
  let count = 0;
  for (const c of counts) count += c;
  return {
    average: round3(averageMs),
    count,
    minimum: at(Z.p0),
    maximum: at(-Z.p0),
    p0: at(Z.p0),
    p1: at(Z.p1),
    p25: at(Z.p25),
    p50: at(0),
    p75: at(Z.p75),
    p99: at(Z.p99),
    p100: at(-Z.p0),
  };
}

function appMemory(rng: Rng): MemoryStats {
  const { c, k, lambda, minMb, maxMb } = MEMORY_BURR;
  const u = rng.next();
  const average = clamp(lambda * ((1 - u) ** (-1 / k) - 1) ** (1 / c), minMb, maxMb);
  // An app's allocated memory moves little over a day: a small multiplicative spread.
  const spread = rng.uniform(0.02, 0.2);
  const at = (z: number): number => round3(average * Math.exp(spread * z));
  return {
    sampleCount: 1 + rng.int(1440),
    average: round3(average),
    p1: at(Z.p1),
    p5: at(Z.p5),
    p25: at(Z.p25),
    p50: at(0),
    p75: at(Z.p75),
    p95: at(Z.p95),
    p99: at(Z.p99),
    p100: at(-Z.p0),
  };
}

/** 64 hex digits, like the trace's anonymised hashes. */
function hash(rng: Rng): string {
  let out = '';
  for (let i = 0; i < 8; i++) out += rng.nextUint32().toString(16).padStart(8, '0');
  return out;
}

function clamp(value: number, low: number, high: number): number {
  return Math.min(high, Math.max(low, value));
}

function round3(value: number): number {
  return Math.round(value * 1000) / 1000;
}
