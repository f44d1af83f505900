import { writeChart, type ChartSpec } from '../../report/index.ts';
import type { ModeResult } from '../net.ts';
import { allocationMbit } from './parts.ts';

type Point = Record<string, number | string>;

/** A line chart with points; one line per series; optional log y. */
function chart(options: {
  title: string;
  values: Point[];
  x: string;
  xTitle: string;
  y: string;
  yTitle: string;
  series: string;
  logY?: boolean;
  logX?: boolean;
  dashed?: string[];
}): ChartSpec {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: options.title,
    width: 560,
    height: 320,
    data: { values: options.values },
    mark: { type: 'line', point: true },
    encoding: {
      x: {
        field: options.x,
        type: 'quantitative',
        title: options.xTitle,
        scale: options.logX ? { type: 'log', nice: false } : { zero: false },
      },
      y: {
        field: options.y,
        type: 'quantitative',
        title: options.yTitle,
        scale: options.logY ? { type: 'log' } : { zero: true },
      },
      color: { field: options.series, type: 'nominal', title: null },
      ...(options.dashed
        ? {
            strokeDash: {
              condition: {
                test: `indexof(${JSON.stringify(options.dashed)}, datum.${options.series}) >= 0`,
                value: [5, 4],
              },
              value: [1, 0],
            },
          }
        : {}),
    },
  } as ChartSpec;
}

/** Writes the benchmark's charts (SVG + PNG) into `dir`; returns the PNG paths. */
export async function writeNetCharts(
  dir: string,
  results: ModeResult[],
  sizes: number[],
): Promise<string[]> {
  const specs: [string, ChartSpec][] = [];
  const allocation = sizes.map((memoryMb) => ({
    memoryMb,
    mbit: allocationMbit(memoryMb),
    series: 'allocation',
  }));

  const bandwidth: Point[] = [...allocation];
  for (const r of results) {
    for (const row of r.bandwidth ?? []) {
      bandwidth.push({ memoryMb: row.memoryMb, mbit: row.upMbit, series: `${r.mode}: upload` });
      bandwidth.push({ memoryMb: row.memoryMb, mbit: row.downMbit, series: `${r.mode}: download` });
    }
  }
  if (bandwidth.length > allocation.length) {
    specs.push([
      'net-bandwidth-vs-memory',
      chart({
        title: '(a) iperf3 bandwidth per function vs memory (isolation on / off)',
        values: bandwidth,
        x: 'memoryMb',
        xTitle: 'memory (MB)',
        y: 'mbit',
        yTitle: 'Mbit/s (log)',
        series: 'series',
        logY: true,
        dashed: ['allocation'],
      }),
    ]);
  }

  const s3: Point[] = [];
  for (const r of results) {
    for (const row of r.s3 ?? []) {
      s3.push({ memoryMb: row.memoryMb, s: row.downloadS, series: `${r.mode}: get` });
      s3.push({ memoryMb: row.memoryMb, s: row.uploadS, series: `${r.mode}: put` });
    }
  }
  if (s3.length > 0) {
    specs.push([
      'net-s3-time-vs-memory',
      chart({
        title: '(b) 10 MB object through the S3 API: time vs memory',
        values: s3,
        x: 'memoryMb',
        xTitle: 'memory (MB)',
        y: 's',
        yTitle: 'seconds (log)',
        series: 'series',
        logY: true,
      }),
    ]);
  }

  const perFunction: Point[] = [];
  const aggregate: Point[] = [];
  for (const r of results) {
    for (const row of r.concurrency ?? []) {
      const series = `${r.mode}: ${row.direction === 'up' ? 'upload' : 'download'}`;
      perFunction.push({ n: row.n, mbit: row.meanMbit, series: `${series} mean` });
      perFunction.push({ n: row.n, mbit: row.minMbit, series: `${series} min` });
      aggregate.push({ n: row.n, mbit: row.aggregateMbit, series });
      if (row.linkWireMbit !== undefined) {
        aggregate.push({ n: row.n, mbit: row.linkWireMbit, series: `${series} (link counters)` });
      }
      if (r.mode === 'on' && row.direction === 'up') {
        perFunction.push({ n: row.n, mbit: row.allocationMbit, series: 'allocation' });
        aggregate.push({ n: row.n, mbit: row.allocationMbit * row.n, series: 'N × allocation' });
      }
    }
  }
  if (perFunction.length > 0) {
    specs.push([
      'net-concurrency-per-function',
      chart({
        title: '(c) per-function bandwidth vs N concurrent functions',
        values: perFunction,
        x: 'n',
        xTitle: 'concurrent functions N (log)',
        y: 'mbit',
        yTitle: 'Mbit/s per function (log)',
        series: 'series',
        logX: true,
        logY: true,
        dashed: ['allocation'],
      }),
    ]);
    specs.push([
      'net-concurrency-aggregate',
      chart({
        title: '(c) aggregate bandwidth vs N concurrent functions',
        values: aggregate,
        x: 'n',
        xTitle: 'concurrent functions N (log)',
        y: 'mbit',
        yTitle: 'aggregate Mbit/s',
        series: 'series',
        logX: true,
        dashed: ['N × allocation'],
      }),
    ]);
  }

  const cost: Point[] = [];
  for (const r of results) {
    for (const row of r.cost ?? []) {
      cost.push({
        time: row.time100S,
        cost: row.costUsd,
        memoryMb: row.memoryMb,
        series: `isolation ${r.mode}`,
      });
    }
  }
  if (cost.length > 0) {
    specs.push(['net-cost-map', costMap(cost)]);
  }

  const written: string[] = [];
  for (const [name, spec] of specs) {
    const { pngPath } = await writeChart(spec, dir, name, { png: true });
    if (pngPath) written.push(pngPath);
  }
  return written;
}

/** (d) response time vs cost, one point per memory size, labelled with the size. */
function costMap(values: Point[]): ChartSpec {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: '(d) fetching 100 × 10 MB: response time vs cost per memory size',
    width: 560,
    height: 320,
    data: { values },
    encoding: {
      x: {
        field: 'time',
        type: 'quantitative',
        title: 'response time (s, log)',
        scale: { type: 'log', nice: false },
      },
      y: { field: 'cost', type: 'quantitative', title: 'cost (USD)', scale: { zero: true } },
      color: { field: 'series', type: 'nominal', title: null },
    },
    layer: [
      { mark: { type: 'line', point: true }, encoding: { order: { field: 'memoryMb' } } },
      {
        mark: { type: 'text', dx: 6, dy: -8, align: 'left', fontSize: 10 },
        encoding: { text: { field: 'memoryMb', type: 'quantitative' } },
      },
    ],
  } as ChartSpec;
}
