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
  cancelled = false;

  constructor(
    readonly at: number,
    readonly seq: number,
    readonly fire: () => void,
    private readonly onCancel: () => void,
  ) {}

  cancel(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    this.onCancel();
  }
}

function earlier(a: ManualTimer, b: ManualTimer): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}

/**
 * A clock that moves only when told to: `advance(ms)` fires every timer that
 * falls due, in due-time order (ties in the order they were set), each seeing
 * `now()` equal to its due time. Timers sit in a binary heap, so a simulation
 * with many instances stays O(log n) a timer.
 *
 * @example const clock = new ManualClock(0); clock.setTimer(10, f); clock.advance(10); // f ran
 */
export class ManualClock implements Clock {
  private current: number;
  private seq = 0;
  private live = 0;
  private readonly heap: ManualTimer[] = [];

  constructor(start = 0) {
    this.current = start;
  }

  now(): number {
    return this.current;
  }

  setTimer(ms: number, fire: () => void): Timer {
    const timer = new ManualTimer(this.current + Math.max(0, ms), this.seq++, fire, this.onCancel);
    this.push(timer);
    this.live += 1;
    return timer;
  }

  private readonly onCancel = (): void => {
    this.live -= 1;
    this.compactIfMostlyCancelled();
  };

  /** Timers set and not yet fired or cancelled. */
  pending(): number {
    return this.live;
  }

  /** The due time of the next live timer, if any. */
  nextDue(): number | undefined {
    this.dropCancelled();
    return this.heap[0]?.at;
  }

  /** Moves time forward by `ms`, firing what falls due (timers set while firing included). */
  advance(ms: number): void {
    this.advanceTo(this.current + ms);
  }

  advanceTo(target: number): void {
    for (;;) {
      this.dropCancelled();
      const timer = this.heap[0];
      if (!timer || timer.at > target) break;
      this.pop();
      timer.cancelled = true;
      this.live -= 1;
      this.current = Math.max(this.current, timer.at);
      timer.fire();
    }
    this.current = Math.max(this.current, target);
  }

  /**
   * Cancelled timers stay in the heap until they reach its top; a simulation
   * that re-arms a keep-alive per invocation would pile up millions of them
   * (and keep what their callbacks hold alive), so rebuild when they dominate.
   */
  private compactIfMostlyCancelled(): void {
    const heap = this.heap;
    if (heap.length < 1024 || heap.length < 4 * this.live) return;
    const kept = heap.filter((timer) => !timer.cancelled);
    heap.length = 0;
    for (const timer of kept) this.push(timer);
  }

  private dropCancelled(): void {
    while (this.heap.length > 0 && this.heap[0].cancelled) this.pop();
  }

  private push(timer: ManualTimer): void {
    const heap = this.heap;
    heap.push(timer);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!earlier(heap[i], heap[parent])) break;
      [heap[i], heap[parent]] = [heap[parent], heap[i]];
      i = parent;
    }
  }

  private pop(): void {
    const heap = this.heap;
    const last = heap.pop()!;
    if (heap.length === 0) return;
    heap[0] = last;
    let i = 0;
    for (;;) {
      const left = 2 * i + 1;
      const right = left + 1;
      let smallest = i;
      if (left < heap.length && earlier(heap[left], heap[smallest])) smallest = left;
      if (right < heap.length && earlier(heap[right], heap[smallest])) smallest = right;
      if (smallest === i) return;
      [heap[i], heap[smallest]] = [heap[smallest], heap[i]];
      i = smallest;
    }
  }
}
