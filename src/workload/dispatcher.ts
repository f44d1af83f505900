/**
 * The open-loop dispatcher: sends each invocation at its precomputed time,
 * never waiting for responses (so a slow target cannot slow the offered load:
 * no coordinated omission). Every wait is measured against the absolute
 * schedule, so oversleeping makes the next sends late but never shifts the
 * rest of the run (no drift accumulates); late invocations go out at once.
 */
export interface Clock {
  /** Milliseconds, monotonic. */
  now(): number;
  /** Resolves after about `ms` (timers may oversleep; the dispatcher corrects). */
  sleep(ms: number): Promise<void>;
  /** Lets pending I/O run, then resolves (setImmediate). */
  yieldToIo(): Promise<void>;
}

export const realClock: Clock = {
  now: () => performance.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
  yieldToIo: () => new Promise((resolve) => setImmediate(resolve)),
};

export interface DispatchOptions {
  clock?: Clock;
  /**
   * Below this wait (ms) the dispatcher yields to I/O and re-checks instead of
   * arming a timer: timers on Linux fire ~1 ms late, which would blow the
   * lateness budget.
   */
  spinBelowMs?: number;
  /** Called every `progressEvery` sends with how many went out. */
  onProgress?: (sent: number) => void;
  progressEvery?: number;
  signal?: AbortSignal;
}

/**
 * Calls `send(i)` for each i at `atMs[i]` ms after the start. Returns the
 * actual send offsets (ms after the start), same indices.
 */
export async function dispatch(
  atMs: Float64Array,
  send: (index: number) => void,
  options: DispatchOptions = {},
): Promise<{ startedAt: number; sentMs: Float64Array }> {
  const clock = options.clock ?? realClock;
  const spinBelow = options.spinBelowMs ?? 2;
  const every = options.progressEvery ?? 1000;
  const n = atMs.length;
  const sentMs = new Float64Array(n);
  const startedAt = clock.now();
  let i = 0;
  while (i < n) {
    if (options.signal?.aborted) break;
    let now = clock.now() - startedAt;
    while (i < n && atMs[i] <= now) {
      sentMs[i] = now;
      send(i);
      i++;
      if (i % every === 0) options.onProgress?.(i);
      now = clock.now() - startedAt;
    }
    if (i >= n) break;
    const wait = atMs[i] - now;
    if (wait > spinBelow) await clock.sleep(wait - spinBelow);
    else await clock.yieldToIo();
  }
  options.onProgress?.(i);
  return { startedAt, sentMs: i < n ? sentMs.subarray(0, i) : sentMs };
}
