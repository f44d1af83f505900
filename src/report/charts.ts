import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Resvg } from '@resvg/resvg-js';
import { View, parse } from 'vega';
import { type TopLevelSpec, compile } from 'vega-lite';

/** A Vega-Lite v5 specification (https://vega.github.io/vega-lite/). */
export type ChartSpec = TopLevelSpec;

/**
 * Renders a Vega-Lite spec to SVG, headless (no browser, no canvas).
 *
 * @example const { svg } = await renderChart({ data: { values }, mark: 'line', encoding: {...} })
 */
export async function renderChart(spec: ChartSpec): Promise<{ svg: string }> {
  const vegaSpec = compile({ background: 'white', ...spec } as ChartSpec).spec;
  const view = new View(parse(vegaSpec), { renderer: 'none' });
  try {
    return { svg: await view.toSVG() };
  } finally {
    view.finalize();
  }
}

/** Renders SVG to PNG with resvg (fonts: the system's). */
export function svgToPng(svg: string, width = 1200): Buffer {
  const resvg = new Resvg(svg, {
    fitTo: { mode: 'width', value: width },
    background: 'white',
    font: { loadSystemFonts: true },
  });
  return resvg.render().asPng();
}

/** Writes `<dir>/<name>.svg`, and `<name>.png` when asked; returns the paths. */
export async function writeChart(
  spec: ChartSpec,
  dir: string,
  name: string,
  options: { png?: boolean } = {},
): Promise<{ svg: string; svgPath: string; pngPath?: string }> {
  await mkdir(dir, { recursive: true });
  const { svg } = await renderChart(spec);
  const svgPath = path.join(dir, `${name}.svg`);
  await writeFile(svgPath, svg);
  if (!options.png) return { svg, svgPath };
  const pngPath = path.join(dir, `${name}.png`);
  await writeFile(pngPath, svgToPng(svg));
  return { svg, svgPath, pngPath };
}

/** A line chart of y against x, one line per series: the most common chart here. */
export function lineChart(options: {
  title: string;
  values: Record<string, number | string>[];
  x: { field: string; title: string; scale?: 'linear' | 'log' };
  y: { field: string; title: string; scale?: 'linear' | 'log' };
  series?: { field: string; title: string };
  width?: number;
  height?: number;
  points?: boolean;
}): ChartSpec {
  const axis = (a: { field: string; title: string; scale?: 'linear' | 'log' }) => ({
    field: a.field,
    type: 'quantitative' as const,
    title: a.title,
    scale: a.scale === 'log' ? { type: 'log' as const } : { zero: false },
  });
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: options.title,
    width: options.width ?? 560,
    height: options.height ?? 300,
    data: { values: options.values },
    mark: { type: 'line', point: options.points ?? false },
    encoding: {
      x: axis(options.x),
      y: axis(options.y),
      ...(options.series
        ? { color: { field: options.series.field, type: 'nominal', title: options.series.title } }
        : {}),
    },
  };
}
