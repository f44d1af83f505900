/**
 * CPU placement: whether instances share the daemon's core ("pack") or may run
 * on any core the node has ("spread").
 *
 * Why pack at all: every hand-off between two processes on different cores
 * wakes an idle core, and on a VM that wake is a halt exit and an IPI, about
 * 35 µs on this kind of machine; on one core the same hand-off is a context
 * switch of a few µs. A warm invocation hands off twice (daemon → instance →
 * daemon), so when invocations run one at a time there is nothing to gain
 * from a second core and those wakes are pure latency. With more than one in
 * flight, parallel cores matter more than wakes, so the node spreads again.
 */
export type Placement = 'pack' | 'spread';

/** What the node saw during the last placement window. */
export interface PlacementWindow {
  /** Most invocations in flight at once on the node during the window. */
  readonly peakInFlight: number;
}

export interface PlacementPolicy {
  readonly name: string;
  place(window: PlacementWindow): Placement;
}

/**
 * Spreads as soon as two invocations overlap in a window; packs again only
 * after `calmWindows` windows in a row with at most one in flight, so a
 * bursty load does not make the node flap between the two.
 */
export class PackWhenSequential implements PlacementPolicy {
  readonly name = 'pack-when-sequential';
  private calm = 0;

  constructor(private readonly calmWindows = 2) {}

  place(window: PlacementWindow): Placement {
    this.calm = window.peakInFlight <= 1 ? this.calm + 1 : 0;
    return this.calm >= this.calmWindows ? 'pack' : 'spread';
  }
}

/** The kernel's own choice on every core: what a node without placement does. */
export class AlwaysSpread implements PlacementPolicy {
  readonly name = 'spread';
  place(): Placement {
    return 'spread';
  }
}

export const PLACEMENT_POLICIES = {
  'pack-when-sequential': () => new PackWhenSequential(),
  spread: () => new AlwaysSpread(),
} as const satisfies Record<string, () => PlacementPolicy>;
