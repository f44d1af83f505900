/** A pending timer; cancelling twice, or after it fired, does nothing. */
export interface Timer {
  cancel(): void;
}

/**
 * Time and timers as the pool and its instances see them. The node runs on
 * `systemClock`; tests and the trace simulator drive a `ManualClock`, so the
 * same pool and policy code runs with no wall time passing.
 */
export interface Clock {
  /** Epoch milliseconds, with sub-millisecond precision where the clock has it. */
  now(): number;
  /**
   * Calls `fire` after `ms`. A `background` timer does not keep the process
   * alive (keep-alive expiry), a foreground one does (an invocation's timeout).
   */
  setTimer(ms: number, fire: () => void, options?: { background?: boolean }): Timer;
}

/** Epoch milliseconds with sub-millisecond precision. */
export function now(): number {
  return performance.timeOrigin + performance.now();
}

export const systemClock: Clock = {
  now,
  setTimer(ms, fire, options) {
    const handle = setTimeout(fire, ms);
    if (options?.background) handle.unref();
    return { cancel: () => clearTimeout(handle) };
  },
};

/** A ManualClock timer and its handle in one object (a simulation sets millions). */
class ManualTimer implements Timer {
  /** Its place in the clock's heap; -1 once it fired or was cancelled. */
  index = -1;

  constructor(
    readonly at: number,
    readonly seq: number,
    readonly fire: () => void,
    private readonly clock: ManualClock,
  ) {}

  cancel(): void {
    if (this.index >= 0) this.clock.remove(this);
  }
}

function earlier(a: ManualTimer, b: ManualTimer): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}

/**
 * A clock that moves only when told to: `advance(ms)` fires every timer that
 * falls due, in due-time order (ties in the order they were set), each seeing
 * `now()` equal to its due time. Timers sit in a binary heap that knows each
 * timer's place, so a cancel takes it out at once (a simulation cancels an
 * invocation's timeout for every invocation): O(log n) a timer, and the heap
 * holds only live ones.
 *
 * @example const clock = new ManualClock(0); clock.setTimer(10, f); clock.advance(10); // f ran
 */
export class ManualClock implements Clock {
  private current: number;
  private seq = 0;
  private readonly heap: ManualTimer[] = [];

  constructor(start = 0) {
    this.current = start;
  }

  now(): number {
    return this.current;
  }

  setTimer(ms: number, fire: () => void): Timer {
    const timer = new ManualTimer(this.current + Math.max(0, ms), this.seq++, fire, this);
    const heap = this.heap;
    timer.index = heap.length;
    heap.push(timer);
    this.up(timer.index);
    return timer;
  }

  /** Timers set and not yet fired or cancelled. */
  pending(): number {
    return this.heap.length;
  }

  /** The due time of the next live timer, if any. */
  nextDue(): number | undefined {
    return this.heap[0]?.at;
  }

  /** Moves time forward by `ms`, firing what falls due (timers set while firing included). */
  advance(ms: number): void {
    this.advanceTo(this.current + ms);
  }

  advanceTo(target: number): void {
    const heap = this.heap;
    for (;;) {
      const timer = heap[0];
      if (timer === undefined || timer.at > target) break;
      this.remove(timer);
      if (timer.at > this.current) this.current = timer.at;
      timer.fire();
    }
    if (target > this.current) this.current = target;
  }

  /** Takes a timer out of the heap (it fired or was cancelled). */
  remove(timer: ManualTimer): void {
    const heap = this.heap;
    const i = timer.index;
    timer.index = -1;
    const last = heap.pop()!;
    if (last === timer) return;
    heap[i] = last;
    last.index = i;
    if (i > 0 && earlier(last, heap[(i - 1) >> 1])) this.up(i);
    else this.down(i);
  }

  private up(i: number): void {
    const heap = this.heap;
    const timer = heap[i];
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const above = heap[parent];
      if (!earlier(timer, above)) break;
      heap[i] = above;
      above.index = i;
      i = parent;
    }
    heap[i] = timer;
    timer.index = i;
  }

  private down(i: number): void {
    const heap = this.heap;
    const n = heap.length;
    const timer = heap[i];
    for (;;) {
      const left = 2 * i + 1;
      if (left >= n) break;
      const right = left + 1;
      const child = right < n && earlier(heap[right], heap[left]) ? right : left;
      if (!earlier(heap[child], timer)) break;
      heap[i] = heap[child];
      heap[i].index = i;
      i = child;
    }
    heap[i] = timer;
    timer.index = i;
  }
}
