import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { type ReportSection, writeChart, writeHtmlReport } from '../report/index.ts';
import { policyCpuChart, policySlowdownChart } from './sweep-charts.ts';
import { type SweepOptions, type SweepPoint, runSweep } from './sweep.ts';
import type { LoadTarget } from './targets.ts';

export interface PolicySweepOptions extends Omit<SweepOptions, 'makeTarget' | 'out' | 'onRun'> {
  out: string;
  /** Policies to compare, in order (each a full sweep of the same summaries). */
  policies: string[];
  /** What the policies decide (titles only); default autoscaling. */
  kind?: 'autoscaling' | 'keep-alive';
  /** A target whose deploys ask for `policy`. */
  makeTarget: (policy: string) => LoadTarget;
  onRun?: (policy: string, size: number, point: SweepPoint | undefined) => void;
}

export interface PolicySweepResult {
  policy: string;
  points: SweepPoint[];
}

/**
 * In-Vitro's autoscaling comparison (§4.4, Fig. 2 and 3): the same nested
 * summaries swept once per policy, each into `<out>/<policy>/`, then
 * slowdown and CPU-seconds against offered load with a line per policy.
 */
export async function runPolicySweep(options: PolicySweepOptions): Promise<PolicySweepResult[]> {
  const results: PolicySweepResult[] = [];
  for (const policy of options.policies) {
    const out = path.join(options.out, policy);
    await mkdir(out, { recursive: true });
    const points = await runSweep({
      ...options,
      out,
      makeTarget: () => options.makeTarget(policy),
      onRun: (size, point) => options.onRun?.(policy, size, point),
    });
    results.push({ policy, points });
  }
  await writePolicyComparison(options.out, results, options.threshold, options.kind);
  return results;
}

/** One row per policy and size: what the comparison's charts and table show. */
export function comparisonRows(results: PolicySweepResult[]) {
  return results.flatMap(({ policy, points }) =>
    points.map((p) => ({
      policy,
      size: p.size,
      offeredRate: p.offeredRate,
      slowdown: p.slowdown,
      cpuSeconds: p.cpuSeconds,
      coldStartRate: p.coldStartRate,
      failureRate: p.failureRate,
      p99LatencyMs: p.p99LatencyMs,
    })),
  );
}

/**
 * Writes the comparison of `results` into `out`: policies.json, policies.csv,
 * the two charts (slowdown and CPU-seconds against offered load, a line per
 * policy) and report.html. Also used to merge policies swept separately.
 */
export async function writePolicyComparison(
  out: string,
  results: PolicySweepResult[],
  threshold: number,
  kind: 'autoscaling' | 'keep-alive' = 'autoscaling',
): Promise<void> {
  const rows = comparisonRows(results);
  await writeFile(
    path.join(out, 'policies.json'),
    JSON.stringify({ threshold, policies: results }, null, 2) + '\n',
  );
  const columns = Object.keys(rows[0] ?? {}) as (keyof (typeof rows)[number])[];
  const csv = [columns.join(','), ...rows.map((r) => columns.map((c) => r[c] ?? '').join(','))];
  await writeFile(path.join(out, 'policies.csv'), csv.join('\n') + '\n');
  const points = results.flatMap(({ policy, points }) => points.map((p) => ({ ...p, policy })));
  const slowdown = await writeChart(
    policySlowdownChart(points, threshold, kind),
    out,
    'policies-slowdown',
    { png: true },
  );
  const cpu = await writeChart(policyCpuChart(points, kind), out, 'policies-cpu', { png: true });
  const sections: ReportSection[] = [
    {
      title: kind === 'autoscaling' ? 'Autoscaling policies' : 'Keep-alive policies',
      table: {
        headers: [
          'policy',
          'size',
          'offered inv/s',
          'slowdown',
          'CPU-s',
          'cold starts',
          'failures',
        ],
        rows: rows.map((r) => [
          r.policy,
          r.size,
          r.offeredRate.toFixed(2),
          r.slowdown.toFixed(3),
          r.cpuSeconds === null ? 'n/a' : r.cpuSeconds.toFixed(1),
          r.coldStartRate.toFixed(4),
          r.failureRate.toFixed(4),
        ]),
      },
    },
    { title: 'Slowdown (In-Vitro Fig. 2)', svg: slowdown.svg },
    { title: 'CPU-seconds (In-Vitro Fig. 3)', svg: cpu.svg },
  ];
  await writeHtmlReport(path.join(out, 'report.html'), `Petri ${kind} comparison`, sections);
}
