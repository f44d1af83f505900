import { readFileSync } from 'node:fs';

/**
 * Node CPU utilisation from /proc/stat, sampled over a run: the share of
 * non-idle time across all cores. Returns NaN where /proc/stat is missing.
 */
export class CpuMonitor {
  private first: { busy: number; total: number } | undefined;
  private previous: { busy: number; total: number } | undefined;
  private timer: NodeJS.Timeout | undefined;
  readonly samples: { atMs: number; utilisation: number }[] = [];

  start(intervalMs = 1000): void {
    this.first = readCpu();
    this.previous = this.first;
    const t0 = Date.now();
    this.timer = setInterval(() => {
      const now = readCpu();
      if (now && this.previous)
        this.samples.push({ atMs: Date.now() - t0, utilisation: share(this.previous, now) });
      this.previous = now;
    }, intervalMs);
    this.timer.unref();
  }

  /** Mean utilisation since start (0..1). */
  stop(): number {
    if (this.timer) clearInterval(this.timer);
    const last = readCpu();
    return this.first && last ? share(this.first, last) : NaN;
  }
}

function share(a: { busy: number; total: number }, b: { busy: number; total: number }): number {
  const total = b.total - a.total;
  return total > 0 ? (b.busy - a.busy) / total : 0;
}

function readCpu(): { busy: number; total: number } | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0];
    const fields = line.trim().split(/\s+/).slice(1).map(Number);
    const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
    const total = fields.reduce((a, b) => a + b, 0);
    return { busy: total - idle, total };
  } catch {
    return undefined;
  }
}
