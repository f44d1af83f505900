import type { ReferenceDistribution } from './wasserstein.ts';

/**
 * A summary's place in one reference distribution: its members' ranks in
 * ascending order and, per cell, what the cell would cost if the member
 * below it (up) or above it (down) moved in, kept as prefix sums. A swap
 * shifts every member between the leaving and the joining rank by one cell,
 * so its change in distance is two binary searches, two cells and a
 * difference of prefix sums: O(log k), not O(cells it moves).
 */
class Ladder {
  readonly ranks: Int32Array;
  /** upSum[j] = Σ_{i<j} (cell(i, ranks[i−1]) − cell(i, ranks[i])), cell 0 counting 0. */
  private readonly upSum: Float64Array;
  /** downSum[j] = Σ_{i<j} (cell(i, ranks[i+1]) − cell(i, ranks[i])), the top cell counting 0. */
  private readonly downSum: Float64Array;
  distance: number;

  constructor(
    private readonly ref: ReferenceDistribution,
    ranks: Int32Array,
  ) {
    this.ranks = ranks;
    this.upSum = new Float64Array(ranks.length + 1);
    this.downSum = new Float64Array(ranks.length + 1);
    this.distance = ref.distanceFromSubset(ranks);
    this.refresh(0, ranks.length - 1);
  }

  /** The change in distance if the member of rank `out` leaves and the item of rank `add` joins. */
  delta(out: number, add: number): number {
    const { ref, ranks } = this;
    // Tied values (most functions are idle in most minutes) leave the distance as it is.
    if (ref.sorted[out] === ref.sorted[add]) return 0;
    const k = ranks.length;
    const p = lowerBound(ranks, out);
    const q = lowerBound(ranks, add);
    // Joining below: it lands in cell q, the members of cells q..p−1 move up one.
    if (add < out)
      return ref.cell(q, k, add) - ref.cell(q, k, ranks[q]) + this.upSum[p + 1] - this.upSum[q + 1];
    // Joining above: the members of cells p+1..q−1 move down one, it lands in cell q−1.
    const top = q - 1;
    return (
      this.downSum[top] - this.downSum[p] + ref.cell(top, k, add) - ref.cell(top, k, ranks[top])
    );
  }

  /** Applies the swap whose `delta` was `change`. */
  commit(out: number, add: number, change: number): void {
    const { ranks } = this;
    const p = lowerBound(ranks, out);
    const q = lowerBound(ranks, add);
    // Between tied values every member moved has the same value: no cell's terms change.
    const tied = this.ref.sorted[out] === this.ref.sorted[add];
    if (add < out) {
      ranks.copyWithin(q + 1, q, p);
      ranks[q] = add;
      if (!tied) this.refresh(q, p);
    } else {
      ranks.copyWithin(p, p + 1, q);
      ranks[q - 1] = add;
      if (!tied) this.refresh(p, q - 1);
    }
    this.distance += change;
  }

  /** Recomputes the terms of cells lo..hi (whose members changed) and of their neighbours. */
  private refresh(lo: number, hi: number): void {
    const { ref, ranks, upSum, downSum } = this;
    const k = ranks.length;
    const from = Math.max(0, lo - 1);
    const to = Math.min(k - 1, hi + 1);
    const oldUp = upSum[to + 1];
    const oldDown = downSum[to + 1];
    let lowArea = ref.area(from / k);
    for (let i = from; i <= to; i++) {
      const low = i / k;
      const high = (i + 1) / k;
      const highArea = ref.area(high);
      const here = ref.cellBetween(low, high, ranks[i], highArea, lowArea);
      const up = i > 0 ? ref.cellBetween(low, high, ranks[i - 1], highArea, lowArea) - here : 0;
      const down =
        i < k - 1 ? ref.cellBetween(low, high, ranks[i + 1], highArea, lowArea) - here : 0;
      upSum[i + 1] = upSum[i] + up;
      downSum[i + 1] = downSum[i] + down;
      lowArea = highArea;
    }
    // Past `to` the terms are unchanged: their sums only carry the new offset.
    const shiftUp = upSum[to + 1] - oldUp;
    const shiftDown = downSum[to + 1] - oldDown;
    if (shiftUp === 0 && shiftDown === 0) return;
    for (let j = to + 2; j <= k; j++) {
      upSum[j] += shiftUp;
      downSum[j] += shiftDown;
    }
  }
}

/**
 * A summary scored against every reference distribution (its score is the
 * mean distance), with swaps scored incrementally: `scoreSwap` then, if
 * taken, `commitSwap` of the same pair.
 */
export class Subset {
  private readonly ladders: Ladder[];
  private readonly trial: Float64Array;
  private trialScore = NaN;
  readonly count: number;
  score: number;

  constructor(
    private readonly references: readonly ReferenceDistribution[],
    members: ArrayLike<number>,
  ) {
    this.ladders = references.map((ref) => {
      const ranks = new Int32Array(members.length);
      for (let i = 0; i < ranks.length; i++) ranks[i] = ref.rank[members[i]];
      return new Ladder(ref, ranks.sort());
    });
    this.count = members.length;
    this.trial = new Float64Array(references.length);
    this.score = this.mean((l) => l.distance);
  }

  /** The score with `leaving` replaced by `joining`; remembers it for `commitSwap`. */
  scoreSwap(leaving: number, joining: number): number {
    for (let d = 0; d < this.ladders.length; d++) {
      const rank = this.references[d].rank;
      this.trial[d] = this.ladders[d].delta(rank[leaving], rank[joining]);
    }
    let sum = 0;
    for (let d = 0; d < this.ladders.length; d++) sum += this.ladders[d].distance + this.trial[d];
    this.trialScore = sum / this.ladders.length;
    return this.trialScore;
  }

  /** Commits the swap last scored by `scoreSwap` (which must have been this one). */
  commitSwap(leaving: number, joining: number): void {
    for (let d = 0; d < this.ladders.length; d++) {
      const rank = this.references[d].rank;
      this.ladders[d].commit(rank[leaving], rank[joining], this.trial[d]);
    }
    this.score = this.trialScore;
  }

  private mean(of: (ladder: Ladder) => number): number {
    let sum = 0;
    for (const l of this.ladders) sum += of(l);
    return sum / this.ladders.length;
  }
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
