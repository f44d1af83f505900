import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { lineChart, writeChart } from '../report/index.ts';
import { writeTrace } from './azure2019.ts';
import { type SampleMethod, type SampleResult, type WdScale, scaleLabel } from './sampler.ts';
import type { Trace } from './trace.ts';

/**
 * Writes `samples/<N>/` (each summary as an Azure-2019 trace), `wd.csv` and
 * `wd.json` (both WDs per size, and random sampling's when measured), and
 * `wd.svg`/`wd.png` (score against size for both methods).
 */
export async function writeSamples(
  out: string,
  trace: Trace,
  results: readonly SampleResult[],
  options: { png?: boolean; seed: number; trials: number; scale: WdScale; method?: SampleMethod },
): Promise<void> {
  for (const r of results)
    await writeTrace(path.join(out, 'samples', String(r.size)), {
      minutes: trace.minutes,
      functions: Array.from(r.functions, (f) => trace.functions[f]),
    });
  const rows = results.map((r) => ({
    size: r.size,
    invocations: r.invocations,
    loadShare: r.loadShare,
    invocationWd: r.invocationWd,
    resourceWd: r.resourceWd,
    score: r.score,
    randomInvocationWd: r.random?.invocationWd ?? null,
    randomResourceWd: r.random?.resourceWd ?? null,
    randomScore: r.random?.score ?? null,
  }));
  await writeFile(
    path.join(out, 'wd.json'),
    JSON.stringify(
      {
        seed: options.seed,
        trials: options.trials,
        scale: options.scale,
        scaleLabel: scaleLabel(options.scale),
        method: options.method ?? 'invitro',
        sizes: rows,
      },
      null,
      2,
    ) + '\n',
  );
  const header = Object.keys(rows[0] ?? {});
  const csv = rows.map((row) =>
    Object.values(row)
      .map((v) => (v === null ? '' : String(v)))
      .join(','),
  );
  await writeFile(path.join(out, 'wd.csv'), [header.join(','), ...csv].join('\n') + '\n');
  const values = rows.flatMap((row) => [
    {
      size: row.size,
      wd: row.score,
      method:
        options.method === 'search'
          ? 'search (stratified + swaps, nested)'
          : 'In-Vitro (best of trials, nested)',
    },
    ...(row.randomScore === null
      ? []
      : [{ size: row.size, wd: row.randomScore, method: 'random (median of 5)' }]),
  ]);
  await writeChart(
    lineChart({
      title: `Wasserstein distance to the whole trace vs summary size (${scaleLabel(options.scale)})`,
      values,
      x: { field: 'size', title: 'functions in summary' },
      y: { field: 'wd', title: 'mean WD (invocations + resources) / 2', scale: 'log' },
      series: { field: 'method', title: 'sampling' },
    }),
    out,
    'wd',
    { png: options.png ?? true },
  );
}
