import { KeptFile } from '../sandbox/index.ts';

export interface Counters {
  rxBytes: number;
  txBytes: number;
}

/**
 * Parses /proc/net/dev. Read through /proc rather than /sys/class/net because
 * /proc/self/net always shows the reading process's network namespace, while
 * /sys shows the namespace of whoever mounted sysfs — wrong when the daemon
 * was moved into a namespace with nsenter.
 */
export function parseNetDev(text: string): Map<string, Counters> {
  const result = new Map<string, Counters>();
  for (const line of text.split('\n').slice(2)) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const fields = line
      .slice(colon + 1)
      .trim()
      .split(/\s+/);
    result.set(line.slice(0, colon).trim(), {
      rxBytes: Number(fields[0]),
      txBytes: Number(fields[8]),
    });
  }
  return result;
}

/**
 * Counters of one interface in this process's namespace, undefined if it is
 * gone. Read after every invocation, so the file stays open (KeptFile) and
 * only the interface's own line is parsed, not all of them.
 */
const netDev = new KeptFile('/proc/self/net/dev', 16 * 1024);

export async function readCounters(ifname: string): Promise<Counters | undefined> {
  return countersIn(netDev.read() ?? '', ifname);
}

/** One interface's counters in a /proc/net/dev text, parsing only its line. */
export function countersIn(text: string, ifname: string): Counters | undefined {
  const at = text.indexOf(`${ifname}:`);
  if (at < 0) return undefined;
  const lineStart = text.lastIndexOf('\n', at) + 1;
  const lineEnd = text.indexOf('\n', at);
  const line = text.slice(lineStart, lineEnd < 0 ? undefined : lineEnd);
  // The name must be the whole field, not a suffix of a longer one ("pvab1" in "xpvab1").
  const colon = line.indexOf(':');
  if (line.slice(0, colon).trim() !== ifname) return parseNetDev(text).get(ifname);
  return lineCounters(line, colon);
}

/** rx bytes (field 1) and tx bytes (field 9) after the colon, without splitting the line. */
function lineCounters(line: string, colon: number): Counters {
  const fields: number[] = [];
  let at = colon + 1;
  while (fields.length < 9) {
    while (line.charCodeAt(at) === 32) at += 1;
    let end = at;
    while (end < line.length && line.charCodeAt(end) !== 32) end += 1;
    fields.push(Number(line.slice(at, end)));
    at = end;
  }
  return { rxBytes: fields[0], txBytes: fields[8] };
}
