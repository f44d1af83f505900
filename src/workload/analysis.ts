import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { quantileSorted } from 'simple-statistics';
import {
  type ReportSection,
  type ChartSpec,
  lineChart,
  renderChart,
  svgToPng,
  table,
  writeHtmlReport,
} from '../report/index.ts';
import { type RunData, outcomeOf } from './results.ts';
import { START_PATHS } from './targets.ts';

/**
 * The paper's figures for one run. Warm-up invocations are excluded.
 * Response time runs from the invocation's scheduled time (the paper's), so a
 * wait in the load client counts; send-time latency (from when it left) is
 * reported beside it. Slowdown of an invocation = response time ÷ requested
 * duration (the requested duration floored at 1 ms, so sub-millisecond
 * requests do not explode the ratio). A failed invocation counts too, with
 * its time to failure; one that never answered, with the time until the run
 * stopped waiting (the drain's end). Per function the geometric mean of its
 * invocations', for the run the geometric mean across functions.
 */
export interface RunAnalysis {
  invocations: number;
  completed: number;
  failed: number;
  failureRate: number;
  coldStartRate: number;
  startPaths: Record<string, number>;
  /** Failures included, with their time to failure. */
  slowdown: number;
  /** Completed invocations only (the old, flattering figure), for comparison. */
  slowdownCompleted: number;
  slowdownPerFunction: { function: string; slowdown: number; invocations: number }[];
  /** Functions of the summary with no measured invocation (not in the slowdown). */
  functionsWithoutInvocations: number;
  /** Response time from the scheduled time, completed invocations. */
  latencyMs: Percentiles;
  /** From when the request left the client (after any wait for a connection). */
  sendLatencyMs: Percentiles;
  latenessMs: Percentiles;
  /** Share of sent invocations that left more than LATE_MS after their schedule. */
  lateShare: number;
  /** The run stayed open loop: lateShare ≤ OPEN_LOOP_MAX_LATE_SHARE. */
  openLoop: boolean;
  /** Requests that waited for a free connection. */
  delayedByConnections: number;
  /** The function's measured execution ÷ requested duration, completed invocations. */
  executionRatio: Percentiles;
  offeredRate: number;
  achievedRate: number;
  nodeCpuUtilisation: number | null;
  errors: Record<string, number>;
}

export interface Percentiles {
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

const MIN_REQUESTED_MS = 1;
/** An invocation that left later than this after its schedule is late. */
export const LATE_MS = 2;
/** Above this share of late invocations a run no longer counts as open loop. */
export const OPEN_LOOP_MAX_LATE_SHARE = 0.01;

export function analyseRun(data: RunData): RunAnalysis {
  const measured: number[] = [];
  for (let i = 0; i < data.fn.length; i++) if (!data.warmup[i]) measured.push(i);
  const latencies: number[] = [];
  const sendLatencies: number[] = [];
  const lateness: number[] = [];
  const executionRatios: number[] = [];
  const all = new SlowdownByFunction();
  const completedOnly = new SlowdownByFunction();
  const startPaths: Record<string, number> = {};
  const errors: Record<string, number> = {};
  const giveUpMs = data.meta.drainEndMs ?? maxFinite(data.doneMs);
  let failed = 0;
  let completed = 0;
  let known = 0;
  let late = 0;
  const sentSpan = new Span();
  const scheduledSpan = new Span();
  for (const i of measured) {
    const sent = data.sentMs[i];
    const scheduled = data.scheduledMs[i];
    if (Number.isFinite(sent)) {
      lateness.push(sent - scheduled);
      if (sent - scheduled > LATE_MS) late++;
      sentSpan.add(sent);
    }
    scheduledSpan.add(scheduled);
    const start = START_PATHS[data.start[i]];
    if (start) {
      startPaths[start] = (startPaths[start] ?? 0) + 1;
      known++;
    }
    const requested = Math.max(MIN_REQUESTED_MS, data.requestedDurationMs[i]);
    if (outcomeOf(data, i) !== 'ok') {
      failed++;
      const code = data.errorCode[i] || `HTTP ${data.status[i]}`;
      errors[code] = (errors[code] ?? 0) + 1;
      const done = Number.isFinite(data.doneMs[i]) ? data.doneMs[i] : giveUpMs;
      all.add(data.fn[i], (done - scheduled) / requested);
      continue;
    }
    completed++;
    const response = data.doneMs[i] - scheduled;
    latencies.push(response);
    sendLatencies.push(data.doneMs[i] - sent);
    if (Number.isFinite(data.actualDurationMs[i]))
      executionRatios.push(data.actualDurationMs[i] / requested);
    all.add(data.fn[i], response / requested);
    completedOnly.add(data.fn[i], response / requested);
  }
  const slowdownPerFunction = all.perFunction(data.meta.functionNames);
  const lateShare = lateness.length ? late / lateness.length : 0;
  return {
    invocations: measured.length,
    completed,
    failed,
    failureRate: measured.length ? failed / measured.length : 0,
    coldStartRate: known ? (startPaths.cold ?? 0) / known : NaN,
    startPaths,
    slowdown: all.overall(),
    slowdownCompleted: completedOnly.overall(),
    slowdownPerFunction,
    functionsWithoutInvocations: data.meta.functions - slowdownPerFunction.length,
    latencyMs: percentiles(latencies),
    sendLatencyMs: percentiles(sendLatencies),
    latenessMs: percentiles(lateness),
    lateShare,
    openLoop: lateShare <= OPEN_LOOP_MAX_LATE_SHARE,
    delayedByConnections: data.meta.delayedByConnections,
    executionRatio: percentiles(executionRatios),
    offeredRate:
      scheduledSpan.seconds > 0
        ? (measured.length - 1) / scheduledSpan.seconds
        : data.meta.offeredRate,
    achievedRate: sentSpan.seconds > 0 ? (lateness.length - 1) / sentSpan.seconds : NaN,
    nodeCpuUtilisation: data.meta.nodeCpuUtilisation,
    errors,
  };
}

/** Geometric means of slowdown per function, and across functions. */
class SlowdownByFunction {
  private readonly logs = new Map<number, { sum: number; count: number }>();

  add(fn: number, slowdown: number): void {
    const entry = this.logs.get(fn) ?? { sum: 0, count: 0 };
    entry.sum += Math.log(Math.max(slowdown, 1e-9));
    entry.count++;
    this.logs.set(fn, entry);
  }

  perFunction(names: readonly string[]): RunAnalysis['slowdownPerFunction'] {
    return [...this.logs.entries()]
      .map(([fn, { sum, count }]) => ({
        function: names[fn] ?? String(fn),
        slowdown: Math.exp(sum / count),
        invocations: count,
      }))
      .sort((a, b) => a.slowdown - b.slowdown);
  }

  overall(): number {
    if (this.logs.size === 0) return NaN;
    let sum = 0;
    for (const entry of this.logs.values()) sum += entry.sum / entry.count;
    return Math.exp(sum / this.logs.size);
  }
}

class Span {
  private first = Infinity;
  private last = -Infinity;

  add(ms: number): void {
    this.first = Math.min(this.first, ms);
    this.last = Math.max(this.last, ms);
  }

  get seconds(): number {
    return (this.last - this.first) / 1000;
  }
}

function maxFinite(values: Float64Array): number {
  let max = 0;
  for (const v of values) if (Number.isFinite(v)) max = Math.max(max, v);
  return max;
}

export function percentiles(values: number[]): Percentiles {
  if (values.length === 0) return { p50: NaN, p90: NaN, p99: NaN, p999: NaN, max: NaN };
  const sorted = Float64Array.from(values).sort();
  const q = (p: number): number => quantileSorted(sorted as unknown as number[], p);
  return { p50: q(0.5), p90: q(0.9), p99: q(0.99), p999: q(0.999), max: sorted[sorted.length - 1] };
}

/** Terminal tables for a run. */
export function formatAnalysis(a: RunAnalysis): string {
  const pct = (v: number): string => (Number.isFinite(v) ? `${(v * 100).toFixed(2)} %` : 'n/a');
  const summary = table(
    ['figure', 'value'],
    [
      ['invocations (measured)', a.invocations],
      ['completed', a.completed],
      ['failure rate', pct(a.failureRate)],
      ['cold-start rate', pct(a.coldStartRate)],
      ['slowdown (geo. mean across functions, failures included)', a.slowdown],
      ['slowdown, completed invocations only', a.slowdownCompleted],
      ['functions with no measured invocation', a.functionsWithoutInvocations],
      [`sent > ${LATE_MS} ms late`, pct(a.lateShare)],
      ['open loop (≤ 1 % late)', a.openLoop ? 'yes' : 'NO'],
      ['delayed waiting for a connection', a.delayedByConnections],
      ['offered rate (inv/s)', a.offeredRate],
      ['achieved send rate (inv/s)', a.achievedRate],
      ['node CPU utilisation', a.nodeCpuUtilisation === null ? 'n/a' : pct(a.nodeCpuUtilisation)],
    ],
    { title: 'Run' },
  );
  const p = (x: Percentiles): (string | number)[] => [x.p50, x.p90, x.p99, x.p999, x.max];
  const latency = table(
    ['ms', 'p50', 'p90', 'p99', 'p99.9', 'max'],
    [
      ['response time (from schedule)', ...p(a.latencyMs)],
      ['send-time latency', ...p(a.sendLatencyMs)],
      ['dispatch lateness', ...p(a.latenessMs)],
      ['measured ÷ requested execution', ...p(a.executionRatio)],
    ],
    { title: 'Latency' },
  );
  const starts = Object.entries(a.startPaths);
  const errors = Object.entries(a.errors);
  return [
    summary,
    latency,
    starts.length ? table(['start path', 'invocations'], starts, { title: 'Start paths' }) : '',
    errors.length ? table(['error', 'invocations'], errors, { title: 'Failures' }) : '',
  ]
    .filter(Boolean)
    .join('\n');
}

/** ECDF of response times (at most ~2000 points, so the SVG stays small). */
export function latencyEcdfChart(data: RunData): ChartSpec {
  const latencies: number[] = [];
  for (let i = 0; i < data.fn.length; i++)
    if (!data.warmup[i] && outcomeOf(data, i) === 'ok')
      latencies.push(data.doneMs[i] - data.scheduledMs[i]);
  latencies.sort((a, b) => a - b);
  const stride = Math.max(1, Math.floor(latencies.length / 2000));
  const values = latencies
    .filter((_, k) => k % stride === 0 || k === latencies.length - 1)
    .map((ms) => ({ ms: Math.max(ms, 0.01), p: 0 }));
  values.forEach((v, k) => (v.p = (k + 1) / values.length));
  return lineChart({
    title: 'Response time ECDF (from the scheduled time)',
    values,
    x: { field: 'ms', title: 'response time (ms)', scale: 'log' },
    y: { field: 'p', title: 'fraction of invocations' },
  });
}

export function slowdownChart(a: RunAnalysis): ChartSpec {
  return lineChart({
    title: 'Slowdown per function (geometric mean), sorted',
    values: a.slowdownPerFunction.map((f, k) => ({ rank: k + 1, slowdown: f.slowdown })),
    x: { field: 'rank', title: 'function (sorted by slowdown)' },
    y: { field: 'slowdown', title: 'slowdown (response ÷ requested)', scale: 'log' },
    points: true,
  });
}

/**
 * `petri report`: terminal tables plus `<dir>/report.html` with the charts
 * inline as SVG, and with `png` each chart as a PNG beside it
 * (`latency-ecdf.png`, `slowdown-per-function.png`).
 */
export async function writeReport(
  dir: string,
  data: RunData,
  options: { png?: boolean } = {},
): Promise<{ analysis: RunAnalysis; html: string; pngs: string[] }> {
  const analysis = analyseRun(data);
  const [ecdf, slowdown] = await Promise.all([
    renderChart(latencyEcdfChart(data)),
    renderChart(slowdownChart(analysis)),
  ]);
  const p = (x: Percentiles): (string | number)[] =>
    [x.p50, x.p90, x.p99, x.p999, x.max].map(round);
  const sections: ReportSection[] = [
    {
      title: 'Run',
      text: `${data.meta.target}, trace ${data.meta.trace}, ${data.meta.functions} functions, ${data.meta.minutes} min (+${data.meta.warmupMinutes} warm-up), ${data.meta.iat} inter-arrivals, seed ${data.meta.seed}, ${data.meta.cores} cores.`,
      table: {
        headers: ['figure', 'value'],
        rows: [
          ['invocations (measured)', analysis.invocations],
          ['failure rate', round(analysis.failureRate)],
          ['cold-start rate', round(analysis.coldStartRate)],
          [
            'slowdown (geometric mean across functions, failures included)',
            round(analysis.slowdown),
          ],
          ['slowdown, completed only', round(analysis.slowdownCompleted)],
          ['functions with no measured invocation', analysis.functionsWithoutInvocations],
          [`sent > ${LATE_MS} ms late`, round(analysis.lateShare)],
          ['open loop (≤ 1 % late)', analysis.openLoop ? 'yes' : 'NO'],
          ['delayed waiting for a connection', analysis.delayedByConnections],
          ['offered rate (inv/s)', round(analysis.offeredRate)],
          ['achieved send rate (inv/s)', round(analysis.achievedRate)],
          ['node CPU utilisation', round(analysis.nodeCpuUtilisation ?? NaN)],
        ],
      },
    },
    {
      title: 'Latency (ms)',
      table: {
        headers: ['', 'p50', 'p90', 'p99', 'p99.9', 'max'],
        rows: [
          ['response time (from schedule)', ...p(analysis.latencyMs)],
          ['send-time latency', ...p(analysis.sendLatencyMs)],
          ['dispatch lateness', ...p(analysis.latenessMs)],
          ['measured ÷ requested execution', ...p(analysis.executionRatio)],
        ],
      },
      svg: ecdf.svg,
    },
    { title: 'Slowdown per function', svg: slowdown.svg },
  ];
  const html = await writeHtmlReport(path.join(dir, 'report.html'), 'Petri load report', sections);
  const pngs: string[] = [];
  const charts = { 'latency-ecdf': ecdf.svg, 'slowdown-per-function': slowdown.svg };
  for (const [name, svg] of options.png ? Object.entries(charts) : []) {
    const file = path.join(dir, `${name}.png`);
    await writeFile(file, svgToPng(svg));
    pngs.push(file);
  }
  return { analysis, html, pngs };
}

function round(value: number): number | string {
  return Number.isFinite(value) ? Number(value.toPrecision(4)) : 'n/a';
}
