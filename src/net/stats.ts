import { readFile } from 'node:fs/promises';

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

/** Counters of one interface in this process's namespace, undefined if it is gone. */
export async function readCounters(ifname: string): Promise<Counters | undefined> {
  return parseNetDev(await readFile('/proc/self/net/dev', 'utf8')).get(ifname);
}
