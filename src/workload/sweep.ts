import { readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { PetriError } from '../errors.ts';
import { type ReportSection, writeChart, writeHtmlReport } from '../report/index.ts';
import { analyseRun } from './analysis.ts';
import { runLoad } from './loadgen.ts';
import { loadTrace } from './preprocess.ts';
import type { IatDistribution } from './schedule.ts';
import { cpuChart, failureChart, slowdownChart } from './sweep-charts.ts';
import type { LoadTarget } from './targets.ts';

/** Where the CPU figure comes from, as the chart says. */
const CPU_SOURCE =
  "the node under test: its daemon + its instances' cgroups (load client excluded); n/a where the target does not report it";

export interface SweepOptions {
  samplesDir: string;
  out: string;
  makeTarget: () => LoadTarget;
  minutes: number;
  warmupMinutes: number;
  iat: IatDistribution;
  seed: number;
  minuteMs?: number;
  /** Stop after the first size whose slowdown exceeds this. */
  threshold: number;
  /** …or whose share of failed invocations exceeds this (0..1). */
  failureThreshold: number;
  onRun?: (size: number, point: SweepPoint | undefined) => void;
  /** CPU-seconds the node under test has used so far (read before and after each size); null: unknown. */
  cpuSeconds?: () => Promise<number | null>;
}

export interface SweepPoint {
  size: number;
  offeredRate: number;
  achievedRate: number;
  /** Failures included, with their time to failure. */
  slowdown: number;
  slowdownCompleted: number;
  p99LatencyMs: number;
  failureRate: number;
  coldStartRate: number;
  /** Share sent more than 2 ms late; the run is open loop at ≤ 1 %. */
  lateShare: number;
  openLoop: boolean;
  functionsWithoutInvocations: number;
  nodeCpuUtilisation: number | null;
  /** CPU-seconds the node used over this size's run (prepare to drain), when known. */
  cpuSeconds: number | null;
  /** Why the sweep stopped after this point, if it did. */
  stoppedBy?: 'slowdown' | 'failures';
}

/** Summary sizes found under `dir` (folders named by their size), ascending. */
export async function listSampleSizes(dir: string): Promise<number[]> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => {
    throw new PetriError('InvalidRequest', `cannot read samples directory ${dir}`);
  });
  const sizes = entries
    .filter((e) => e.isDirectory() && /^\d+$/.test(e.name))
    .map((e) => Number(e.name))
    .sort((a, b) => a - b);
  if (sizes.length === 0)
    throw new PetriError(
      'InvalidRequest',
      `${dir} has no summaries (folders named by size, e.g. 10/)`,
    );
  return sizes;
}

/**
 * Runs the nested summaries in increasing size (so offered load grows) until
 * slowdown passes the threshold, then charts slowdown and node CPU
 * utilisation against offered load.
 */
export async function runSweep(options: SweepOptions): Promise<SweepPoint[]> {
  const sizes = await listSampleSizes(options.samplesDir);
  const points: SweepPoint[] = [];
  for (const size of sizes) {
    options.onRun?.(size, undefined);
    const traceDir = path.join(options.samplesDir, String(size));
    const cpuBefore = (await options.cpuSeconds?.()) ?? null;
    const data = await runLoad(await loadTrace(traceDir), {
      target: options.makeTarget(),
      minutes: options.minutes,
      warmupMinutes: options.warmupMinutes,
      iat: options.iat,
      seed: options.seed,
      minuteMs: options.minuteMs,
      out: path.join(options.out, 'runs', String(size)),
      traceLabel: traceDir,
      label: `sweep-${size}`,
    });
    const cpuAfter = (await options.cpuSeconds?.()) ?? null;
    const a = analyseRun(data);
    const point: SweepPoint = {
      size,
      offeredRate: a.offeredRate,
      achievedRate: a.achievedRate,
      slowdown: a.slowdown,
      slowdownCompleted: a.slowdownCompleted,
      p99LatencyMs: a.latencyMs.p99,
      failureRate: a.failureRate,
      coldStartRate: a.coldStartRate,
      lateShare: a.lateShare,
      openLoop: a.openLoop,
      functionsWithoutInvocations: a.functionsWithoutInvocations,
      nodeCpuUtilisation: a.nodeCpuUtilisation,
      cpuSeconds: cpuBefore === null || cpuAfter === null ? null : cpuAfter - cpuBefore,
      stoppedBy: stopRule(a.slowdown, a.failureRate, options),
    };
    points.push(point);
    options.onRun?.(size, point);
    if (point.stoppedBy) break;
  }
  await writeSweep(options.out, points, options);
  return points;
}

/**
 * The sweep's stop rule: slowdown past its threshold (a run with no
 * completed or failed invocation has none, and stops too), or failures past theirs.
 */
export function stopRule(
  slowdown: number,
  failureRate: number,
  limits: { threshold: number; failureThreshold: number },
): SweepPoint['stoppedBy'] {
  if (!(slowdown <= limits.threshold)) return 'slowdown';
  if (failureRate > limits.failureThreshold) return 'failures';
  return undefined;
}

async function writeSweep(
  out: string,
  points: SweepPoint[],
  limits: { threshold: number; failureThreshold: number },
): Promise<void> {
  const { threshold, failureThreshold } = limits;
  await writeFile(
    path.join(out, 'sweep.json'),
    JSON.stringify({ threshold, failureThreshold, points }, null, 2) + '\n',
  );
  const columns: (keyof SweepPoint)[] = [
    'size',
    'offeredRate',
    'achievedRate',
    'slowdown',
    'slowdownCompleted',
    'p99LatencyMs',
    'failureRate',
    'coldStartRate',
    'lateShare',
    'openLoop',
    'functionsWithoutInvocations',
    'nodeCpuUtilisation',
    'stoppedBy',
  ];
  const csv = [columns.join(','), ...points.map((p) => columns.map((c) => p[c] ?? '').join(','))];
  await writeFile(path.join(out, 'sweep.csv'), csv.join('\n') + '\n');
  const slowdown = await writeChart(slowdownChart(points, threshold), out, 'sweep-slowdown', {
    png: true,
  });
  const failures = await writeChart(failureChart(points, failureThreshold), out, 'sweep-failures', {
    png: true,
  });
  const cpu = await writeChart(cpuChart(points, CPU_SOURCE), out, 'sweep-cpu', { png: true });
  const sections: ReportSection[] = [
    {
      title: 'Sweep',
      table: {
        headers: [
          'size',
          'offered inv/s',
          'slowdown',
          'completed only',
          'p99 ms',
          'failures',
          'late > 2 ms',
          'open loop',
          'CPU',
          'stopped by',
        ],
        rows: points.map((p) => [
          p.size,
          p.offeredRate.toFixed(2),
          p.slowdown.toFixed(3),
          p.slowdownCompleted.toFixed(3),
          p.p99LatencyMs.toFixed(1),
          p.failureRate.toFixed(4),
          p.lateShare.toFixed(4),
          p.openLoop ? 'yes' : 'NO',
          p.nodeCpuUtilisation === null ? 'n/a' : p.nodeCpuUtilisation.toFixed(3),
          p.stoppedBy ?? '',
        ]),
      },
    },
    { title: 'Slowdown', svg: slowdown.svg },
    { title: 'Failures', svg: failures.svg },
    { title: 'CPU utilisation', svg: cpu.svg },
  ];
  await writeHtmlReport(path.join(out, 'report.html'), 'Petri load sweep', sections);
}
