import type { Logger } from 'pino';
import type { Usage } from '../sandbox/index.ts';
import type { InvocationRecord, Store } from '../store/index.ts';
import type { Instance } from './instance.ts';

/**
 * The end of the pipeline: completes finished invocation records with the
 * resources they used and stores them. Usage is read after the reply is on
 * its way (one read per instance per event-loop turn), so the warm path
 * never waits for cgroup and counter files.
 */
export class UsageSink {
  /** Records still being completed with resource usage after their reply went out. */
  private readonly pending = new Set<Promise<unknown>>();

  constructor(
    private readonly store: Store,
    private readonly log: Logger,
  ) {}

  /** Stores `record`, first adding what `instance` used since its last invocation. */
  complete(record: InvocationRecord, instance: Instance | undefined): void {
    if (!instance) return this.store.recordInvocation(record);
    const recording = new Promise<void>((resolve) =>
      setImmediate(() => void this.recordUsage(record, instance).finally(resolve)),
    ).finally(() => this.pending.delete(recording));
    this.pending.add(recording);
  }

  /** Resolves once every record handed in so far is stored. */
  async drain(): Promise<void> {
    await Promise.allSettled([...this.pending]);
  }

  private async recordUsage(record: InvocationRecord, instance: Instance): Promise<void> {
    try {
      if (instance.state !== 'dead') {
        const { before, after } = await sharedUsage(instance);
        Object.assign(record, usageDelta(before, after));
      }
    } catch (err) {
      this.log.debug({ err }, 'usage read failed');
    }
    this.store.recordInvocation(record);
  }
}

/**
 * How long a usage read waits for an instance's other invocations in flight
 * to finish: a busy instance (concurrency > 1, always some in flight) is
 * read about once per window instead of after every reply.
 */
const USAGE_WINDOW_MS = 5;

/**
 * One usage read per instance for invocations that finish together: in the
 * same event-loop turn, or, while others are still in flight on it, until
 * they are done or USAGE_WINDOW_MS passed (overlapping invocations cannot
 * be told apart, so they share the counters). An invocation that leaves its
 * instance with nothing in flight (every sequential one) is read at once.
 */
function sharedUsage(instance: Instance): Promise<{ before: Usage; after: Usage }> {
  instance.usageRead ??= (async () => {
    if (instance.inFlight > 0) {
      await instance.whenDrained(USAGE_WINDOW_MS);
      // Those that just ended handed their records in before their release woke this
      // (complete, then release): one more turn and they have joined this read.
      await new Promise((resolve) => setImmediate(resolve));
    }
    const before = instance.baseline;
    try {
      const after = await instance.sandbox.usage({ resetPeak: true });
      instance.baseline = after;
      return { before, after };
    } finally {
      instance.usageRead = undefined;
    }
  })();
  return instance.usageRead;
}

export function roundMs(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

function usageDelta(before: Usage, after: Usage): Partial<InvocationRecord> {
  return {
    cpuMs: roundMs(Math.max(0, after.cpuMs - before.cpuMs)),
    peakMemoryBytes: after.peakMemoryBytes,
    netRxBytes: Math.max(0, after.netRxBytes - before.netRxBytes),
    netTxBytes: Math.max(0, after.netTxBytes - before.netTxBytes),
  };
}
