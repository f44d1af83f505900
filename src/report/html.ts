import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';

/** One part of an HTML report: a heading and any of text, a table, an inline SVG chart. */
export interface ReportSection {
  title: string;
  text?: string;
  table?: { headers: readonly string[]; rows: readonly (readonly (string | number)[])[] };
  svg?: string;
}

/** A self-contained HTML page (inline SVG, no scripts). */
export function htmlReport(title: string, sections: readonly ReportSection[]): string {
  const body = sections.map(renderSection).join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escape(title)}</title>
<style>
body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}svg{max-width:100%;height:auto}
</style></head><body>
<h1>${escape(title)}</h1>
${body}
</body></html>
`;
}

export async function writeHtmlReport(
  file: string,
  title: string,
  sections: readonly ReportSection[],
): Promise<string> {
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, htmlReport(title, sections));
  return file;
}

function renderSection(section: ReportSection): string {
  const parts = [`<h2>${escape(section.title)}</h2>`];
  if (section.text) parts.push(`<p>${escape(section.text)}</p>`);
  if (section.table) {
    const head = section.table.headers.map((h) => `<th>${escape(h)}</th>`).join('');
    const rows = section.table.rows
      .map((row) => `<tr>${row.map((c) => `<td>${escape(String(c))}</td>`).join('')}</tr>`)
      .join('\n');
    parts.push(`<table><thead><tr>${head}</tr></thead><tbody>${rows}</tbody></table>`);
  }
  if (section.svg) parts.push(`<figure>${section.svg.replace(/<\?xml[^>]*>/, '')}</figure>`);
  return `<section>${parts.join('\n')}</section>`;
}

function escape(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
