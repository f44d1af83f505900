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
 * Slowdown of an invocation = response time ÷ requested duration (with the
 * requested duration floored at 1 ms, so sub-millisecond requests do not
 * explode the ratio); the per-function figure is the geometric mean of its
 * invocations', and the run's is the geometric mean across functions.
 */
export interface RunAnalysis {
  invocations: number;
  completed: number;
  failed: number;
  failureRate: number;
  coldStartRate: number;
  startPaths: Record<string, number>;
  slowdown: number;
  slowdownPerFunction: { function: string; slowdown: number; invocations: number }[];
  latencyMs: Percentiles;
  latenessMs: Percentiles;
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

export function analyseRun(data: RunData): RunAnalysis {
  const measured: number[] = [];
  for (let i = 0; i < data.fn.length; i++) if (!data.warmup[i]) measured.push(i);
  const latencies: number[] = [];
  const lateness: number[] = [];
  const logSlowdownByFn = new Map<number, { sum: number; count: number }>();
  const startPaths: Record<string, number> = {};
  const errors: Record<string, number> = {};
  let failed = 0;
  let completed = 0;
  let known = 0;
  let firstSent = Infinity;
  let lastSent = -Infinity;
  let firstScheduled = Infinity;
  let lastScheduled = -Infinity;
  for (const i of measured) {
    const sent = data.sentMs[i];
    if (Number.isFinite(sent)) {
      lateness.push(sent - data.scheduledMs[i]);
      firstSent = Math.min(firstSent, sent);
      lastSent = Math.max(lastSent, sent);
    }
    firstScheduled = Math.min(firstScheduled, data.scheduledMs[i]);
    lastScheduled = Math.max(lastScheduled, data.scheduledMs[i]);
    const start = START_PATHS[data.start[i]];
    if (start) {
      startPaths[start] = (startPaths[start] ?? 0) + 1;
      known++;
    }
    if (outcomeOf(data, i) !== 'ok') {
      failed++;
      const code = data.errorCode[i] || `HTTP ${data.status[i]}`;
      errors[code] = (errors[code] ?? 0) + 1;
      continue;
    }
    completed++;
    const response = data.doneMs[i] - sent;
    latencies.push(response);
    const slowdown = response / Math.max(MIN_REQUESTED_MS, data.requestedDurationMs[i]);
    const entry = logSlowdownByFn.get(data.fn[i]) ?? { sum: 0, count: 0 };
    entry.sum += Math.log(Math.max(slowdown, 1e-9));
    entry.count++;
    logSlowdownByFn.set(data.fn[i], entry);
  }
  const slowdownPerFunction = [...logSlowdownByFn.entries()]
    .map(([fn, { sum, count }]) => ({
      function: data.meta.functionNames[fn] ?? String(fn),
      slowdown: Math.exp(sum / count),
      invocations: count,
    }))
    .sort((a, b) => a.slowdown - b.slowdown);
  const logMean =
    slowdownPerFunction.reduce((s, f) => s + Math.log(f.slowdown), 0) /
    (slowdownPerFunction.length || 1);
  const sentSpan = (lastSent - firstSent) / 1000;
  const scheduledSpan = (lastScheduled - firstScheduled) / 1000;
  return {
    invocations: measured.length,
    completed,
    failed,
    failureRate: measured.length ? failed / measured.length : 0,
    coldStartRate: known ? (startPaths.cold ?? 0) / known : NaN,
    startPaths,
    slowdown: slowdownPerFunction.length ? Math.exp(logMean) : NaN,
    slowdownPerFunction,
    latencyMs: percentiles(latencies),
    latenessMs: percentiles(lateness),
    offeredRate: scheduledSpan > 0 ? (measured.length - 1) / scheduledSpan : data.meta.offeredRate,
    achievedRate: sentSpan > 0 ? (lateness.length - 1) / sentSpan : NaN,
    nodeCpuUtilisation: data.meta.nodeCpuUtilisation,
    errors,
  };
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
      ['slowdown (geo. mean across functions)', a.slowdown],
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
      ['response time', ...p(a.latencyMs)],
      ['dispatch lateness', ...p(a.latenessMs)],
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
      latencies.push(data.doneMs[i] - data.sentMs[i]);
  latencies.sort((a, b) => a - b);
  const stride = Math.max(1, Math.floor(latencies.length / 2000));
  const values = latencies
    .filter((_, k) => k % stride === 0 || k === latencies.length - 1)
    .map((ms) => ({ ms: Math.max(ms, 0.01), p: 0 }));
  values.forEach((v, k) => (v.p = (k + 1) / values.length));
  return lineChart({
    title: 'Response time ECDF',
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
          ['slowdown (geometric mean across functions)', round(analysis.slowdown)],
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
          ['response time', ...p(analysis.latencyMs)],
          ['dispatch lateness', ...p(analysis.latenessMs)],
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
