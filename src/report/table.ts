import Table from 'cli-table3';

/**
 * A terminal table (cli-table3), as a string.
 *
 * @example console.log(table(['size', 'WD'], [[10, 0.42]]))
 */
export function table(
  headers: readonly string[],
  rows: readonly (readonly (string | number | undefined)[])[],
  options: { title?: string } = {},
): string {
  const out = new Table({ head: [...headers], style: { head: ['cyan'] } });
  for (const row of rows) out.push(row.map(cell));
  return options.title ? `${options.title}\n${out.toString()}` : out.toString();
}

/** Numbers with a sensible number of significant digits for people. */
export function formatNumber(value: number, digits = 3): string {
  if (!Number.isFinite(value)) return String(value);
  if (Number.isInteger(value)) return String(value);
  const magnitude = Math.abs(value);
  if (magnitude >= 1000) return value.toFixed(0);
  return Number(value.toPrecision(digits)).toString();
}

function cell(value: string | number | undefined): string {
  if (value === undefined) return '';
  return typeof value === 'number' ? formatNumber(value) : value;
}
