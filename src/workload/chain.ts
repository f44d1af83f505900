import type { Keys } from './keys.ts';
import type { Rng } from './rng.ts';
import { Subset } from './subset.ts';
import type { ReferenceDistribution } from './wasserstein.ts';

/**
 * Local search over a whole nested chain at once. A chain of m summaries is
 * an assignment of functions to blocks: block 0 is the smallest summary,
 * block j the functions summary j adds, block m everything outside. A move
 * trades two functions' blocks; it changes exactly the summaries between
 * them (the earlier one leaves them, the later one joins), so every size
 * stays exact and nested by construction. A move is taken when it lowers
 * the summed score ÷ bound over the sizes it changes, keeps every one of
 * them at or below its bound, keeps every one of them at or above its load
 * floor (so a lower WD is never bought with a lighter summary), and leaves
 * every block after the first with invocations (so load still rises
 * strictly with size).
 */
export interface ChainPolish {
  references: readonly ReferenceDistribution[];
  keys: Keys;
  /** Each summary's highest allowed score (In-Vitro's, less a margin). */
  bounds: Float64Array;
  /** Each summary's lowest allowed total invocations (In-Vitro's, or the start's where lower). */
  loadFloors: Float64Array;
  rng: Rng;
  /** Moves tried: a fixed count, so the result depends on the seed alone. */
  moves: number;
  /** Called `steps` times, evenly through the moves. */
  onStep?: () => void;
  steps: number;
}

/**
 * Share of moves that trade any member for a function near it (the slowest:
 * a member of a small summary trades in every larger one, and cold members'
 * ranks lie far apart).
 */
const NEAR_SHARE = 0.1;
/**
 * Share that trade a function near a top stratum's centre for one near it:
 * the linear WD is dominated by the top cells, and these moves are cheap
 * (close ranks) and the ones that pay most. The rest move a member's entry
 * by one size.
 */
const HOT_SHARE = 0.85;

/** `summaries` ascending by size, each inside the next; returns the polished chain, indices ascending. */
export function polishChain(summaries: readonly Int32Array[], options: ChainPolish): Int32Array[] {
  const chain = new Chain(summaries, options);
  const { rng, keys } = options;
  const every = Math.max(1, Math.ceil(options.moves / options.steps));
  let reported = 0;
  for (let t = 0; t < options.moves; t++) {
    if (t % every === every - 1 && reported < options.steps) {
      options.onStep?.();
      reported++;
    }
    const draw = rng.next();
    if (draw < NEAR_SHARE) {
      const a = chain.randomMember(rng.int(summaries.length), rng);
      const b = keys.nearInAny(a, rng);
      if (b !== undefined) chain.tryMove(a, b);
    } else if (draw < NEAR_SHARE + HOT_SHARE) {
      const j = rng.int(summaries.length);
      const b = keys.hot(chain.size(j), rng);
      const a = b === undefined ? undefined : keys.nearInAny(b, rng);
      if (a !== undefined && b !== undefined) chain.tryMove(a, b);
    } else {
      // A function's entry moves by one size: it trades places with one of the next block's.
      const j = rng.int(summaries.length - 1);
      chain.tryMove(chain.randomMember(j, rng), chain.randomMember(j + 1, rng));
    }
  }
  for (; reported < options.steps; reported++) options.onStep?.();
  return chain.summaries();
}

class Chain {
  private readonly subsets: Subset[];
  /** block[f]: the block f is in (m: outside the chain). */
  private readonly block: Int32Array;
  /** Each block's functions, and each function's index in its block's list. */
  private readonly members: number[][];
  private readonly slot: Int32Array;
  /** Each block's invocations. */
  private readonly load: Float64Array;
  /** Each summary's invocations: the sum of its blocks'. */
  private readonly totals: Float64Array;
  private readonly weights: Float64Array;

  constructor(
    summaries: readonly Int32Array[],
    private readonly options: ChainPolish,
  ) {
    const n = options.keys.order.length;
    const m = summaries.length;
    this.subsets = summaries.map((s) => new Subset(options.references, s));
    this.block = new Int32Array(n).fill(m);
    this.slot = new Int32Array(n);
    this.members = Array.from({ length: m }, () => []);
    this.load = new Float64Array(m);
    for (let j = m - 1; j >= 0; j--) for (const f of summaries[j]) this.block[f] = j;
    for (let f = 0; f < n; f++) if (this.block[f] < m) this.place(f, this.block[f]);
    this.totals = new Float64Array(m);
    for (let j = 0, sum = 0; j < m; j++) this.totals[j] = sum += this.load[j];
    this.weights = Float64Array.from(options.bounds, (b) => (b > 0 ? 1 / b : 0));
  }

  size(j: number): number {
    return this.subsets[j].count;
  }

  /** A random function of block j. */
  randomMember(j: number, rng: Rng): number {
    const list = this.members[j];
    return list[rng.int(list.length)];
  }

  /** Trades the blocks of `x` and `y` if that lowers the weighted score within the bounds. */
  tryMove(x: number, y: number): boolean {
    if (this.block[x] === this.block[y]) return false;
    const [a, b] = this.block[x] < this.block[y] ? [x, y] : [y, x];
    const from = this.block[a];
    const to = this.block[b];
    if (!this.loadHolds(a, b, from, to)) return false;
    const { bounds, loadFloors, keys } = this.options;
    // Every summary from `from` to `to` - 1 loses a and gains b.
    const delta = keys.invocations[b] - keys.invocations[a];
    let gain = 0;
    for (let j = from; j < to; j++) {
      if (delta < 0 && this.totals[j] + delta < loadFloors[j]) return false;
      const subset = this.subsets[j];
      const score = subset.scoreSwap(a, b);
      if (score > bounds[j]) return false;
      gain += (score - subset.score) * this.weights[j];
    }
    if (!(gain < 0)) return false;
    for (let j = from; j < to; j++) {
      this.subsets[j].commitSwap(a, b);
      this.totals[j] += delta;
    }
    this.unplace(a);
    if (to < this.members.length) this.unplace(b);
    this.place(b, from);
    if (to < this.members.length) this.place(a, to);
    else this.block[a] = to;
    return true;
  }

  summaries(): Int32Array[] {
    const result: Int32Array[] = [];
    const growing: number[] = [];
    for (const list of this.members) {
      growing.push(...list);
      result.push(Int32Array.from(growing).sort());
    }
    return result;
  }

  /** Every block after the first keeps some invocations once `a` (in `from`) and `b` (in `to`) trade. */
  private loadHolds(a: number, b: number, from: number, to: number): boolean {
    const inv = this.options.keys.invocations;
    const m = this.members.length;
    if (from > 0 && !(this.load[from] - inv[a] + inv[b] > 0)) return false;
    return to >= m || to === 0 || this.load[to] - inv[b] + inv[a] > 0;
  }

  private place(f: number, j: number): void {
    this.block[f] = j;
    this.slot[f] = this.members[j].length;
    this.members[j].push(f);
    this.load[j] += this.options.keys.invocations[f];
  }

  private unplace(f: number): void {
    const j = this.block[f];
    const list = this.members[j];
    const last = list[list.length - 1];
    list[this.slot[f]] = last;
    this.slot[last] = this.slot[f];
    list.pop();
    this.load[j] -= this.options.keys.invocations[f];
  }
}
