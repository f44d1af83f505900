/**
 * Charts (Vega-Lite → Vega → SVG, and PNG via resvg), self-contained HTML
 * reports and terminal tables, for every part of Petri that reports figures.
 */
export { type ChartSpec, lineChart, renderChart, svgToPng, writeChart } from './charts.ts';
export { type ReportSection, htmlReport, writeHtmlReport } from './html.ts';
export { type ColourTarget, formatNumber, table, takesColour } from './table.ts';
