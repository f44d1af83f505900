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

/** What the policy comparison charts need of a point. */
export interface PolicyChartPoint extends ChartPoint {
  policy: string;
  cpuSeconds: number | null;
}

/** Caption of a policy chart: functions without measured invocations, per policy and size. */
function policyCaption(points: readonly PolicyChartPoint[]): string {
  const without = points.filter((p) => p.functionsWithoutInvocations > 0);
  if (without.length === 0) return 'every function had measured invocations';
  const sizes = [
    ...new Set(without.map((p) => `${p.functionsWithoutInvocations} of size ${p.size}`)),
  ];
  return `functions with no measured invocation (not in the slowdown): ${sizes.join(', ')}`;
}

/**
 * One line per autoscaling policy against offered load (In-Vitro Fig. 2 or
 * 3), both axes from 0; each point's size is its failure rate, so failures
 * are drawn; a threshold rule when given.
 */
function policyChart(
  points: readonly PolicyChartPoint[],
  y: { field: 'slowdown' | 'cpu'; title: string },
  title: string,
  threshold?: number,
): ChartSpec {
  const values = points
    .filter((p) => y.field === 'slowdown' || p.cpuSeconds !== null)
    .map((p) => ({
      policy: p.policy,
      load: p.offeredRate,
      slowdown: p.slowdown,
      cpu: p.cpuSeconds ?? 0,
      failures: p.failureRate * 100,
    }));
  const color = { field: 'policy', type: 'nominal', title: 'autoscaling policy' } as const;
  const yAxis = { field: y.field, type: 'quantitative', title: y.title, scale: { zero: true } };
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: { text: title, subtitle: policyCaption(points) },
    width: WIDTH,
    height: HEIGHT,
    layer: [
      { data: { values }, mark: { type: 'line' }, encoding: { x, y: yAxis, color } },
      {
        data: { values },
        mark: { type: 'point', filled: true, opacity: 0.8 },
        encoding: {
          x,
          y: { field: y.field, type: 'quantitative' },
          color,
          size: {
            field: 'failures',
            type: 'quantitative',
            title: 'failed (%)',
            scale: { domain: [0, 100], range: [30, 400] },
          },
        },
      },
      ...(threshold === undefined
        ? []
        : [
            {
              data: { values: [{ threshold }] },
              mark: { type: 'rule', color: '#d62728', strokeDash: [6, 4] },
              encoding: { y: { field: 'threshold', type: 'quantitative' } },
            },
          ]),
    ],
    config: { legend: { labelFontSize: 12, titleFontSize: 12 } },
  } as ChartSpec;
}

/** Which kind of policy a comparison is between. */
export type PolicyKind = 'autoscaling' | 'keep-alive';

/** Slowdown per policy against offered load (In-Vitro Fig. 2); the threshold drawn when it is on the scale. */
export function policySlowdownChart(
  points: readonly PolicyChartPoint[],
  threshold: number,
  kind: PolicyKind = 'autoscaling',
): ChartSpec {
  const highest = Math.max(0, ...points.map((p) => p.slowdown));
  const drawn = threshold <= highest * 2 ? threshold : undefined;
  return policyChart(
    points,
    { field: 'slowdown', title: 'slowdown (geometric mean, failures included)' },
    drawn === undefined
      ? `Slowdown vs offered load, by ${kind} policy (threshold ${threshold}, off the scale)`
      : `Slowdown vs offered load, by ${kind} policy (threshold ${threshold})`,
    drawn,
  );
}

/** CPU-seconds the node used per policy against offered load (In-Vitro Fig. 3). */
export function policyCpuChart(
  points: readonly PolicyChartPoint[],
  kind: PolicyKind = 'autoscaling',
): ChartSpec {
  return policyChart(
    points,
    { field: 'cpu', title: "CPU-seconds used by the node (instances' cgroups + daemon)" },
    `CPU-seconds vs offered load, by ${kind} policy`,
  );
}
