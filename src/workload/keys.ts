import type { Rng } from './rng.ts';
import type { ReferenceDistribution } from './wasserstein.ts';

/** A swap proposes a function at most this many places from the other in a key order. */
const NEIGHBOURHOOD = 8;
/** Top strata whose centres hot proposals aim at. */
const HOT_STRATA = 4;

export interface KeyReferences {
  invocation: readonly ReferenceDistribution[];
  resource: readonly ReferenceDistribution[];
}

/** Orders of the functions the search draws neighbours from. */
export class Keys {
  /** Ascending by the mean of a function's ranks by total invocations and by total resources. */
  readonly order: Int32Array;
  /** position[f]: f's place in `order`. */
  readonly position: Int32Array;
  /** Ascending by total invocations, and by total resources. */
  readonly byInvocations: Int32Array;
  readonly byResources: Int32Array;
  /** Places in those two orders. */
  private readonly invocationPlace: Int32Array;
  private readonly resourcePlace: Int32Array;
  /** Each function's total on the invocation scale: positive exactly when it has invocations. */
  readonly invocations: Float64Array;

  constructor(references: KeyReferences, functions: number) {
    this.invocations = totals(references.invocation, functions);
    this.byInvocations = byKey(this.invocations);
    this.byResources = byKey(totals(references.resource, functions));
    const meanRank = new Float64Array(functions);
    this.byInvocations.forEach((f, p) => (meanRank[f] += p));
    this.byResources.forEach((f, p) => (meanRank[f] += p));
    this.order = byKey(meanRank);
    this.position = new Int32Array(functions);
    this.order.forEach((f, p) => (this.position[f] = p));
    this.invocationPlace = places(this.byInvocations);
    this.resourcePlace = places(this.byResources);
  }

  /**
   * A function a few places from `fn` in the mixed order or in one metric's
   * own: a hot function's stand-in is its neighbour by the metric it is hot in.
   */
  nearInAny(fn: number, rng: Rng): number | undefined {
    const pick = rng.int(3);
    const [order, place] =
      pick === 0
        ? [this.order, this.position]
        : pick === 1
          ? [this.byInvocations, this.invocationPlace]
          : [this.byResources, this.resourcePlace];
    const offset = 1 + rng.int(NEIGHBOURHOOD);
    return order[place[fn] + (rng.next() < 0.5 ? -offset : offset)];
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

/** Each function's total over `refs` (its invocations, summed over minutes, for the invocation references). */
function totals(refs: readonly ReferenceDistribution[], functions: number): Float64Array {
  const sums = new Float64Array(functions);
  for (const ref of refs) for (let f = 0; f < functions; f++) sums[f] += ref.sorted[ref.rank[f]];
  return sums;
}

/** place[f]: f's index in `order`. */
function places(order: Int32Array): Int32Array {
  const place = new Int32Array(order.length);
  order.forEach((f, p) => (place[f] = p));
  return place;
}

/** Functions in ascending order of `key`. */
function byKey(key: ArrayLike<number>): Int32Array {
  return Int32Array.from({ length: key.length }, (_, i) => i).sort(
    (a, b) => key[a] - key[b] || a - b,
  );
}
