import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { type ChartSpec, renderChart, table, writeHtmlReport } from '../report/index.ts';
import { type RunData, START_PATHS, analyseRun } from '../workload/index.ts';
import { coldStartStats } from './metrics.ts';

/**
 * The figures a keep-alive study compares, per policy, computed by this one
 * function from a simulated run and from a live one alike (the simulator
 * records its invocations as `petri load` does).
 */
export interface PolicyFigures {
  policy: string;
  source: 'sim' | 'live';
  /** Measured invocations (warm-up excluded). */
  invocations: number;
  coldStarts: number;
  coldStartRatio: number;
  /** Geometric mean across functions of response ÷ requested time, failures included. */
  slowdown: number;
  failureRate: number;
  /** Idle instances' memory × idle time over the measured window, GB·s (null: not told). */
  idleMemoryGbS: number | null;
  /** CPU-seconds the node used (null: not measured; the simulator has no CPU model). */
  cpuSeconds: number | null;
}

const COLD = START_PATHS.indexOf('cold');

/** 1 where the invocation got a cold start (its start path; a failed start counts too). */
export function coldOf(data: RunData): Uint8Array {
  const cold = new Uint8Array(data.fn.length);
  for (let i = 0; i < cold.length; i++) cold[i] = data.start[i] === COLD ? 1 : 0;
  return cold;
}

export function policyFigures(
  policy: string,
  source: PolicyFigures['source'],
  data: RunData,
  node: { idleMemoryGbS: number | null; cpuSeconds: number | null },
): PolicyFigures {
  const stats = coldStartStats(data.meta.functions, data.fn, coldOf(data), (i) => !data.warmup[i]);
  const analysis = analyseRun(data);
  return {
    policy,
    source,
    invocations: stats.invocations,
    coldStarts: stats.coldStarts,
    coldStartRatio: stats.coldStartRatio,
    slowdown: analysis.slowdown,
    failureRate: analysis.failureRate,
    idleMemoryGbS: node.idleMemoryGbS,
    cpuSeconds: node.cpuSeconds,
  };
}

/** A load run's figures, with what the node told about itself (run.json). */
export function liveFigures(data: RunData): PolicyFigures {
  return policyFigures(data.meta.keepAlivePolicy ?? 'node default', 'live', data, {
    idleMemoryGbS: data.meta.idleMemoryGbS,
    cpuSeconds: data.meta.nodeCpuSeconds,
  });
}

const HEADERS = [
  'policy',
  'source',
  'invocations',
  'cold starts',
  'cold-start ratio',
  'slowdown',
  'failure rate',
  'idle memory GB·s',
  'CPU-s',
] as const;

function row(f: PolicyFigures): (string | number)[] {
  return [
    f.policy,
    f.source,
    f.invocations,
    f.coldStarts,
    f.coldStartRatio,
    f.slowdown,
    f.failureRate,
    f.idleMemoryGbS ?? 'n/a',
    f.cpuSeconds ?? 'n/a',
  ];
}

export function formatPolicyComparison(rows: readonly PolicyFigures[], colour?: boolean): string {
  return table(HEADERS, rows.map(row), { title: 'keep-alive policies side by side', colour });
}

/** Cold-start ratio against idle memory-time, a point per policy and source. */
export function comparisonChart(rows: readonly PolicyFigures[]): ChartSpec {
  const values = rows
    .filter((r) => r.idleMemoryGbS !== null)
    .map((r) => ({
      label: `${r.policy} (${r.source})`,
      source: r.source,
      coldStartRatio: r.coldStartRatio,
      idleMemoryGbS: r.idleMemoryGbS,
    }));
  const x = {
    field: 'idleMemoryGbS',
    type: 'quantitative' as const,
    title: 'idle memory-time (GB·s)',
  };
  const y = { field: 'coldStartRatio', type: 'quantitative' as const, title: 'cold-start ratio' };
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: 'Cold-start ratio vs idle memory-time, by policy',
    width: 520,
    height: 320,
    data: { values },
    layer: [
      {
        mark: { type: 'point', filled: true, size: 120 },
        encoding: { x, y, color: { field: 'source', type: 'nominal' } },
      },
      {
        mark: { type: 'text', dx: 8, align: 'left' },
        encoding: { x, y, text: { field: 'label' } },
      },
    ],
  };
}

/** Writes policies.json, policies.csv and report.html (table and chart) to `dir`. */
export async function writePolicyComparison(
  dir: string,
  rows: readonly PolicyFigures[],
): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const files = {
    json: path.join(dir, 'policies.json'),
    csv: path.join(dir, 'policies.csv'),
    html: path.join(dir, 'report.html'),
  };
  await writeFile(files.json, JSON.stringify(rows, null, 2) + '\n');
  const csv = [HEADERS.join(','), ...rows.map((r) => row(r).join(','))];
  await writeFile(files.csv, csv.join('\n') + '\n');
  const { svg } = await renderChart(comparisonChart(rows));
  await writeHtmlReport(files.html, 'Petri keep-alive policies side by side', [
    { title: 'Policies', table: { headers: HEADERS, rows: rows.map(row) } },
    { title: 'Trade-off', svg },
  ]);
  return Object.values(files);
}
