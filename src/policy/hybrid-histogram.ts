import type { InstanceView, KeepAlivePolicy, NodeView, PolicyEvent } from './types.ts';
import { lruVictims } from './victims.ts';

export interface HybridHistogramOptions {
  /** Keep-alive (ms) while a function's histogram is not representative; a spec's `keepAlive.ms` wins. */
  fallbackMs: number;
  /** Width of one histogram bin (default 1 minute). */
  binMs?: number;
  /** Bins; binMs × bins is the histogram's range (default 240: 4 hours). */
  bins?: number;
  /** Percentile of idle times to pre-warm at (default 5). */
  headPercentile?: number;
  /** Percentile of idle times to keep alive until (default 99). */
  tailPercentile?: number;
  /** Safety margin on both windows (default 0.1: pre-warm 10 % early, keep 10 % longer). */
  margin?: number;
  /** Coefficient of variation of the bin counts above which the histogram is trusted (default 2). */
  cvThreshold?: number;
  /** Idle times needed before the histogram is trusted (default 10). */
  minSamples?: number;
  /** Share of idle times beyond the range above which the forecast takes over (default 0.5). */
  outOfRangeShare?: number;
  /** Margin around a forecast idle time (default 0.15). */
  forecastMargin?: number;
}

/** How a function's windows were decided. */
export type HybridMode = 'fallback' | 'histogram' | 'forecast';

/** Pre-warm and keep-alive windows, both measured from the end of an invocation. */
export interface HybridWindows {
  mode: HybridMode;
  /** Stop the instance when idle and start one this long after the invocation ended; 0: none. */
  prewarmMs: number;
  /** How long an instance stays idle (after the pre-warm, when there is one). */
  keepAliveMs: number;
}

/** One function's idle-time record. */
class IdleTimes {
  readonly counts: Uint32Array;
  inRange = 0;
  /** Σ count² over the bins, kept as counts grow, so the spread costs no pass over them. */
  squares = 0;
  outOfRange = 0;
  /** Exponentially smoothed idle time beyond the range (ms), for the forecast. */
  forecastMs: number | undefined;
  lastEnd: number | undefined;
  /** An invocation ended and nothing arrived since. */
  open = false;
  cached: HybridWindows | undefined;

  constructor(bins: number) {
    this.counts = new Uint32Array(bins);
  }
}

/**
 * The hybrid histogram policy of Shahrad et al., "Serverless in the Wild"
 * (ATC'20). Per function, a histogram of idle times (time from an
 * invocation's end to the next arrival) in 1-minute bins over 4 hours:
 *
 * - representative (enough samples, bin counts' coefficient of variation
 *   above the threshold): unload after each invocation, pre-warm at the 5th
 *   percentile minus 10 %, keep alive until the 99th percentile plus 10 %
 *   (no unloading when the head is the first bin);
 * - not representative yet: a fixed keep-alive;
 * - most idle times beyond the range: a time-series forecast of the next
 *   idle time (exponential smoothing here, where the paper uses ARIMA),
 *   pre-warm before it and keep alive after it by the forecast margin.
 */
export class HybridHistogramKeepAlive implements KeepAlivePolicy {
  readonly name = 'hybrid-histogram';
  private readonly functions = new Map<string, IdleTimes>();
  private readonly o: Required<HybridHistogramOptions>;

  constructor(options: HybridHistogramOptions) {
    this.o = {
      binMs: 60_000,
      bins: 240,
      headPercentile: 5,
      tailPercentile: 99,
      margin: 0.1,
      cvThreshold: 2,
      minSamples: 10,
      outOfRangeShare: 0.5,
      forecastMargin: 0.15,
      ...options,
    };
  }

  observe(event: PolicyEvent): void {
    const times = this.idleTimes(event.functionName);
    if (event.kind === 'finished') {
      times.lastEnd = event.at;
      times.open = true;
    } else if (event.kind === 'arrival' && times.open && times.lastEnd !== undefined) {
      times.open = false;
      this.record(times, Math.max(0, event.at - times.lastEnd));
    }
  }

  keepAliveMs(instance: InstanceView): number {
    const w = this.windowsOf(instance.functionName, instance.keepAliveMs);
    // An instance started ahead has waited out the pre-warm window already.
    if (instance.invocations === 0) return w.keepAliveMs;
    return w.prewarmMs > 0 ? 0 : w.keepAliveMs;
  }

  prewarmAt(functionName: string, node: NodeView): number | undefined {
    const w = this.windowsOf(functionName, undefined);
    return w.prewarmMs > 0 ? node.now + w.prewarmMs : undefined;
  }

  /** Least recently used idle instances first, as the paper's platform does. */
  victims(needMb: number, node: NodeView): string[] {
    return lruVictims(needMb, node);
  }

  /** The function's current windows (`fallbackMs` overrides the node's fallback). */
  windowsOf(functionName: string, fallbackMs: number | undefined): HybridWindows {
    const times = this.functions.get(functionName);
    const fallback = fallbackMs ?? this.o.fallbackMs;
    if (!times) return { mode: 'fallback', prewarmMs: 0, keepAliveMs: fallback };
    times.cached ??= this.decide(times);
    const w = times.cached;
    // A copy only when the fallback differs (the function's own keep-alive): none per release.
    return w.mode === 'fallback' && w.keepAliveMs !== fallback
      ? { ...w, keepAliveMs: fallback }
      : w;
  }

  private idleTimes(name: string): IdleTimes {
    let times = this.functions.get(name);
    if (!times) {
      times = new IdleTimes(this.o.bins);
      this.functions.set(name, times);
    }
    return times;
  }

  private record(times: IdleTimes, idleMs: number): void {
    times.cached = undefined;
    const bin = Math.floor(idleMs / this.o.binMs);
    if (bin < this.o.bins) {
      times.squares += 2 * times.counts[bin] + 1;
      times.counts[bin] += 1;
      times.inRange += 1;
      return;
    }
    times.outOfRange += 1;
    times.forecastMs =
      times.forecastMs === undefined ? idleMs : 0.5 * times.forecastMs + 0.5 * idleMs;
  }

  private decide(times: IdleTimes): HybridWindows {
    const o = this.o;
    const total = times.inRange + times.outOfRange;
    const fallback: HybridWindows = { mode: 'fallback', prewarmMs: 0, keepAliveMs: o.fallbackMs };
    if (total < o.minSamples) return fallback;
    if (times.outOfRange / total > o.outOfRangeShare && times.forecastMs !== undefined) {
      const f = times.forecastMs;
      return {
        mode: 'forecast',
        prewarmMs: Math.round(f * (1 - o.forecastMargin)),
        keepAliveMs: Math.round(2 * f * o.forecastMargin),
      };
    }
    if (spread(times.inRange, times.squares, times.counts.length) <= o.cvThreshold) return fallback;
    const head = percentileBin(times.counts, times.inRange, o.headPercentile);
    const tail = percentileBin(times.counts, times.inRange, o.tailPercentile);
    const prewarmMs = Math.round(head * o.binMs * (1 - o.margin));
    const endMs = Math.round((tail + 1) * o.binMs * (1 + o.margin));
    return { mode: 'histogram', prewarmMs, keepAliveMs: endMs - prewarmMs };
  }
}

/** The first bin at which the cumulative count reaches `p` percent of `total`. */
export function percentileBin(counts: Uint32Array, total: number, p: number): number {
  const target = (p / 100) * total;
  let cumulative = 0;
  for (let i = 0; i < counts.length; i++) {
    cumulative += counts[i];
    if (cumulative >= target && cumulative > 0) return i;
  }
  return counts.length - 1;
}

/** Standard deviation over mean of the bin counts (0 for an empty histogram). */
export function coefficientOfVariation(counts: Uint32Array): number {
  let sum = 0;
  for (const c of counts) sum += c;
  if (sum === 0) return 0;
  const mean = sum / counts.length;
  let squares = 0;
  for (const c of counts) squares += (c - mean) ** 2;
  return Math.sqrt(squares / counts.length) / mean;
}

/** `coefficientOfVariation` from the sum and the sum of squares of `n` counts. */
function spread(sum: number, squares: number, n: number): number {
  if (sum === 0) return 0;
  const mean = sum / n;
  return Math.sqrt(Math.max(0, squares / n - mean * mean)) / mean;
}
