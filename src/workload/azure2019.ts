import { mkdir, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { type CsvOptions, RowError, expectHeader, numberAt, readCsv, textAt } from './csv.ts';
import type { DurationStats, MemoryStats, Trace, TraceFunction } from './trace.ts';

/**
 * Readers and writer for the Azure Functions 2019 trace (DESIGN §13):
 * per-day files of invocation counts per minute, duration percentiles per
 * function and memory percentiles per app.
 */
export const FILES = {
  invocations: (day: number) => `invocations_per_function_md.anon.d${pad(day)}.csv`,
  durations: (day: number) => `function_durations_percentiles.anon.d${pad(day)}.csv`,
  memory: (day: number) => `app_memory_percentiles.anon.d${pad(day)}.csv`,
};

const INVOCATION_HEADER = ['HashOwner', 'HashApp', 'HashFunction', 'Trigger'] as const;
const DURATION_HEADER = [
  'HashOwner',
  'HashApp',
  'HashFunction',
  'Average',
  'Count',
  'Minimum',
  'Maximum',
  'percentile_Average_0',
  'percentile_Average_1',
  'percentile_Average_25',
  'percentile_Average_50',
  'percentile_Average_75',
  'percentile_Average_99',
  'percentile_Average_100',
] as const;
const MEMORY_HEADER = [
  'HashOwner',
  'HashApp',
  'SampleCount',
  'AverageAllocatedMb',
  'AverageAllocatedMb_pct1',
  'AverageAllocatedMb_pct5',
  'AverageAllocatedMb_pct25',
  'AverageAllocatedMb_pct50',
  'AverageAllocatedMb_pct75',
  'AverageAllocatedMb_pct95',
  'AverageAllocatedMb_pct99',
  'AverageAllocatedMb_pct100',
] as const;

export const MINUTES_PER_DAY = 1440;

function pad(day: number): string {
  return String(day).padStart(2, '0');
}

export interface InvocationRow {
  owner: string;
  app: string;
  func: string;
  trigger: string;
  counts: Uint32Array;
}

export interface DurationRow {
  app: string;
  func: string;
  stats: DurationStats;
}

export interface MemoryRow {
  owner: string;
  app: string;
  stats: MemoryStats;
}

/** Which days have which files in a trace directory. */
export async function listDays(
  dir: string,
): Promise<{ invocations: number[]; durations: number[]; memory: number[] }> {
  const names = await readdir(dir);
  const days = (prefix: string): number[] =>
    names
      .map((n) => new RegExp(`^${prefix}\\.anon\\.d(\\d+)\\.csv$`).exec(n))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => Number(m[1]))
      .sort((a, b) => a - b);
  return {
    invocations: days('invocations_per_function_md'),
    durations: days('function_durations_percentiles'),
    memory: days('app_memory_percentiles'),
  };
}

/**
 * Reads one day's invocation counts, keeping minutes [from, to) of the day
 * (0-based; `to` = Infinity keeps every minute column). Rows come in file order.
 */
export async function readInvocations(
  file: string,
  from: number,
  to: number,
  options: CsvOptions,
): Promise<InvocationRow[]> {
  const rows: InvocationRow[] = [];
  let header: string[] = [];
  await readCsv(
    file,
    (fields) => {
      expectHeader(fields, INVOCATION_HEADER);
      header = fields;
      const minutes = fields.length - INVOCATION_HEADER.length;
      if (to === Infinity) to = minutes;
      if (minutes < to)
        throw new RowError(
          fields.length,
          `the file has ${minutes} minute columns, the window needs ${to}`,
        );
      fields.slice(INVOCATION_HEADER.length).forEach((name, i) => {
        if (name.trim() !== String(i + 1))
          throw new RowError(i + 5, `expected minute column "${i + 1}", found "${name}"`);
      });
    },
    (fields) => {
      const counts = new Uint32Array(to - from);
      for (let m = from; m < to; m++) {
        const index = INVOCATION_HEADER.length + m;
        const value = numberAt(fields, index, header);
        if (!Number.isInteger(value))
          throw new RowError(index + 1, `column "${header[index]}": expected an integer count`);
        counts[m - from] = value;
      }
      rows.push({
        owner: textAt(fields, 0, header),
        app: textAt(fields, 1, header),
        func: textAt(fields, 2, header),
        trigger: textAt(fields, 3, header),
        counts,
      });
    },
    options,
  );
  return rows;
}

export async function readDurations(file: string, options: CsvOptions): Promise<DurationRow[]> {
  const rows: DurationRow[] = [];
  await readCsv(
    file,
    (fields) => expectHeader(fields, DURATION_HEADER),
    (fields) => {
      const n = (i: number): number => numberAt(fields, i, DURATION_HEADER);
      rows.push({
        app: textAt(fields, 1, DURATION_HEADER),
        func: textAt(fields, 2, DURATION_HEADER),
        stats: {
          average: n(3),
          count: n(4),
          minimum: n(5),
          maximum: n(6),
          p0: n(7),
          p1: n(8),
          p25: n(9),
          p50: n(10),
          p75: n(11),
          p99: n(12),
          p100: n(13),
        },
      });
    },
    options,
  );
  return rows;
}

export async function readMemory(file: string, options: CsvOptions): Promise<MemoryRow[]> {
  const rows: MemoryRow[] = [];
  await readCsv(
    file,
    (fields) => expectHeader(fields, MEMORY_HEADER),
    (fields) => {
      const n = (i: number): number => numberAt(fields, i, MEMORY_HEADER);
      rows.push({
        owner: textAt(fields, 0, MEMORY_HEADER),
        app: textAt(fields, 1, MEMORY_HEADER),
        stats: {
          sampleCount: n(2),
          average: n(3),
          p1: n(4),
          p5: n(5),
          p25: n(6),
          p50: n(7),
          p75: n(8),
          p95: n(9),
          p99: n(10),
          p100: n(11),
        },
      });
    },
    options,
  );
  return rows;
}

/** Divides every memory figure by `k`: In-Vitro splits an app's memory evenly across its functions. */
export function scaleMemory(stats: MemoryStats, factor: number): MemoryStats {
  return {
    sampleCount: stats.sampleCount,
    average: stats.average * factor,
    p1: stats.p1 * factor,
    p5: stats.p5 * factor,
    p25: stats.p25 * factor,
    p50: stats.p50 * factor,
    p75: stats.p75 * factor,
    p95: stats.p95 * factor,
    p99: stats.p99 * factor,
    p100: stats.p100 * factor,
  };
}

/**
 * Writes a trace as one Azure-2019 day (d01) with minute columns 1..N. An
 * app's memory row is the sum of its functions' shares, so reading it back
 * and splitting evenly gives each function its memory again.
 */
export async function writeTrace(dir: string, trace: Trace): Promise<void> {
  await mkdir(dir, { recursive: true });
  const minuteColumns = Array.from({ length: trace.minutes }, (_, i) => String(i + 1));
  const invocations = [[...INVOCATION_HEADER, ...minuteColumns].join(',')];
  const durations = [DURATION_HEADER.join(',')];
  for (const fn of trace.functions) {
    invocations.push([fn.owner, fn.app, fn.func, fn.trigger, ...fn.counts].join(','));
    const d = fn.duration;
    durations.push(
      [
        fn.owner,
        fn.app,
        fn.func,
        num(d.average),
        d.count,
        num(d.minimum),
        num(d.maximum),
        num(d.p0),
        num(d.p1),
        num(d.p25),
        num(d.p50),
        num(d.p75),
        num(d.p99),
        num(d.p100),
      ].join(','),
    );
  }
  const memory = [MEMORY_HEADER.join(',')];
  for (const [app, fns] of groupByApp(trace.functions)) {
    const m = scaleMemory(fns[0].memory, fns.length);
    memory.push(
      [
        fns[0].owner,
        app,
        m.sampleCount,
        num(m.average),
        num(m.p1),
        num(m.p5),
        num(m.p25),
        num(m.p50),
        num(m.p75),
        num(m.p95),
        num(m.p99),
        num(m.p100),
      ].join(','),
    );
  }
  await writeFile(path.join(dir, FILES.invocations(1)), invocations.join('\n') + '\n');
  await writeFile(path.join(dir, FILES.durations(1)), durations.join('\n') + '\n');
  await writeFile(path.join(dir, FILES.memory(1)), memory.join('\n') + '\n');
}

export function groupByApp(functions: readonly TraceFunction[]): Map<string, TraceFunction[]> {
  const byApp = new Map<string, TraceFunction[]>();
  for (const fn of functions) {
    const list = byApp.get(fn.app);
    if (list) list.push(fn);
    else byApp.set(fn.app, [fn]);
  }
  return byApp;
}

/** Numbers in files: enough digits to round-trip what matters, no float noise. */
function num(value: number): string {
  return String(Math.round(value * 1000) / 1000);
}
