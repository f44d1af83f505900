import { median } from 'simple-statistics';
import { PetriError } from '../errors.ts';
import { Rng } from './rng.ts';
import type { Trace } from './trace.ts';
import { ReferenceDistribution } from './wasserstein.ts';

/**
 * In-Vitro's sampler. A candidate subset of functions is scored, minute by
 * minute, by the Wasserstein distance between its per-function values and the
 * whole trace's — invocation counts (invocation WD) and count × average
 * duration × memory (resource WD) — and the score is the mean over minutes of
 * the average of both. Both values are divided by the whole trace's
 * per-function mean in that minute, so the two WDs are unit-free and weigh
 * the same in the score (a WD of 0.5 = half the mean function's load).
 */
/**
 * `log` compares log(1 + value): per-function load in the Azure trace spans
 * eight orders of magnitude, and on a linear scale W1 only measures whether a
 * summary happened to catch one of the few hottest functions (a summary of
 * 10 can't represent the top 0.1 %). `linear` is the plain definition.
 */
export type WdScale = 'log' | 'linear';

export interface SamplerOptions {
  scale?: WdScale;
  minSize: number;
  maxSize: number;
  step: number;
  trials: number;
  seed: number;
  /** Also score plain random sampling (the median of `baselineRuns` draws per size). */
  baseline: boolean;
  baselineRuns?: number;
  onProgress?: (done: number, total: number) => void;
}

export interface WdScore {
  invocationWd: number;
  resourceWd: number;
  score: number;
}

export interface SampleResult extends WdScore {
  size: number;
  /** Indices into the trace's functions, ascending. */
  functions: Int32Array;
  invocations: number;
  random?: WdScore;
}

/** Per-minute reference distributions of both metrics, built once per trace. */
export class TraceScorer {
  readonly minutes: number;
  private readonly invocation: ReferenceDistribution[];
  private readonly resource: ReferenceDistribution[];
  private readonly buffer: Int32Array;

  constructor(trace: Trace, scale: WdScale = 'log') {
    const n = trace.functions.length;
    this.minutes = trace.minutes;
    this.invocation = [];
    this.resource = [];
    const counts = new Float64Array(n);
    const resources = new Float64Array(n);
    for (let m = 0; m < trace.minutes; m++) {
      trace.functions.forEach((fn, f) => {
        counts[f] = fn.counts[m];
        resources[f] = fn.counts[m] * fn.duration.average * fn.memory.average;
      });
      this.invocation.push(new ReferenceDistribution(normalise(counts, scale)));
      this.resource.push(new ReferenceDistribution(normalise(resources, scale)));
    }
    this.buffer = new Int32Array(n);
  }

  score(subset: ArrayLike<number>): WdScore {
    let invocationSum = 0;
    let resourceSum = 0;
    for (let m = 0; m < this.minutes; m++) {
      invocationSum += this.distance(this.invocation[m], subset);
      resourceSum += this.distance(this.resource[m], subset);
    }
    const invocationWd = invocationSum / this.minutes;
    const resourceWd = resourceSum / this.minutes;
    return { invocationWd, resourceWd, score: (invocationWd + resourceWd) / 2 };
  }

  private distance(reference: ReferenceDistribution, subset: ArrayLike<number>): number {
    const k = subset.length;
    const ranks = this.buffer.subarray(0, k);
    for (let i = 0; i < k; i++) ranks[i] = reference.rank[subset[i]];
    ranks.sort();
    return reference.distanceFromSubset(ranks, k);
  }
}

/** Sizes from largest to smallest: each summary is drawn from the one before it. */
export function sampleSizes(minSize: number, maxSize: number, step: number): number[] {
  const sizes: number[] = [];
  for (let size = minSize; size <= maxSize; size += step) sizes.push(size);
  return sizes.reverse();
}

export function sampleTrace(trace: Trace, options: SamplerOptions): SampleResult[] {
  const n = trace.functions.length;
  validate(options, n);
  const sizes = sampleSizes(options.minSize, options.maxSize, options.step);
  const runs = options.baseline ? (options.baselineRuns ?? 5) : 0;
  const total = sizes.length * (options.trials + runs);
  let done = 0;
  const progress = (): void => options.onProgress?.(++done, total);

  const scorer = new TraceScorer(trace, options.scale ?? 'log');
  const rng = new Rng(options.seed);
  const all = Int32Array.from({ length: n }, (_, i) => i);
  const results: SampleResult[] = [];
  let pool: Int32Array = all;
  for (const size of sizes) {
    let best: { subset: Int32Array; score: WdScore } | undefined;
    for (let t = 0; t < options.trials; t++) {
      const subset = rng.sample(pool, size);
      const score = scorer.score(subset);
      if (!best || score.score < best.score.score) best = { subset, score };
      progress();
    }
    const chosen = best as { subset: Int32Array; score: WdScore };
    const functions = chosen.subset.slice().sort();
    results.push({
      size,
      functions,
      invocations: invocationsOf(trace, functions),
      ...chosen.score,
    });
    pool = functions;
  }

  for (const result of results) {
    if (runs === 0) break;
    const draws: WdScore[] = [];
    for (let r = 0; r < runs; r++) {
      draws.push(
        scorer.score(new Rng(options.seed).fork('random', r, result.size).sample(all, result.size)),
      );
      progress();
    }
    result.random = {
      invocationWd: median(draws.map((d) => d.invocationWd)),
      resourceWd: median(draws.map((d) => d.resourceWd)),
      score: median(draws.map((d) => d.score)),
    };
  }
  return results.reverse();
}

/**
 * Puts one minute's values on the chosen scale, then divides by the mean so
 * the whole trace's values average 1 (all-zero minutes stay 0).
 */
function normalise(raw: Float64Array, scale: WdScale): Float64Array {
  const values = scale === 'log' ? raw.map((v) => Math.log1p(v)) : raw;
  let sum = 0;
  for (const v of values) sum += v;
  const mean = sum / values.length;
  return mean > 0 ? values.map((v) => v / mean) : new Float64Array(values.length);
}

function invocationsOf(trace: Trace, functions: Int32Array): number {
  let total = 0;
  for (const f of functions) for (const c of trace.functions[f].counts) total += c;
  return total;
}

function validate(options: SamplerOptions, n: number): void {
  const { minSize, maxSize, step, trials } = options;
  if (!(minSize >= 1 && maxSize >= minSize && step >= 1 && trials >= 1))
    throw new PetriError(
      'InvalidRequest',
      `need 1 ≤ min ≤ max, step ≥ 1 and trials ≥ 1 (got min ${minSize}, max ${maxSize}, step ${step}, trials ${trials})`,
    );
  if (maxSize > n)
    throw new PetriError(
      'InvalidRequest',
      `--max ${maxSize} is more than the trace's ${n} functions`,
    );
}
