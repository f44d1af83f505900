import type { ChartSpec } from '../report/index.ts';

/** What the sweep charts need of a point. */
export interface ChartPoint {
  size: number;
  offeredRate: number;
  slowdown: number;
  failureRate: number;
  nodeCpuUtilisation: number | null;
  functionsWithoutInvocations: number;
}

const WIDTH = 560;
const HEIGHT = 300;
const x = {
  field: 'load',
  type: 'quantitative',
  title: 'offered load (invocations/s)',
  scale: { zero: true },
} as const;

/** A caption line saying how many functions had no measured invocation at each size. */
function caption(points: readonly ChartPoint[]): string {
  const without = points.filter((p) => p.functionsWithoutInvocations > 0);
  if (without.length === 0) return 'every function had measured invocations';
  return `functions with no measured invocation (not in the slowdown): ${without
    .map((p) => `${p.functionsWithoutInvocations} of size ${p.size}`)
    .join(', ')}`;
}

/**
 * Slowdown against offered load from 0 on both axes, the threshold drawn as a
 * rule, and each point's failure rate as its colour (failures are in the
 * slowdown with their time to failure).
 */
export function slowdownChart(points: readonly ChartPoint[], threshold: number): ChartSpec {
  const values = points.map((p) => ({
    load: p.offeredRate,
    slowdown: p.slowdown,
    failures: p.failureRate * 100,
  }));
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: { text: `Slowdown vs offered load (threshold ${threshold})`, subtitle: caption(points) },
    width: WIDTH,
    height: HEIGHT,
    layer: [
      {
        data: { values },
        mark: { type: 'line', color: '#4c78a8' },
        encoding: {
          x,
          y: {
            field: 'slowdown',
            type: 'quantitative',
            title: 'slowdown (geometric mean, failures included)',
            scale: { zero: true },
          },
        },
      },
      {
        data: { values },
        mark: { type: 'point', filled: true, size: 80 },
        encoding: {
          x,
          y: { field: 'slowdown', type: 'quantitative' },
          color: {
            field: 'failures',
            type: 'quantitative',
            title: 'failed (%)',
            scale: { domainMin: 0, scheme: 'orangered' },
          },
        },
      },
      {
        data: { values: [{ threshold }] },
        mark: { type: 'rule', color: '#d62728', strokeDash: [6, 4] },
        encoding: { y: { field: 'threshold', type: 'quantitative' } },
      },
    ],
    config: { legend: { labelFontSize: 12, titleFontSize: 12 } },
  } as ChartSpec;
}

/** Failure rate against offered load, from 0, with the failure threshold drawn. */
export function failureChart(points: readonly ChartPoint[], failureThreshold: number): ChartSpec {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: `Failed invocations vs offered load (stop above ${failureThreshold * 100} %)`,
    width: WIDTH,
    height: HEIGHT,
    layer: [
      {
        data: {
          values: points.map((p) => ({ load: p.offeredRate, failures: p.failureRate * 100 })),
        },
        mark: { type: 'line', point: true, color: '#e45756' },
        encoding: {
          x,
          y: {
            field: 'failures',
            type: 'quantitative',
            title: 'failed (% of measured invocations)',
            scale: { zero: true },
          },
        },
      },
      {
        data: { values: [{ threshold: failureThreshold * 100 }] },
        mark: { type: 'rule', color: '#d62728', strokeDash: [6, 4] },
        encoding: { y: { field: 'threshold', type: 'quantitative' } },
      },
    ],
  } as ChartSpec;
}

/** CPU utilisation against offered load, 0–100 % of the cores; `source` says whose CPU it is. */
export function cpuChart(points: readonly ChartPoint[], source: string): ChartSpec {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: { text: 'CPU utilisation vs offered load', subtitle: source },
    width: WIDTH,
    height: HEIGHT,
    data: {
      values: points
        .filter((p) => p.nodeCpuUtilisation !== null)
        .map((p) => ({ load: p.offeredRate, cpu: (p.nodeCpuUtilisation ?? 0) * 100 })),
    },
    mark: { type: 'line', point: true },
    encoding: {
      x,
      y: {
        field: 'cpu',
        type: 'quantitative',
        title: 'CPU utilisation (% of all cores)',
        scale: { domain: [0, 100] },
      },
    },
  } as ChartSpec;
}
