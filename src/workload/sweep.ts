import { readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { PetriError } from '../errors.ts';
import { type ReportSection, lineChart, writeChart, writeHtmlReport } from '../report/index.ts';
import { analyseRun } from './analysis.ts';
import { runLoad } from './loadgen.ts';
import { loadTrace } from './preprocess.ts';
import type { IatDistribution } from './schedule.ts';
import type { LoadTarget } from './targets.ts';

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
  onRun?: (size: number, point: SweepPoint | undefined) => void;
  /** CPU-seconds the node under test has used so far (read before and after each size); null: unknown. */
  cpuSeconds?: () => Promise<number | null>;
}

export interface SweepPoint {
  size: number;
  offeredRate: number;
  achievedRate: number;
  slowdown: number;
  p99LatencyMs: number;
  failureRate: number;
  coldStartRate: number;
  nodeCpuUtilisation: number | null;
  /** CPU-seconds the node used over this size's run (prepare to drain), when known. */
  cpuSeconds: number | null;
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
      p99LatencyMs: a.latencyMs.p99,
      failureRate: a.failureRate,
      coldStartRate: a.coldStartRate,
      nodeCpuUtilisation: a.nodeCpuUtilisation,
      cpuSeconds: cpuBefore === null || cpuAfter === null ? null : cpuAfter - cpuBefore,
    };
    points.push(point);
    options.onRun?.(size, point);
    if (!(a.slowdown <= options.threshold)) break;
  }
  await writeSweep(options.out, points, options.threshold);
  return points;
}

async function writeSweep(out: string, points: SweepPoint[], threshold: number): Promise<void> {
  await writeFile(
    path.join(out, 'sweep.json'),
    JSON.stringify({ threshold, points }, null, 2) + '\n',
  );
  const columns = Object.keys(points[0] ?? {}) as (keyof SweepPoint)[];
  const csv = [columns.join(','), ...points.map((p) => columns.map((c) => p[c] ?? '').join(','))];
  await writeFile(path.join(out, 'sweep.csv'), csv.join('\n') + '\n');
  const slowdown = await writeChart(
    lineChart({
      title: `Slowdown vs offered load (threshold ${threshold})`,
      values: points.map((p) => ({ load: p.offeredRate, slowdown: p.slowdown })),
      x: { field: 'load', title: 'offered load (invocations/s)' },
      y: { field: 'slowdown', title: 'slowdown (geometric mean)' },
      points: true,
    }),
    out,
    'sweep-slowdown',
    { png: true },
  );
  const cpu = await writeChart(
    lineChart({
      title: 'Node CPU utilisation vs offered load',
      values: points.map((p) => ({
        load: p.offeredRate,
        cpu: (p.nodeCpuUtilisation ?? NaN) * 100,
      })),
      x: { field: 'load', title: 'offered load (invocations/s)' },
      y: { field: 'cpu', title: 'node CPU utilisation (%)' },
      points: true,
    }),
    out,
    'sweep-cpu',
    { png: true },
  );
  const sections: ReportSection[] = [
    {
      title: 'Sweep',
      table: {
        headers: ['size', 'offered inv/s', 'slowdown', 'p99 ms', 'failures', 'CPU'],
        rows: points.map((p) => [
          p.size,
          p.offeredRate.toFixed(2),
          p.slowdown.toFixed(3),
          p.p99LatencyMs.toFixed(1),
          p.failureRate.toFixed(4),
          p.nodeCpuUtilisation === null ? 'n/a' : p.nodeCpuUtilisation.toFixed(3),
        ]),
      },
    },
    { title: 'Slowdown', svg: slowdown.svg },
    { title: 'CPU utilisation', svg: cpu.svg },
  ];
  await writeHtmlReport(path.join(out, 'report.html'), 'Petri load sweep', sections);
}
