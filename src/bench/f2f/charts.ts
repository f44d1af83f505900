import { writeChart, type ChartSpec } from '../../report/index.ts';

/** What the charts of `bench net --f2f --plots DIR` are drawn from. */
export interface ChartInput {
  sides: {
    side: string;
    forwardMbit: number[];
    reverseMbit: number[];
    rttUs: number[];
    ttfbMs: number[];
  }[];
  /** (d) per side and N: the aggregate of each round. */
  fan: { side: string; n: number; aggregateMbit: number }[];
  /** Shaped: the allocation of one pair member and of the (d) receiver, Mbit/s. */
  allocationMbit?: number;
  fanAllocationMbit?: number;
}

const SCHEMA = 'https://vega.github.io/schema/vega-lite/v5.json';
type Row = Record<string, number | string>;

function ecdf(values: number[], series: string): Row[] {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.map((value, i) => ({ value, fraction: (i + 1) / sorted.length, series }));
}

function ecdfChart(title: string, values: Row[], unit: string): ChartSpec {
  return {
    $schema: SCHEMA,
    title,
    width: 560,
    height: 300,
    data: { values },
    mark: { type: 'line', interpolate: 'step-after' },
    encoding: {
      x: { field: 'value', type: 'quantitative', title: unit, scale: { type: 'log' } },
      y: { field: 'fraction', type: 'quantitative', title: 'ECDF' },
      color: { field: 'series', type: 'nominal', title: null },
    },
  } as ChartSpec;
}

function throughputChart(input: ChartInput): ChartSpec {
  const values: Row[] = [];
  for (const s of input.sides) {
    for (const mbit of s.forwardMbit) values.push({ side: s.side, direction: 'forward', mbit });
    for (const mbit of s.reverseMbit) values.push({ side: s.side, direction: 'reverse', mbit });
  }
  const layers: object[] = [
    {
      mark: { type: 'point', filled: true, opacity: 0.6 },
      encoding: { xOffset: { field: 'direction' } },
    },
    {
      mark: { type: 'tick', thickness: 2, size: 18 },
      encoding: { y: { aggregate: 'median', field: 'mbit' }, xOffset: { field: 'direction' } },
    },
  ];
  if (input.allocationMbit !== undefined) {
    layers.push({
      data: { values: [{ mbit: input.allocationMbit }] },
      mark: { type: 'rule', strokeDash: [5, 4], color: 'gray' },
      encoding: { y: { field: 'mbit', type: 'quantitative' }, x: null, color: null },
    });
  }
  return {
    $schema: SCHEMA,
    title: '(a) member-to-member TCP throughput (iperf3; tick: median; dashed: allocation)',
    width: 560,
    height: 320,
    data: { values },
    encoding: {
      x: { field: 'side', type: 'nominal', title: null },
      y: { field: 'mbit', type: 'quantitative', title: 'Mbit/s (log)', scale: { type: 'log' } },
      color: { field: 'direction', type: 'nominal', title: null },
    },
    layer: layers,
  } as ChartSpec;
}

function fanChart(input: ChartInput): ChartSpec {
  const values: Row[] = input.fan.map((r) => ({ ...r, series: r.side }));
  if (input.fanAllocationMbit !== undefined) {
    for (const n of new Set(input.fan.map((r) => r.n))) {
      values.push({ n, aggregateMbit: input.fanAllocationMbit, series: 'receiver allocation' });
    }
  }
  return {
    $schema: SCHEMA,
    title: '(d) aggregate receive throughput at one member from N senders (median of rounds)',
    width: 560,
    height: 320,
    data: { values },
    mark: { type: 'line', point: true },
    encoding: {
      x: {
        field: 'n',
        type: 'quantitative',
        title: 'senders N (log)',
        scale: { type: 'log', base: 2, nice: false },
        axis: { values: [...new Set(input.fan.map((r) => r.n))] },
      },
      y: {
        field: 'aggregateMbit',
        aggregate: 'median',
        type: 'quantitative',
        title: 'aggregate Mbit/s (log)',
        scale: { type: 'log' },
      },
      color: { field: 'series', type: 'nominal', title: null },
      strokeDash: {
        condition: { test: "datum.series === 'receiver allocation'", value: [5, 4] },
        value: [1, 0],
      },
    },
  } as ChartSpec;
}

/** Writes the charts (SVG + PNG) into `dir`; returns the PNG paths. */
export async function writeF2fCharts(dir: string, input: ChartInput): Promise<string[]> {
  const specs: [string, ChartSpec][] = [
    ['f2f-throughput', throughputChart(input)],
    [
      'f2f-rtt',
      ecdfChart(
        '(b) round trip of a 1 KB message, Nagle off (each point: mean of 128 ping-pongs)',
        input.sides.flatMap((s) => ecdf(s.rttUs, s.side)),
        'µs (log)',
      ),
    ],
    [
      'f2f-ttfb',
      ecdfChart(
        '(c) connect to first byte',
        input.sides.flatMap((s) => ecdf(s.ttfbMs, s.side)),
        'ms (log)',
      ),
    ],
  ];
  if (input.fan.length > 0) specs.push(['f2f-senders', fanChart(input)]);
  const written: string[] = [];
  for (const [name, spec] of specs) {
    const out = await writeChart(spec, dir, name, { png: true });
    written.push(out.pngPath ?? out.svgPath);
  }
  return written;
}
