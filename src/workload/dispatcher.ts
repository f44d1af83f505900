/**
 * The open-loop dispatcher: sends each invocation at its precomputed time,
 * never waiting for responses (so a slow target cannot slow the offered load:
 * no coordinated omission). It sleeps on timers, not by polling: each wait
 * is measured against the absolute schedule (an oversleep never shifts the
 * rest of the run) and armed early by how late timers have been firing (an
 * exponentially weighted mean), so wake-ups land on their deadline on
 * average. Overdue invocations go out at once.
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
   * Below this wait (ms) the dispatcher yields to I/O and re-checks instead
   * of arming a timer. 0 (the default): never, only timers; a few hundred µs
   * at most if used, since every yield is CPU the target does not get.
   */
  spinBelowMs?: number;
  /**
   * Least time (ms) between two wake-ups: whatever falls due within it goes
   * out in one batch. 0 (the default) leaves it to the clock (libuv timers
   * wake at most once a ms); with a precise clock, the CPU bought with
   * lateness (each wake-up costs two thread switches).
   */
  quantumMs?: number;
  /** First guess of how late a timer fires (ms), refined as the run goes. */
  timerLatenessMs?: number;
  /** Called every `progressEvery` sends with how many went out. */
  onProgress?: (sent: number) => void;
  progressEvery?: number;
  signal?: AbortSignal;
}

/** Weight of the newest observation in the timer-lateness estimate. */
const LATENESS_WEIGHT = 1 / 8;
/** The estimate is kept within this (ms): a long stall must not make every later wait a spin. */
const MAX_TIMER_LATENESS_MS = 2;
const MIN_SLEEP_MS = 0.05;
/** Due within a nanosecond counts as due: clock arithmetic rounds. */
const DUE_SLACK_MS = 1e-6;

/**
 * Calls `send(i, now)` for each i at `atMs[i]` ms after the start (`now`: the
 * clock read it went out on, ms after the start). Returns the
 * offsets (ms after the start) at which each `send` was called, same indices.
 */
export async function dispatch(
  atMs: Float64Array,
  send: (index: number, nowMs: number) => void,
  options: DispatchOptions = {},
): Promise<{ startedAt: number; sentMs: Float64Array; timerLatenessMs: number }> {
  const clock = options.clock ?? realClock;
  const spinBelow = options.spinBelowMs ?? 0;
  const every = options.progressEvery ?? 1000;
  const n = atMs.length;
  const sentMs = new Float64Array(n);
  const startedAt = clock.now();
  let timerLateness = options.timerLatenessMs ?? 1;
  let i = 0;
  // The clock is read once when a timer fires and once after a batch: every
  // invocation due at a read goes out in that batch, stamped with that read.
  let now = clock.now() - startedAt;
  const quantum = options.quantumMs ?? 0;
  let woken = -Infinity;
  while (i < n) {
    if (options.signal?.aborted) break;
    if (atMs[i] <= now + DUE_SLACK_MS) {
      do {
        sentMs[i] = now;
        send(i, now);
        i++;
        if (i % every === 0) options.onProgress?.(i);
      } while (i < n && atMs[i] <= now + DUE_SLACK_MS);
      now = clock.now() - startedAt;
      continue;
    }
    const wait = Math.max(atMs[i], woken + quantum) - now;
    if (wait <= spinBelow) {
      await clock.yieldToIo();
      now = clock.now() - startedAt;
      continue;
    }
    // Never less than a sliver of the wait, so waits shrink to zero in finitely many steps.
    const armed = Math.max(Math.min(wait, MIN_SLEEP_MS), wait - spinBelow - timerLateness);
    await clock.sleep(armed);
    const woke = clock.now() - startedAt;
    const late = woke - now - armed;
    now = woke;
    woken = woke;
    timerLateness += LATENESS_WEIGHT * (Math.min(MAX_TIMER_LATENESS_MS, late) - timerLateness);
    timerLateness = Math.max(0, timerLateness);
  }
  options.onProgress?.(i);
  return {
    startedAt,
    sentMs: i < n ? sentMs.subarray(0, i) : sentMs,
    timerLatenessMs: timerLateness,
  };
}

/**
 * Keeps the load open loop when a target has at most `limit` requests in
 * flight (its connections): a request that finds them all busy waits here,
 * first in first out, and `leave(i, at)` reports when it really left, so the
 * wait shows as lateness instead of hiding in the HTTP client's queue.
 */
export class ConnectionGate {
  private inFlight = 0;
  private readonly waiting: number[] = [];
  private head = 0;
  /** Requests that had to wait for a connection. */
  delayed = 0;
  /** Most requests waiting at once. */
  maxWaiting = 0;

  constructor(
    private readonly limit: number,
    private readonly leave: (index: number) => void,
  ) {}

  /** A request is due: it leaves now if a connection is free, else queues. */
  submit(index: number): void {
    if (this.inFlight < this.limit) {
      this.inFlight++;
      this.leave(index);
      return;
    }
    this.delayed++;
    this.waiting.push(index);
    this.maxWaiting = Math.max(this.maxWaiting, this.waiting.length - this.head);
  }

  /** A request finished: its connection goes to the longest-waiting request. */
  release(): void {
    if (this.head < this.waiting.length) {
      const next = this.waiting[this.head++];
      if (this.head > 4096 && this.head * 2 > this.waiting.length) {
        this.waiting.splice(0, this.head);
        this.head = 0;
      }
      this.leave(next);
      return;
    }
    this.inFlight--;
  }

  get queued(): number {
    return this.waiting.length - this.head;
  }
}
