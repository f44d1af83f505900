/**
 * The synthetic function's unit of work: a xorshift loop the JIT cannot
 * remove (its result is returned). The load tool calibrates it on this CPU at
 * deploy time with the very same code, so "N ms of work" means N ms on an
 * idle core.
 */
export function spin(iterations: number): number {
  let x = 0x2545f491;
  for (let i = 0; i < iterations; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
  }
  return x;
}

/** Iterations of `spin` per ms on this CPU: the median of `rounds` timed runs of ≥ `targetMs`. */
export function calibrateSpin(targetMs = 25, rounds = 7): number {
  let iterations = 100_000;
  // Grow the run until it takes long enough to time well (and the loop is optimised).
  for (;;) {
    const start = performance.now();
    spin(iterations);
    if (performance.now() - start >= targetMs) break;
    iterations *= 2;
  }
  const rates: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const start = performance.now();
    spin(iterations);
    rates.push(iterations / (performance.now() - start));
  }
  rates.sort((a, b) => a - b);
  return rates[Math.floor(rates.length / 2)];
}
