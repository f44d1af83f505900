import type { Rng } from './rng.ts';
import { polishChain } from './chain.ts';
import { Keys } from './keys.ts';
import { Subset } from './subset.ts';
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
 * functions. Then the whole chain is polished (`polishChain`): moves that
 * trade two functions' entry sizes, mostly among the hot ones, taken when
 * they lower the summed score ÷ In-Vitro's over the sizes they change and
 * keep every one of those below In-Vitro's score and at or above its
 * invocations (or the grown summary's, where lower); so the sizes below where growth
 * took over can leave In-Vitro's summaries too. Nesting and exact sizes hold
 * by construction; every size adds invocations, so load rises strictly with
 * size.
 */
export interface SearchOptions {
  rng: Rng;
  /** Called `searchSteps(sizes)` times: once per size grown or tried, then through the polish. */
  onStep?: () => void;
}

export interface SearchReferences {
  invocation: readonly ReferenceDistribution[];
  resource: readonly ReferenceDistribution[];
}

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
/**
 * Moves the chain polish tries after the growth, reported in this many
 * progress steps: on 10,000 functions × 60 minutes and 100 sizes about 15 s
 * of one core, where the hot moves have mostly converged (20,000 hot moves
 * alone gained as much as 60,000).
 */
const POLISH_MOVES = 25_000;
const POLISH_STEPS = 100;
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
  const grown = attempts.reduce((a, b) => (b.ratios < a.ratios ? b : a)).summaries;
  return polishChain(grown, {
    references: all,
    keys,
    bounds,
    loadFloors: Float64Array.from(start, (s, j) =>
      Math.min(invocationsOf(keys, s), invocationsOf(keys, grown[j])),
    ),
    rng: options.rng,
    moves: POLISH_MOVES,
    onStep: options.onStep,
    steps: POLISH_STEPS,
  });
}

function invocationsOf(keys: Keys, summary: Int32Array): number {
  let sum = 0;
  for (const f of summary) sum += keys.invocations[f];
  return sum;
}

/** How many times `searchSummaries` calls `onStep` for a chain of `sizes` sizes. */
export function searchSteps(sizes: number): number {
  return ATTEMPTS * (sizes - 1) + POLISH_STEPS;
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
