/**
 * 1-D Wasserstein (earth mover's) distance between empirical distributions:
 * W1 = ∫ |F(x) − G(x)| dx = ∫₀¹ |F⁻¹(p) − G⁻¹(p)| dp.
 */

/** W1 between two samples of any sizes (sort, then sweep the merged CDFs). */
export function wasserstein1(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length === 0 || b.length === 0) throw new RangeError('both samples must be non-empty');
  const x = Float64Array.from(a).sort();
  const y = Float64Array.from(b).sort();
  let i = 0;
  let j = 0;
  let distance = 0;
  let previous = Math.min(x[0], y[0]);
  while (i < x.length || j < y.length) {
    const next = j >= y.length || (i < x.length && x[i] <= y[j]) ? x[i] : y[j];
    distance += Math.abs(i / x.length - j / y.length) * (next - previous);
    previous = next;
    while (i < x.length && x[i] === next) i++;
    while (j < y.length && y[j] === next) j++;
  }
  return distance;
}

/**
 * A fixed reference distribution (the whole trace's values in one minute),
 * prepared so the distance from any subset of its own items costs O(k log k)
 * for a subset of k, not O(n): the subset is given by the items' ranks.
 */
export class ReferenceDistribution {
  /** Values in ascending order. */
  readonly sorted: Float64Array;
  /** prefix[k] = sum of the k smallest values. */
  readonly prefix: Float64Array;
  /** rank[item] = position of item in `sorted`. */
  readonly rank: Int32Array;

  constructor(values: ArrayLike<number>) {
    const n = values.length;
    const order = Int32Array.from({ length: n }, (_, i) => i).sort(
      (p, q) => values[p] - values[q] || p - q,
    );
    this.sorted = new Float64Array(n);
    this.prefix = new Float64Array(n + 1);
    this.rank = new Int32Array(n);
    for (let k = 0; k < n; k++) {
      this.sorted[k] = values[order[k]];
      this.prefix[k + 1] = this.prefix[k] + this.sorted[k];
      this.rank[order[k]] = k;
    }
  }

  /**
   * W1 between the subset whose ranks are `ranks` (ascending) and the whole.
   * Along p, the subset's quantile on [i/k, (i+1)/k) is its i-th value v; the
   * reference's quantile is below v up to p = (rank + 1)/n and above after it,
   * so the absolute value splits into two integrals of the reference's
   * quantile function, each a difference of prefix sums.
   */
  /**
   * Cell i's share of `distanceFromSubset` when a subset of `count` has the
   * item of rank `r` as its i-th smallest: a swap that moves items between
   * positions only changes the cells it moves them through.
   */
  cell(i: number, count: number, r: number): number {
    return this.cellBetween(
      i / count,
      (i + 1) / count,
      r,
      this.area((i + 1) / count),
      this.area(i / count),
    );
  }

  /**
   * `cell` for the cell [low, high) given its ends' areas (`area(high)`,
   * `area(low)`): callers pricing several members in one cell share them.
   */
  cellBetween(low: number, high: number, r: number, highArea: number, lowArea: number): number {
    const value = this.sorted[r];
    const at = (r + 1) / this.sorted.length;
    // The reference's quantile crosses the value at `at`; outside the cell, one side is empty.
    if (at <= low) return highArea - lowArea - value * (high - low);
    if (at >= high) return value * (high - low) - (highArea - lowArea);
    const splitArea = this.area(at);
    return (
      value * (at - low) - (splitArea - lowArea) + (highArea - splitArea) - value * (high - at)
    );
  }

  /** ∫₀ᵖ of the reference's quantile function. */
  area(p: number): number {
    const n = this.sorted.length;
    const scaled = p * n;
    const j = Math.floor(scaled);
    if (j >= n) return this.prefix[n] / n;
    return (this.prefix[j] + (scaled - j) * this.sorted[j]) / n;
  }

  distanceFromSubset(ranks: Int32Array, count = ranks.length): number {
    const { sorted, prefix } = this;
    const n = sorted.length;
    const area = (p: number): number => {
      // ∫₀ᵖ reference quantile: whole cells from the prefix sum, plus a partial cell.
      const scaled = p * n;
      const j = Math.floor(scaled);
      if (j >= n) return prefix[n] / n;
      return (prefix[j] + (scaled - j) * sorted[j]) / n;
    };
    let distance = 0;
    let lowArea = 0;
    for (let i = 0; i < count; i++) {
      const low = i / count;
      const high = (i + 1) / count;
      const r = ranks[i];
      const value = sorted[r];
      const split = Math.min(high, Math.max(low, (r + 1) / n));
      const splitArea = area(split);
      const highArea = area(high);
      distance +=
        value * (split - low) -
        (splitArea - lowArea) +
        (highArea - splitArea) -
        value * (high - split);
      lowArea = highArea;
    }
    return distance;
  }
}
