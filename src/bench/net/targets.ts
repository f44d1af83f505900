import type { ModeResult } from '../net.ts';
import { TBF_GOODPUT, allocationMbit } from './parts.ts';

/**
 * The targets (benchmarks, not tests):
 *  - shaped bandwidth within 10 % of its allocation at every memory size;
 *  - (c) isolation on: every function keeps ≥ 90 % of its allocation while
 *    the allocations fit the link (N × allocation ≤ link rate);
 *  - (c) isolation off: the paper's pattern — once the link is full, the
 *    aggregate stays flat and so each function's share falls about 1/N.
 *
 * The link is the emulated one (`--link-mbit`, a TBF on the bridge); without
 * it, the largest aggregate measured with isolation off in (c).
 */
export interface Targets {
  bandwidthWithin10pct?: boolean;
  /** Link rate, Mbit/s. */
  linkMbit?: number;
  linkEmulated?: boolean;
  concurrencyOnKeeps90pct?: boolean;
  /** "N direction" of the rows whose allocations fit the link, and so were checked. */
  concurrencyOnChecked?: string[];
  concurrencyOffPattern?: boolean;
  /** Smallest N whose aggregate reaches 80 % of the link's goodput, per direction. */
  offSaturatesAt?: Record<string, number>;
  /** Per N and direction with isolation off: aggregate and mean × N / first mean. */
  concurrencyOffDetail?: {
    n: number;
    direction: string;
    aggregateOverLinkGoodput: number;
    /** Link wire rate (or iperf3 sum) / link rate (or its goodput). */
    meanOverFirst: number;
  }[];
}

/** How far the aggregate may stray from the link's goodput and still be "flat". */
const FLAT = 0.2;

export function evaluateTargets(
  results: ModeResult[],
  concurrencyMemory: number,
  linkMbit: number,
): Targets {
  const on = results.find((r) => r.mode === 'on');
  const off = results.find((r) => r.mode === 'off');
  const targets: Targets = {};
  if (on?.bandwidth) {
    targets.bandwidthWithin10pct = on.bandwidth.every(
      (row) => Math.abs(row.upRatio - 1) <= 0.1 && Math.abs(row.downRatio - 1) <= 0.1,
    );
  }
  const link: Record<string, number> = {};
  if (linkMbit > 0) {
    link.up = link.down = linkMbit;
    targets.linkMbit = linkMbit;
    targets.linkEmulated = true;
  } else {
    for (const row of off?.concurrency ?? []) {
      link[row.direction] = Math.max(link[row.direction] ?? 0, row.aggregateMbit / TBF_GOODPUT);
    }
    const links = Object.values(link);
    if (links.length > 0) targets.linkMbit = Math.round(Math.min(...links));
    targets.linkEmulated = false;
  }
  if (on?.concurrency) {
    const allocation = allocationMbit(concurrencyMemory);
    const fits = on.concurrency.filter(
      (row) => link[row.direction] === undefined || row.n * allocation <= link[row.direction],
    );
    targets.concurrencyOnChecked = fits.map((row) => `${row.n} ${row.direction}`);
    targets.concurrencyOnKeeps90pct = fits.every((row) => row.minRatio >= 0.9);
  }
  if (off?.concurrency) {
    targets.offSaturatesAt = {};
    targets.concurrencyOffDetail = [];
    let pattern = true;
    for (const direction of ['up', 'down']) {
      const rows = off.concurrency.filter((row) => row.direction === direction);
      if (rows.length === 0) continue;
      // On the link's own counters (wire bytes vs the wire rate) when it is emulated;
      // otherwise the iperf3 sum against the goodput the link can give.
      const carried = (row: (typeof rows)[number]) => row.linkWireMbit ?? row.aggregateMbit;
      const goodput = rows.every((row) => row.linkWireMbit !== undefined)
        ? link[direction]
        : TBF_GOODPUT * link[direction];
      const saturated = rows.filter((row) => carried(row) >= (1 - FLAT) * goodput);
      const first = saturated.length > 0 ? Math.min(...saturated.map((row) => row.n)) : Infinity;
      targets.offSaturatesAt[direction] = first;
      for (const row of rows) {
        targets.concurrencyOffDetail.push({
          n: row.n,
          direction,
          aggregateOverLinkGoodput: Number((carried(row) / goodput).toFixed(3)),
          meanOverFirst: Number((row.meanMbit / rows[0].meanMbit).toFixed(3)),
        });
      }
      // Saturated early (by a quarter of the largest N), then flat within ±20 %
      // of the link's goodput, so the per-function share is ≈ link / N.
      const past = rows.filter((row) => row.n >= first);
      const flat = past.every((row) => Math.abs(carried(row) / goodput - 1) <= FLAT);
      const largest = Math.max(...rows.map((row) => row.n));
      pattern &&= flat && past.length >= 2 && first <= largest / 4;
    }
    targets.concurrencyOffPattern = pattern;
  }
  return targets;
}
