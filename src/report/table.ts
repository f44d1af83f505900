import Table from 'cli-table3';

/** The part of a stream that says whether it shows colours (tty.WriteStream has both). */
export interface ColourTarget {
  isTTY?: boolean;
  hasColors?: () => boolean;
}

/**
 * Whether text for `stream` may hold ANSI colours: only on a terminal that
 * takes them. `hasColors()` is Node's own judgement, which honours NO_COLOR,
 * FORCE_COLOR and TERM=dumb; a pipe or file never gets colours, so tables
 * stay plain for `grep`, `awk` and saved reports.
 */
export function takesColour(
  stream: NodeJS.WritableStream | ColourTarget = process.stdout,
): boolean {
  // Only tty.WriteStream has these; any other stream is a pipe or a file.
  if (!('isTTY' in stream) || stream.isTTY !== true) return false;
  return 'hasColors' in stream && typeof stream.hasColors === 'function' && stream.hasColors();
}

/**
 * A terminal table (cli-table3), as a string; coloured only when `colour`
 * (default: stdout takes colours, see `takesColour`).
 *
 * @example console.log(table(['size', 'WD'], [[10, 0.42]]))
 */
export function table(
  headers: readonly string[],
  rows: readonly (readonly (string | number | undefined)[])[],
  options: { title?: string; colour?: boolean } = {},
): string {
  const colour = options.colour ?? takesColour();
  // cli-table3 colours its header and border unless told to use no styles.
  const style = colour ? { head: ['cyan'] } : { head: [], border: [] };
  const out = new Table({ head: [...headers], style });
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
