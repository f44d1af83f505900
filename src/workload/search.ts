import type { Rng } from './rng.ts';
import type { ReferenceDistribution } from './wasserstein.ts';

/**
 * The `search` sampler: optimises the score directly while keeping In-Vitro's
 * guarantees (every summary a subset of the next larger one, exact sizes).
 * Functions are ordered by a load key (the mean of their ranks by total
 * invocations and by total resources). W1 between k values and the whole
 * trace is smallest when the i-th smallest value sits at the whole trace's
 * quantile (i + ½)/k, so each size starts from the best of one stratified
 * pick (the function at each stratum's centre of the pool's order) and
 * `trials` random draws from the pool; then near swaps (a member for a pool
 * function a few places from it in the key order) are kept whenever they
 * lower the score. The pool is the whole trace for the largest summary and
 * the parent summary for each smaller one, so summaries nest.
 */
export interface SearchOptions {
  /** Random draws tried beside the stratified starts, per size. */
  trials: number;
  rng: Rng;
  /** Called once per size, when its summary is final. */
  onSize?: () => void;
}

export interface Searched {
  size: number;
  /** Indices into the trace's functions, ascending. */
  functions: Int32Array;
}

export interface SearchReferences {
  invocation: readonly ReferenceDistribution[];
  resource: readonly ReferenceDistribution[];
}

/** `sizes` come largest first. */
export function searchSummaries(
  references: SearchReferences,
  functions: number,
  sizes: readonly number[],
  options: SearchOptions,
): Searched[] {
  const { rng } = options;
  const all = [...references.invocation, ...references.resource];
  const order = keyOrder(references, functions);
  const results: Searched[] = [];
  let pool: Int32Array = order;
  for (const size of sizes) {
    const starts = [
      stratify(pool, size, 0.5),
      ...Array.from({ length: options.trials }, () => rng.sample(pool, size)),
    ];
    const current = starts
      .map((members) => new Subset(all, members))
      .reduce((best, s) => (s.score < best.score ? s : best));
    const proposals = size === sizes[0] ? ROOT_SWAPS : CHILD_SWAPS;
    improveBySwaps(current, pool, proposals, rng);
    results.push({ size, functions: current.sortedMembers() });
    const members = new Set(current.sortedMembers());
    pool = pool.filter((f) => members.has(f));
    options.onSize?.();
  }
  return results;
}

const ROOT_SWAPS = 6000;
const CHILD_SWAPS = 300;
/** A swap proposes a pool function at most this many places from the member in the key order. */
const NEIGHBOURHOOD = 8;

/**
 * Proposes swaps of a member for a nearby non-member of `pool` (ordered by
 * the key), keeping a swap when it lowers the score. Near swaps change only
 * the cells between the two functions' positions, so they are cheap, and
 * they tune where each member sits in the distribution.
 */
function improveBySwaps(subset: Subset, pool: Int32Array, proposals: number, rng: Rng): void {
  if (pool.length <= subset.size) return;
  const position = new Map<number, number>();
  pool.forEach((f, p) => position.set(f, p));
  for (let p = 0; p < proposals; p++) {
    const slot = rng.int(subset.size);
    const from = position.get(subset.member(slot)) as number;
    const offset = 1 + rng.int(NEIGHBOURHOOD);
    const at = rng.next() < 0.5 ? from - offset : from + offset;
    if (at < 0 || at >= pool.length || subset.has(pool[at])) continue;
    const score = subset.scoreSwap(subset.member(slot), pool[at]);
    if (score < subset.score) subset.swap(slot, pool[at], score);
  }
}

/** The function at each of `size` strata of `order`, `offset` of the way into its stratum. */
function stratify(order: Int32Array, size: number, offset: number): Int32Array {
  const width = order.length / size;
  return Int32Array.from({ length: size }, (_, i) => order[Math.floor((i + offset) * width)]);
}

/** Functions in ascending order of the mean of their ranks by total invocations and total resources. */
function keyOrder(references: SearchReferences, functions: number): Int32Array {
  const total = (refs: readonly ReferenceDistribution[]): Float64Array => {
    const sums = new Float64Array(functions);
    for (const ref of refs) for (let f = 0; f < functions; f++) sums[f] += ref.sorted[ref.rank[f]];
    return sums;
  };
  const byKey = (key: ArrayLike<number>): Int32Array =>
    Int32Array.from({ length: functions }, (_, i) => i).sort((a, b) => key[a] - key[b] || a - b);
  const invocation = byKey(total(references.invocation));
  const resource = byKey(total(references.resource));
  const meanRank = new Float64Array(functions);
  invocation.forEach((f, p) => (meanRank[f] += p));
  resource.forEach((f, p) => (meanRank[f] += p));
  return byKey(meanRank);
}

/**
 * A summary with, per reference distribution, its members' ranks in
 * ascending order and its current distance, so a swap's score is the change
 * in the cells between the leaving and the joining function's positions.
 */
class Subset {
  private readonly members: number[];
  private readonly inside: Set<number>;
  private readonly ranks: Int32Array[];
  private readonly distances: Float64Array;
  private readonly trial: Float64Array;
  score: number;

  constructor(
    private readonly references: readonly ReferenceDistribution[],
    members: ArrayLike<number>,
  ) {
    this.members = Array.from(members);
    this.inside = new Set(this.members);
    this.ranks = references.map((ref) => Int32Array.from(this.members, (f) => ref.rank[f]).sort());
    this.distances = Float64Array.from(references, (ref, d) =>
      ref.distanceFromSubset(this.ranks[d]),
    );
    this.trial = new Float64Array(references.length);
    this.score = mean(this.distances);
  }

  get size(): number {
    return this.members.length;
  }

  member(slot: number): number {
    return this.members[slot];
  }

  has(fn: number): boolean {
    return this.inside.has(fn);
  }

  sortedMembers(): Int32Array {
    return Int32Array.from(this.members).sort();
  }

  /** The score with `leaving` replaced by `joining`; remembers each distance for `swap`. */
  scoreSwap(leaving: number, joining: number): number {
    const k = this.members.length;
    for (let d = 0; d < this.references.length; d++) {
      const ref = this.references[d];
      const ranks = this.ranks[d];
      const out = ref.rank[leaving];
      const add = ref.rank[joining];
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
    return mean(this.trial);
  }

  /** Commits the swap last scored by `scoreSwap` (the member at `slot` leaves). */
  swap(slot: number, joining: number, score: number): void {
    const leaving = this.members[slot];
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
    this.inside.delete(leaving);
    this.members[slot] = joining;
    this.inside.add(joining);
    this.score = score;
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
