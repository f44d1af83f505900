import type { ModeResult } from '../net.ts';
import { allocationMbit } from './parts.ts';

/**
 * The targets (benchmarks, not tests):
 *  - shaped bandwidth within 10 % of its allocation at every memory size;
 *  - (c) isolation on: every function keeps ≥ 90 % of its allocation while
 *    the allocations fit the link;
 *  - (c) isolation off: the paper's pattern — per-function share falls about
 *    1/N once the link is full, and the aggregate stays flat.
 *
 * "The link" here is what the node's bridge path carries at most: the
 * largest aggregate measured with isolation off in (c), per direction.
 */
export interface Targets {
  bandwidthWithin10pct?: boolean;
  /** Link capacity, Mbit/s (the smaller direction's). */
  linkMbit?: number;
  concurrencyOnKeeps90pct?: boolean;
  /** N values (per direction) whose allocations fit the link and so were checked. */
  concurrencyOnChecked?: string[];
  concurrencyOffPattern?: boolean;
  /** For N past saturation: aggregate / link and mean × N / link. */
  concurrencyOffDetail?: { n: number; direction: string; aggregateOverLink: number }[];
  /** Smallest N whose aggregate reaches 80 % of the link, per direction. */
  offSaturatesAt?: Record<string, number>;
}

const FLAT = 0.2;

export function evaluateTargets(results: ModeResult[], concurrencyMemory: number): Targets {
  const on = results.find((r) => r.mode === 'on');
  const off = results.find((r) => r.mode === 'off');
  const targets: Targets = {};
  if (on?.bandwidth) {
    targets.bandwidthWithin10pct = on.bandwidth.every(
      (row) => Math.abs(row.upRatio - 1) <= 0.1 && Math.abs(row.downRatio - 1) <= 0.1,
    );
  }
  const link: Record<string, number> = {};
  for (const row of off?.concurrency ?? []) {
    link[row.direction] = Math.max(link[row.direction] ?? 0, row.aggregateMbit);
  }
  const links = Object.values(link);
  if (links.length > 0) targets.linkMbit = Math.min(...links);
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
      const full = link[direction];
      const saturated = rows.filter((row) => row.aggregateMbit >= 0.8 * full);
      const first = Math.min(...saturated.map((row) => row.n));
      targets.offSaturatesAt[direction] = first;
      const past = rows.filter((row) => row.n >= first);
      for (const row of past) {
        targets.concurrencyOffDetail.push({
          n: row.n,
          direction,
          aggregateOverLink: Number((row.aggregateMbit / full).toFixed(3)),
        });
      }
      // Flat aggregate past saturation (so the per-function share is ~ link / N),
      // reached at a small N, and more than one point to show it.
      const flat = past.every((row) => row.aggregateMbit >= (1 - FLAT) * full);
      const largest = Math.max(...rows.map((row) => row.n));
      pattern &&= flat && past.length >= 2 && first <= largest / 4;
    }
    targets.concurrencyOffPattern = pattern;
  }
  return targets;
}
