import type { Rng } from './rng.ts';
import type { ReferenceDistribution } from './wasserstein.ts';

/**
 * The `search` sampler: In-Vitro's own nested summaries up to some size and,
 * above it, summaries grown bottom-up that score below In-Vitro's at every
 * size, so search is never worse than In-Vitro. Each grown summary is the one
 * before it plus the functions that fill the strata of a load key its
 * members leave empty (W1 between k values and the whole trace is smallest
 * with the i-th smallest at the whole's quantile (i + ½)/k), tuned by swaps
 * that lower the score directly. Where a grown summary scores above
 * In-Vitro's (or adds no invocations), growing restarts from In-Vitro's
 * summary of that size. Bottom-up, because a chain built top-down (each
 * summary the best subset of the one above) drops on the way the hot
 * functions a smaller summary needs: one that fits size 300 sits between two
 * strata at size 600, and the linear WD is dominated by the hottest
 * functions. Nesting and exact sizes hold by construction; every size adds
 * invocations, so load rises strictly with size.
 */
export interface SearchOptions {
  rng: Rng;
  /** Called `searchSteps(sizes)` times: once per size grown or tried. */
  onStep?: () => void;
}

export interface SearchReferences {
  invocation: readonly ReferenceDistribution[];
  resource: readonly ReferenceDistribution[];
}

/** A swap proposes a function at most this many places from the other in the key order. */
const NEIGHBOURHOOD = 8;
/**
 * Whole growths tried (each with its own draws), the best kept: where the
 * chain leaves In-Vitro's depends on a few swaps, so the sizes it wins vary
 * from one growth to the next.
 */
const ATTEMPTS = 2;
/** Swaps tried on each grown summary's new functions. */
const GROW_SWAPS = 400;
/** Share of those that propose a function near a top stratum's centre in one metric's order. */
const HOT_SHARE = 0.5;
/** Top strata whose centres those swaps aim at. */
const HOT_STRATA = 4;
/**
 * A changed summary must score this much (relative) below In-Vitro's: the
 * incremental distances drift by far less, so a size the search changed
 * never re-scores above In-Vitro's.
 */
const MARGIN = 1e-9;

/**
 * `start`: In-Vitro's nested summaries, smallest first, each a subset of the
 * next. Returns summaries of the same sizes, smallest first, indices ascending.
 */
export function searchSummaries(
  references: SearchReferences,
  functions: number,
  start: readonly Int32Array[],
  options: SearchOptions,
): Int32Array[] {
  const all = [...references.invocation, ...references.resource];
  const keys = new Keys(references, functions);
  const bounds = Float64Array.from(start, (s) => new Subset(all, s).score * (1 - MARGIN));
  const attempts = Array.from({ length: ATTEMPTS }, () =>
    growFromStart(all, keys, start, bounds, options),
  );
  return attempts.reduce((a, b) => (b.ratios < a.ratios ? b : a)).summaries;
}

/** How many times `searchSummaries` calls `onStep` for a chain of `sizes` sizes. */
export function searchSteps(sizes: number): number {
  return ATTEMPTS * (sizes - 1);
}

/** Orders of the functions the search draws neighbours from. */
class Keys {
  /** Ascending by the mean of a function's ranks by total invocations and by total resources. */
  readonly order: Int32Array;
  /** position[f]: f's place in `order`. */
  readonly position: Int32Array;
  /** Ascending by total invocations, and by total resources. */
  readonly byInvocations: Int32Array;
  readonly byResources: Int32Array;
  /** Each function's total on the invocation scale: positive exactly when it has invocations. */
  readonly invocations: Float64Array;

  constructor(references: SearchReferences, functions: number) {
    this.invocations = totals(references.invocation, functions);
    this.byInvocations = byKey(this.invocations);
    this.byResources = byKey(totals(references.resource, functions));
    const meanRank = new Float64Array(functions);
    this.byInvocations.forEach((f, p) => (meanRank[f] += p));
    this.byResources.forEach((f, p) => (meanRank[f] += p));
    this.order = byKey(meanRank);
    this.position = new Int32Array(functions);
    this.order.forEach((f, p) => (this.position[f] = p));
  }

  /** A function a few places from `fn` in the key order (undefined past either end). */
  near(fn: number, rng: Rng): number | undefined {
    const offset = 1 + rng.int(NEIGHBOURHOOD);
    return this.order[this.position[fn] + (rng.next() < 0.5 ? -offset : offset)];
  }

  /**
   * A function near the centre of one of the top strata of `size` in one
   * metric's order: the linear WD is dominated by the hottest functions, and
   * each metric's hottest differ, which the mixed key blurs.
   */
  hot(size: number, rng: Rng): number | undefined {
    const order = rng.next() < 0.5 ? this.byInvocations : this.byResources;
    const n = order.length;
    const centre = n - 1 - Math.floor(((rng.int(HOT_STRATA) + 0.5) * n) / size);
    return order[centre + rng.int(2 * NEIGHBOURHOOD + 1) - NEIGHBOURHOOD];
  }
}

/**
 * In-Vitro's chain up to some size, grown above it: grows from the smallest
 * summary and, wherever a grown one fails its bound, again from In-Vitro's
 * summary of that size: each size is grown (or tried) once, so this costs
 * one growth of the whole chain. Also returns the sum over sizes of each
 * one's score ÷ its bound.
 */
function growFromStart(
  all: readonly ReferenceDistribution[],
  keys: Keys,
  start: readonly Int32Array[],
  bounds: Float64Array,
  options: SearchOptions,
): { summaries: Int32Array[]; ratios: number } {
  const sizes = start.map((s) => s.length);
  for (let k = 0; k < start.length - 1;) {
    const grown = grow(all, keys, start[k], sizes.slice(k + 1), bounds.subarray(k + 1), options);
    if (grown.length === start.length - 1 - k)
      return {
        summaries: [...start.slice(0, k + 1), ...grown.map((g) => g.members)],
        // Each size's score ÷ In-Vitro's, summed (the kept ones count 1 each).
        ratios: k + 1 + grown.reduce((sum, g, i) => sum + g.score / bounds[k + 1 + i], 0),
      };
    k += 1 + grown.length;
  }
  return { summaries: [...start], ratios: start.length };
}

/**
 * Summaries of `sizes` (ascending), each the one before it (first `core`)
 * plus new functions, with their scores; stops before the first that scores
 * above its bound or adds no invocations.
 */
function grow(
  all: readonly ReferenceDistribution[],
  keys: Keys,
  core: Int32Array,
  sizes: readonly number[],
  bounds: Float64Array,
  { rng, onStep }: SearchOptions,
): { members: Int32Array; score: number }[] {
  const inside = new Uint8Array(keys.order.length);
  const members = Array.from(core);
  for (const f of members) inside[f] = 1;
  const results: { members: Int32Array; score: number }[] = [];
  for (let s = 0; s < sizes.length; s++) {
    const positions = members.map((f) => keys.position[f]).sort((a, b) => a - b);
    const fresh = emptyStrata(positions, sizes[s], keys.order.length).map((c) => {
      const f = nearestOutsider(keys.order, inside, c);
      inside[f] = 1;
      return f;
    });
    const subset = new Subset(all, [...members, ...fresh]);
    tuneFresh(subset, fresh, inside, keys, sizes[s], rng);
    onStep?.();
    if (subset.score > bounds[s] || !fresh.some((f) => keys.invocations[f] > 0)) break;
    members.push(...fresh);
    results.push({ members: Int32Array.from(members).sort(), score: subset.score });
  }
  return results;
}

/** Swaps of the new functions (only they may change: the smaller summary is fixed) for outsiders. */
function tuneFresh(
  subset: Subset,
  fresh: number[],
  inside: Uint8Array,
  keys: Keys,
  size: number,
  rng: Rng,
): void {
  for (let p = 0; p < GROW_SWAPS; p++) {
    const hot = rng.next() < HOT_SHARE;
    // A hot candidate replaces the hottest new function: few cells lie between them.
    const slot = hot ? hottest(fresh, keys) : rng.int(fresh.length);
    const g = hot ? keys.hot(size, rng) : keys.near(fresh[slot], rng);
    if (g === undefined || inside[g]) continue;
    if (subset.scoreSwap(fresh[slot], g) >= subset.score) continue;
    subset.commitSwap(fresh[slot], g);
    inside[fresh[slot]] = 0;
    inside[g] = 1;
    fresh[slot] = g;
  }
}

/** The slot of the new function highest in the key order. */
function hottest(fresh: readonly number[], keys: Keys): number {
  let best = 0;
  for (let i = 1; i < fresh.length; i++)
    if (keys.position[fresh[i]] > keys.position[fresh[best]]) best = i;
  return best;
}

/**
 * Centres (key positions) of the strata a summary of `size` should fill
 * beside the members at `positions` (ascending): aligns the members, in
 * order, with `size` strata so the summed distance from each member to its
 * stratum's centre is least, by dynamic programming over (stratum, strata
 * given to new functions so far); the strata left over are the new ones'.
 */
function emptyStrata(positions: readonly number[], size: number, functions: number): number[] {
  const extra = size - positions.length;
  const centre = (i: number): number => Math.floor(((i + 0.5) * functions) / size);
  // cost[i][t]: least distance with the first i strata holding i − t members and t new ones.
  const cost = Array.from({ length: size + 1 }, () => new Float64Array(extra + 1).fill(Infinity));
  cost[0][0] = 0;
  for (let i = 0; i < size; i++)
    for (let t = 0; t <= extra; t++) {
      const here = cost[i][t];
      if (here === Infinity) continue;
      const j = i - t;
      if (j < positions.length)
        cost[i + 1][t] = Math.min(cost[i + 1][t], here + Math.abs(positions[j] - centre(i)));
      if (t < extra) cost[i + 1][t + 1] = Math.min(cost[i + 1][t + 1], here);
    }
  // Walk back: a stratum is new wherever taking it new is on an optimal path.
  const strata: number[] = [];
  for (let i = size, t = extra; i > 0 && t > 0; i--)
    if (cost[i][t] === cost[i - 1][t - 1]) {
      strata.push(centre(i - 1));
      t--;
    }
  return strata;
}

/** The function at key position `centre`, or the nearest one to it not yet in the summary. */
function nearestOutsider(order: Int32Array, inside: Uint8Array, centre: number): number {
  for (let step = 0; ; step++)
    for (const at of [centre - step, centre + step])
      if (at >= 0 && at < order.length && !inside[order[at]]) return order[at];
}

/** Each function's total over `refs` (its invocations, summed over minutes, for the invocation references). */
function totals(refs: readonly ReferenceDistribution[], functions: number): Float64Array {
  const sums = new Float64Array(functions);
  for (const ref of refs) for (let f = 0; f < functions; f++) sums[f] += ref.sorted[ref.rank[f]];
  return sums;
}

/** Functions in ascending order of `key`. */
function byKey(key: ArrayLike<number>): Int32Array {
  return Int32Array.from({ length: key.length }, (_, i) => i).sort(
    (a, b) => key[a] - key[b] || a - b,
  );
}

/**
 * A summary with, per reference distribution, its members' ranks in
 * ascending order and its current distance, so a swap's score is the change
 * in the cells between the leaving and the joining function's positions.
 */
class Subset {
  private readonly count: number;
  private readonly ranks: Int32Array[];
  private readonly distances: Float64Array;
  private readonly trial: Float64Array;
  private trialScore = NaN;
  score: number;

  constructor(
    private readonly references: readonly ReferenceDistribution[],
    members: ArrayLike<number>,
  ) {
    this.count = members.length;
    this.ranks = references.map((ref) => Int32Array.from(members, (f) => ref.rank[f]).sort());
    this.distances = Float64Array.from(references, (ref, d) =>
      ref.distanceFromSubset(this.ranks[d]),
    );
    this.trial = new Float64Array(references.length);
    this.score = mean(this.distances);
  }

  /** The score with `leaving` replaced by `joining`; remembers it for `commitSwap`. */
  scoreSwap(leaving: number, joining: number): number {
    const k = this.count;
    for (let d = 0; d < this.references.length; d++) {
      const ref = this.references[d];
      const ranks = this.ranks[d];
      const out = ref.rank[leaving];
      const add = ref.rank[joining];
      // Tied values (most functions are idle in most minutes) leave the distance as it is.
      if (ref.sorted[out] === ref.sorted[add]) {
        this.trial[d] = this.distances[d];
        continue;
      }
      const p = lowerBound(ranks, out);
      let delta = 0;
      if (add < out) {
        // Cells q..p: the joining rank lands at q, the ones after it move up by one.
        const q = lowerBound(ranks, add);
        for (let i = q; i <= p; i++)
          delta += ref.cell(i, k, i === q ? add : ranks[i - 1]) - ref.cell(i, k, ranks[i]);
      } else {
        // Cells p..q−1: the ranks after the leaving one move down, the joining one lands at q−1.
        const q = lowerBound(ranks, add);
        for (let i = p; i < q; i++)
          delta += ref.cell(i, k, i === q - 1 ? add : ranks[i + 1]) - ref.cell(i, k, ranks[i]);
      }
      this.trial[d] = this.distances[d] + delta;
    }
    this.trialScore = mean(this.trial);
    return this.trialScore;
  }

  /** Commits the swap last scored by `scoreSwap` (which must have been this one). */
  commitSwap(leaving: number, joining: number): void {
    for (let d = 0; d < this.references.length; d++) {
      const ref = this.references[d];
      const ranks = this.ranks[d];
      const out = ref.rank[leaving];
      const add = ref.rank[joining];
      const p = lowerBound(ranks, out);
      const q = lowerBound(ranks, add);
      if (add < out) {
        ranks.copyWithin(q + 1, q, p);
        ranks[q] = add;
      } else {
        ranks.copyWithin(p, p + 1, q);
        ranks[q - 1] = add;
      }
      this.distances[d] = this.trial[d];
    }
    this.score = this.trialScore;
  }
}

function mean(values: Float64Array): number {
  let sum = 0;
  for (const v of values) sum += v;
  return sum / values.length;
}

function lowerBound(sorted: Int32Array, value: number): number {
  let low = 0;
  let high = sorted.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if (sorted[mid] < value) low = mid + 1;
    else high = mid;
  }
  return low;
}
