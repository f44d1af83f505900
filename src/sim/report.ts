import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { type ChartSpec, renderChart, table, writeHtmlReport } from '../report/index.ts';
import type { PolicyResult } from './simulate.ts';

/** The headline figures of each policy, one row each (terminal, CSV and HTML). */
const HEADERS = [
  'policy',
  'invocations',
  'cold starts',
  'cold-start ratio',
  'slowdown',
  'wasted GB·s',
  'mean instances',
  'queued',
  'mean queued ms',
  'failed',
  'pre-warm started',
  'pre-warm hits',
  'wall s',
] as const;

function row(r: PolicyResult): (string | number)[] {
  return [
    r.policy,
    r.invocations,
    r.coldStarts,
    r.coldStartRatio,
    r.slowdown,
    r.wastedMemoryGbS,
    r.meanInstances,
    r.queued,
    r.meanQueuedMs,
    r.failed,
    r.prewarmStarted,
    r.prewarmHits,
    r.wallSeconds,
  ];
}

export function formatSimResults(results: readonly PolicyResult[], colour?: boolean): string {
  return table(HEADERS, results.map(row), { title: 'keep-alive policies (simulated)', colour });
}

/** `sim.json` without the per-function lists, which go to per-function.csv. */
export function simSummary(
  results: readonly PolicyResult[],
): Omit<PolicyResult, 'perFunction' | 'data'>[] {
  return results.map(({ perFunction: _perFunction, data: _data, ...summary }) => summary);
}

/** The trade-off plot of the papers: cold-start ratio against wasted memory-time, a point per policy. */
export function tradeOffChart(results: readonly PolicyResult[]): ChartSpec {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: 'Cold-start ratio vs wasted memory-time',
    width: 520,
    height: 320,
    data: {
      values: results.map((r) => ({
        policy: r.policy,
        coldStartRatio: r.coldStartRatio,
        wastedMemoryGbS: r.wastedMemoryGbS,
      })),
    },
    layer: [
      {
        mark: { type: 'point', filled: true, size: 120 },
        encoding: {
          x: { field: 'wastedMemoryGbS', type: 'quantitative', title: 'wasted memory (GB·s)' },
          y: { field: 'coldStartRatio', type: 'quantitative', title: 'cold-start ratio' },
          color: { field: 'policy', type: 'nominal' },
        },
      },
      {
        mark: { type: 'text', dx: 8, align: 'left' },
        encoding: {
          x: { field: 'wastedMemoryGbS', type: 'quantitative' },
          y: { field: 'coldStartRatio', type: 'quantitative' },
          text: { field: 'policy' },
        },
      },
    ],
  };
}

/** Writes sim.json (an entry per policy), run.json (how it ran), policies.csv, per-function.csv and report.html (with the chart) to `dir`. */
export async function writeSimResults(
  dir: string,
  results: readonly PolicyResult[],
  meta: Record<string, unknown>,
): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const files = {
    json: path.join(dir, 'sim.json'),
    meta: path.join(dir, 'run.json'),
    csv: path.join(dir, 'policies.csv'),
    perFunction: path.join(dir, 'per-function.csv'),
    html: path.join(dir, 'report.html'),
  };
  await writeFile(files.json, JSON.stringify(simSummary(results), null, 2) + '\n');
  await writeFile(files.meta, JSON.stringify(meta, null, 2) + '\n');
  const csvRows = [HEADERS.join(','), ...results.map((r) => row(r).join(','))];
  await writeFile(files.csv, csvRows.join('\n') + '\n');
  const perFunction = ['policy,function,invocations,coldStarts,coldStartRatio'];
  for (const r of results)
    for (const f of r.perFunction)
      if (f.invocations > 0)
        perFunction.push(
          `${r.policy},${f.name},${f.invocations},${f.coldStarts},${f.coldStartRatio}`,
        );
  await writeFile(files.perFunction, perFunction.join('\n') + '\n');
  const { svg } = await renderChart(tradeOffChart(results));
  await writeHtmlReport(files.html, 'petri sim: keep-alive policies', [
    {
      title: 'Run',
      text: Object.entries(meta)
        .map(([k, v]) => `${k}: ${String(v)}`)
        .join('; '),
    },
    { title: 'Policies', table: { headers: HEADERS, rows: results.map(row) } },
    { title: 'Trade-off', svg },
  ]);
  return Object.values(files);
}
