import path from 'node:path';
import { type CsvOptions, RowError, expectHeader, numberAt, readCsv, textAt } from './csv.ts';
import type { DurationStats, MemoryStats, TraceFunction } from './trace.ts';
import { functionKey } from './trace.ts';

/**
 * The Azure Functions 2021 trace: one row per invocation,
 * `app,func,end_timestamp,duration` in seconds since the trace began
 * (DESIGN §13). We turn it into the 2019 shape: counts per minute (binned by
 * start = end − duration) and exact duration percentiles per function. It has
 * no memory column, so every function gets `memoryMb`.
 */
const HEADER = ['app', 'func', 'end_timestamp', 'duration'] as const;

export interface Azure2021Window {
  /** Seconds since the start of the trace. */
  startSec: number;
  minutes: number;
  memoryMb: number;
}

export async function readAzure2021(
  file: string,
  window: Azure2021Window,
  options: CsvOptions,
): Promise<TraceFunction[]> {
  const byFunction = new Map<
    string,
    { app: string; func: string; durationsMs: number[]; counts: Uint32Array }
  >();
  const endSec = window.startSec + window.minutes * 60;
  await readCsv(
    file,
    (fields) => expectHeader(fields, HEADER),
    (fields) => {
      const end = numberAt(fields, 2, HEADER);
      const duration = numberAt(fields, 3, HEADER);
      const start = end - duration;
      if (start < window.startSec || start >= endSec) return;
      const app = textAt(fields, 0, HEADER);
      const func = textAt(fields, 1, HEADER);
      if (duration > 24 * 3600) throw new RowError(4, `duration ${duration} s is over a day`);
      const key = functionKey(app, func);
      let entry = byFunction.get(key);
      if (!entry) {
        entry = { app, func, durationsMs: [], counts: new Uint32Array(window.minutes) };
        byFunction.set(key, entry);
      }
      entry.counts[Math.floor((start - window.startSec) / 60)]++;
      entry.durationsMs.push(duration * 1000);
    },
    options,
  );
  const memory = flatMemory(window.memoryMb);
  return [...byFunction.values()].map((entry) => ({
    owner: entry.app,
    app: entry.app,
    func: entry.func,
    trigger: 'unknown',
    counts: entry.counts,
    duration: durationStats(entry.durationsMs),
    memory,
  }));
}

/** True when the file's first line is the 2021 trace's header. */
export function is2021Header(firstLine: string): boolean {
  return firstLine.trim().split(',').join(',') === HEADER.join(',');
}

export function describe2021(file: string): string {
  return `Azure 2021 per-invocation trace ${path.basename(file)}`;
}

function durationStats(values: number[]): DurationStats {
  const sorted = Float64Array.from(values).sort();
  const at = (q: number): number =>
    sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  let sum = 0;
  for (const v of sorted) sum += v;
  return {
    average: sum / sorted.length,
    count: sorted.length,
    minimum: sorted[0],
    maximum: sorted[sorted.length - 1],
    p0: sorted[0],
    p1: at(0.01),
    p25: at(0.25),
    p50: at(0.5),
    p75: at(0.75),
    p99: at(0.99),
    p100: sorted[sorted.length - 1],
  };
}

function flatMemory(mb: number): MemoryStats {
  return {
    sampleCount: 1,
    average: mb,
    p1: mb,
    p5: mb,
    p25: mb,
    p50: mb,
    p75: mb,
    p95: mb,
    p99: mb,
    p100: mb,
  };
}
