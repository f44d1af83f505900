/**
 * The synthetic function's unit of work: a xorshift loop the JIT cannot
 * remove (its result is returned). It is calibrated in CPU time inside a
 * sandbox on the node (`calibrateSpinCpu`, once per deploy), so "N ms of
 * work" means N ms of CPU whatever else the machine is doing.
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

/** CPU time this process has used, in ms (user + system). */
export function cpuMs(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
}

/**
 * Iterations of `spin` per ms of CPU time: the median of `rounds` runs of ≥
 * `targetMs` CPU each. Time spent descheduled (a busy machine, a CPU quota)
 * is not CPU time, so the figure does not depend on the machine's load.
 * The clock is the process's (getrusage: exact to the µs, but it counts
 * the runtime's other threads too); the thread's own clock
 * (`process.threadCpuUsage`) moves in scheduler ticks here (4 ms steps,
 * measured on Node 24), ±40 % on a 10 ms run. Many short runs and their
 * median drop the runs another thread's burst fell into.
 */
export function calibrateSpinCpu(targetMs = 10, rounds = 15): number {
  let iterations = 100_000;
  for (;;) {
    const start = cpuMs();
    spin(iterations);
    if (cpuMs() - start >= targetMs) break;
    iterations *= 2;
  }
  const rates: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const start = cpuMs();
    spin(iterations);
    rates.push(iterations / Math.max(1e-3, cpuMs() - start));
  }
  rates.sort((a, b) => a - b);
  return rates[Math.floor(rates.length / 2)];
}
