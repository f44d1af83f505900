import { median } from 'simple-statistics';
import { PetriError } from '../errors.ts';
import { Rng } from './rng.ts';
import type { Trace } from './trace.ts';
import { searchSteps, searchSummaries } from './search.ts';
import { ReferenceDistribution } from './wasserstein.ts';

/**
 * In-Vitro's sampler. A candidate subset of functions is scored, minute by
 * minute, by the Wasserstein distance between its per-function values and the
 * whole trace's — invocation counts (invocation WD) and count × average
 * duration (ms) × memory (MB) (resource WD) — and the score is the mean over
 * minutes of the average of both.
 */
/**
 * `linear` (default) is the paper's metric, as the reference implementation
 * computes it: raw per-minute counts, and resources divided by 10⁶ (the
 * reference's RES_NORM_FACTOR, so both series have similar magnitudes).
 * `log` compares log(1 + value), each minute divided by its mean: it weighs
 * the shape of the whole distribution rather than the few hottest functions,
 * but it is NOT the paper's metric and its figures do not compare with it.
 */
export type WdScale = 'log' | 'linear';

/** The reference implementation's resource normalisation (count × ms × MB ÷ 10⁶). */
export const RESOURCE_NORMALISATION = 1e6;

/** How summaries are chosen: In-Vitro's best-of-trials, or a local search of the score. */
export type SampleMethod = 'invitro' | 'search';

/** How each scale is named wherever a WD is reported. */
export function scaleLabel(scale: WdScale): string {
  return scale === 'linear' ? "linear (the paper's metric)" : "log (not the paper's metric)";
}

export interface SamplerOptions {
  scale?: WdScale;
  method?: SampleMethod;
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
  /** Invocations ÷ the proportional load (whole trace's × size ÷ functions). */
  loadShare: number;
  random?: WdScore;
}

/** Per-minute reference distributions of both metrics, built once per trace. */
export class TraceScorer {
  readonly minutes: number;
  private readonly invocation: ReferenceDistribution[];
  private readonly resource: ReferenceDistribution[];
  private readonly buffer: Int32Array;

  constructor(trace: Trace, scale: WdScale = 'linear') {
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
      this.invocation.push(new ReferenceDistribution(onScale(counts, scale, 1)));
      this.resource.push(
        new ReferenceDistribution(onScale(resources, scale, RESOURCE_NORMALISATION)),
      );
    }
    this.buffer = new Int32Array(n);
  }

  /** Every minute's invocation and resource distributions: a score is their mean WD. */
  references(): {
    invocation: readonly ReferenceDistribution[];
    resource: readonly ReferenceDistribution[];
  } {
    return { invocation: this.invocation, resource: this.resource };
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

  /**
   * A lower bound on any summary's score at `size`: per minute and metric,
   * W1 from k equally weighted points is smallest with the i-th point at the
   * cell median, the whole trace's quantile (i + ½)/k; no subset of functions
   * can score below the mean of those optima.
   */
  floor(size: number): number {
    const ranks = new Int32Array(size);
    const optimum = (reference: ReferenceDistribution): number => {
      const n = reference.sorted.length;
      for (let i = 0; i < size; i++) ranks[i] = Math.min(n - 1, Math.floor(((i + 0.5) / size) * n));
      return reference.distanceFromSubset(ranks, size);
    };
    const mean = (refs: ReferenceDistribution[]): number =>
      refs.reduce((sum, r) => sum + optimum(r), 0) / refs.length;
    return (mean(this.invocation) + mean(this.resource)) / 2;
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
  const steps = options.method === 'search' ? searchSteps(sizes.length) : 0;
  const total = sizes.length * (options.trials + runs) + steps;
  let done = 0;
  const progress = (): void => options.onProgress?.(++done, total);

  const scorer = new TraceScorer(trace, options.scale ?? 'linear');
  const rng = new Rng(options.seed);
  const all = Int32Array.from({ length: n }, (_, i) => i);
  const proportional = proportionalLoad(trace);
  const invitro = bestOfTrials(scorer, all, sizes, options.trials, rng, progress);
  const chosen =
    options.method === 'search' ? searched(scorer, n, invitro, rng, progress) : invitro;
  const results = chosen.map(({ size, functions, score }) =>
    summary(trace, size, functions, score, proportional),
  );
  addRandomBaseline(scorer, all, results, runs, options.seed, progress);
  return results.reverse();
}

interface Chosen {
  size: number;
  functions: Int32Array;
  score: WdScore;
}

/**
 * In-Vitro's roll-down: the largest summary is the best of `trials` uniform
 * draws from the whole trace, each smaller one the best of `trials` draws
 * from the previous best. Sizes arrive largest first.
 */
function bestOfTrials(
  scorer: TraceScorer,
  all: Int32Array,
  sizes: number[],
  trials: number,
  rng: Rng,
  progress: () => void,
): Chosen[] {
  const results: Chosen[] = [];
  let pool: Int32Array = all;
  for (const size of sizes) {
    let best: { subset: Int32Array; score: WdScore } | undefined;
    for (let t = 0; t < trials; t++) {
      const subset = rng.sample(pool, size);
      const score = scorer.score(subset);
      if (!best || score.score < best.score.score) best = { subset, score };
      progress();
    }
    const chosen = best as { subset: Int32Array; score: WdScore };
    const functions = chosen.subset.slice().sort();
    results.push({ size, functions, score: chosen.score });
    pool = functions;
  }
  return results;
}

/**
 * The `search` method: `searchSummaries` from In-Vitro's summaries (given
 * largest first), which keeps each size's where it cannot beat it. Sizes it
 * kept are not scored again.
 */
function searched(
  scorer: TraceScorer,
  functions: number,
  invitro: Chosen[],
  rng: Rng,
  progress: () => void,
): Chosen[] {
  const start = invitro.map((c) => c.functions).reverse();
  const improved = searchSummaries(scorer.references(), functions, start, {
    rng,
    onStep: progress,
  });
  return improved.reverse().map((members, i) => {
    const unchanged = sameMembers(members, invitro[i].functions);
    return {
      size: invitro[i].size,
      functions: members,
      score: unchanged ? invitro[i].score : scorer.score(members),
    };
  });
}

function sameMembers(a: Int32Array, b: Int32Array): boolean {
  return a.length === b.length && a.every((f, i) => f === b[i]);
}

function summary(
  trace: Trace,
  size: number,
  functions: Int32Array,
  score: WdScore,
  proportionalPerFunction: number,
): SampleResult {
  const invocations = invocationsOf(trace, functions);
  return {
    size,
    functions,
    invocations,
    loadShare: invocations / (proportionalPerFunction * size),
    ...score,
  };
}

/** The whole trace's invocations per function: × size gives a summary's proportional load. */
function proportionalLoad(trace: Trace): number {
  const all = Int32Array.from({ length: trace.functions.length }, (_, i) => i);
  return invocationsOf(trace, all) / trace.functions.length;
}

/** Plain random sampling's score per size: the median of `runs` fresh draws from the whole trace. */
function addRandomBaseline(
  scorer: TraceScorer,
  all: Int32Array,
  results: SampleResult[],
  runs: number,
  seed: number,
  progress: () => void,
): void {
  for (const result of results) {
    if (runs === 0) break;
    const draws: WdScore[] = [];
    for (let r = 0; r < runs; r++) {
      draws.push(
        scorer.score(new Rng(seed).fork('random', r, result.size).sample(all, result.size)),
      );
      progress();
    }
    result.random = {
      invocationWd: median(draws.map((d) => d.invocationWd)),
      resourceWd: median(draws.map((d) => d.resourceWd)),
      score: median(draws.map((d) => d.score)),
    };
  }
}

/**
 * Puts one minute's values on the chosen scale. Linear: the raw values ÷
 * `linearDivisor`, as the reference does. Log: log(1 + value) divided by the
 * minute's mean, so the whole trace's values average 1 (all-zero minutes stay 0).
 */
function onScale(raw: Float64Array, scale: WdScale, linearDivisor: number): Float64Array {
  if (scale === 'linear') return raw.map((v) => v / linearDivisor);
  const values = raw.map((v) => Math.log1p(v));
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
