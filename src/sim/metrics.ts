/**
 * Cold-start figures from per-invocation records, shared by the simulator
 * and the live comparison so both sides are computed by the same code.
 */
export interface ColdStartStats {
  /** Invocations counted (served or not). */
  invocations: number;
  coldStarts: number;
  /** coldStarts / invocations (0 when there are none). */
  coldStartRatio: number;
  /** Per function index: [invocations, cold starts]. */
  perFunction: { invocations: Uint32Array; coldStarts: Uint32Array };
}

/**
 * Counts invocation i (function `fn[i]`) when `counted[i]` is 1 (warm-up and
 * such are 0), and as a cold start when `cold[i]` is 1.
 */
export function coldStartStats(
  functions: number,
  fn: Int32Array,
  cold: Uint8Array,
  counted: (i: number) => boolean = () => true,
): ColdStartStats {
  const invocations = new Uint32Array(functions);
  const coldStarts = new Uint32Array(functions);
  let total = 0;
  let colds = 0;
  for (let i = 0; i < fn.length; i++) {
    if (!counted(i)) continue;
    invocations[fn[i]] += 1;
    total += 1;
    if (cold[i]) {
      coldStarts[fn[i]] += 1;
      colds += 1;
    }
  }
  return {
    invocations: total,
    coldStarts: colds,
    coldStartRatio: total === 0 ? 0 : colds / total,
    perFunction: { invocations, coldStarts },
  };
}

/** Relative difference |a − b| / b (0 when both are 0). */
export function relativeDifference(a: number, b: number): number {
  if (a === b) return 0;
  return Math.abs(a - b) / Math.abs(b);
}
