/** Terminal formatting for people: borderless tables, durations, byte sizes, ages. */
import Table from 'cli-table3';
import type { InstanceCounts } from './client.ts';

/** Shown in a cell when the node did not report the value. */
export const NONE = '-';

// Borderless, kubectl-like tables: easy to read and to grep/awk.
const PLAIN_CHARS = {
  top: '',
  'top-mid': '',
  'top-left': '',
  'top-right': '',
  bottom: '',
  'bottom-mid': '',
  'bottom-left': '',
  'bottom-right': '',
  left: '',
  'left-mid': '',
  mid: '',
  'mid-mid': '',
  right: '',
  'right-mid': '',
  middle: '  ',
};

export type Cell = string | number | undefined;

/**
 * A table with a header row; undefined cells print as "-".
 *
 * @example table(['NAME', 'VERSION'], [['hello', 3]]) // "NAME   VERSION\nhello  3"
 */
export function table(head: string[], rows: Cell[][]): string {
  const t = new Table({
    head,
    chars: PLAIN_CHARS,
    // No colours: output is often piped, and ANSI codes would break column tools.
    style: { head: [], border: [], 'padding-left': 0, 'padding-right': 0 },
  });
  for (const row of rows) t.push(row.map((cell) => (cell === undefined ? NONE : String(cell))));
  return t
    .toString()
    .split('\n')
    .map((line) => line.trimEnd())
    .join('\n');
}

/** Two aligned columns, for one object's facts (`get`, `status`, `invocation`). */
export function keyValues(pairs: [string, Cell][]): string {
  const width = Math.max(0, ...pairs.map(([key]) => key.length));
  return pairs
    .map(([key, value]) => `${(key + ':').padEnd(width + 2)}${value === undefined ? NONE : value}`)
    .join('\n');
}

/** "850 ms", "1.25 s", "3m 04s", "2h 05m", "3d 04h". */
export function formatDuration(ms: number | undefined): string {
  if (ms === undefined || !Number.isFinite(ms)) return NONE;
  if (ms < 1000) return `${round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(2)} s`;
  const total = Math.floor(s);
  if (total < 3600) return `${Math.floor(total / 60)}m ${pad2(total % 60)}s`;
  if (total < 86400) return `${Math.floor(total / 3600)}h ${pad2(Math.floor(total / 60) % 60)}m`;
  return `${Math.floor(total / 86400)}d ${pad2(Math.floor(total / 3600) % 24)}h`;
}

/** Binary units, as memory limits are: "512 B", "1.5 KiB", "12.3 MiB". */
export function formatBytes(bytes: number | undefined): string {
  if (bytes === undefined || !Number.isFinite(bytes)) return NONE;
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  if (unit === 0) return `${value} B`;
  return `${value < 10 ? value.toFixed(1) : Math.round(value)} ${units[unit]}`;
}

/** How long ago an epoch-ms instant was: "12s ago", "5m ago", "3h ago", "2d ago". */
export function formatAge(at: number | undefined, now: number = Date.now()): string {
  if (at === undefined || !Number.isFinite(at)) return NONE;
  const s = Math.max(0, Math.floor((now - at) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

/** An epoch-ms instant as ISO 8601 (UTC), the format logs and scripts expect. */
export function formatTime(at: number | undefined): string {
  if (at === undefined || !Number.isFinite(at)) return NONE;
  return new Date(at).toISOString();
}

/** A plain number of ms for table columns meant to be sorted or summed. */
export function formatMs(ms: number | undefined): string {
  if (ms === undefined || !Number.isFinite(ms)) return NONE;
  return String(round(ms));
}

/** An instance count per state (`get`, `status`). */
export function formatInstances(counts: InstanceCounts | undefined): string {
  if (!counts) return NONE;
  return `idle ${counts.idle}, paused ${counts.paused}, busy ${counts.busy}, starting ${counts.starting}, stopping ${counts.stopping}`;
}

/** Pretty JSON for results: what people read and what `jq` accepts. */
export function formatJson(value: unknown): string {
  return JSON.stringify(value, null, 2) ?? 'null';
}

function round(ms: number): number {
  return ms >= 10 ? Math.round(ms) : Math.round(ms * 10) / 10;
}

function pad2(n: number): string {
  return String(n).padStart(2, '0');
}
