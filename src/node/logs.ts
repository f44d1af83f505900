import type { LogsConfig } from '../config.ts';
import type { LogStream } from '../runtime/index.ts';
import type { InvocationRecord, Store } from '../store/index.ts';
import type { Clock } from './clock.ts';
import { OUTPUT_TRAIL_MS } from './instance.ts';

/** Who wrote a line: its function version, instance and (when known) invocation. */
export interface LogSource {
  functionName: string;
  version: number;
  instanceId: string;
}

interface Budget {
  source: LogSource;
  invocationId?: string;
  kept: number;
  droppedLines: number;
  droppedBytes: number;
  /** The finished invocation's record, to complete once its output stops trailing. */
  record?: InvocationRecord;
}

/** What a line counts against the cap besides its bytes: its row (so empty lines are not free). */
export const LOG_LINE_OVERHEAD_BYTES = 64;

/** The line that stands for what a cap dropped. */
export function droppedLine(lines: number, bytes: number): string {
  return `[petri: ${lines} lines / ${bytes} bytes dropped]`;
}

/**
 * Caps the log kept per invocation: lines are stored until the invocation's
 * lines cost `invocationBytes` (their bytes plus LOG_LINE_OVERHEAD_BYTES
 * each), then only counted. What was dropped goes into the
 * invocation's record (`logsDropped`) and one last line says so, once its
 * output can no longer trail (OUTPUT_TRAIL_MS after it ends).
 *
 * Lines no invocation can be named for (several in flight, or output between
 * invocations) share one budget per instance, which starts again each time
 * the instance goes idle.
 */
export class LogKeeper {
  private readonly budgets = new Map<string, Budget>();

  constructor(
    private readonly store: Store,
    private readonly config: Pick<LogsConfig, 'invocationBytes'>,
    private readonly clock: Clock,
  ) {}

  line(source: LogSource, stream: LogStream, line: string, invocationId?: string): void {
    const key = invocationId ?? instanceKey(source.instanceId);
    let budget = this.budgets.get(key);
    if (!budget) {
      budget = { source, invocationId, kept: 0, droppedLines: 0, droppedBytes: 0 };
      this.budgets.set(key, budget);
    }
    const bytes = Buffer.byteLength(line, 'utf8');
    const cost = bytes + LOG_LINE_OVERHEAD_BYTES;
    if (budget.droppedLines > 0 || budget.kept + cost > this.config.invocationBytes) {
      budget.droppedLines += 1;
      budget.droppedBytes += bytes;
      return;
    }
    budget.kept += cost;
    this.store.recordLog({ ...source, invocationId, stream, line, at: this.now() });
  }

  /**
   * Puts what the cap dropped so far into the ended invocation's `record`;
   * output that still trails is counted, and the record stored again, when
   * the invocation's log closes.
   */
  finishInvocation(record: InvocationRecord): void {
    const budget = this.budgets.get(record.id);
    if (!budget) return;
    budget.record = record;
    if (budget.droppedLines > 0) record.logsDropped = dropped(budget);
    this.clock.setTimer(OUTPUT_TRAIL_MS, () => this.closeInvocation(record.id), {
      background: true,
    });
  }

  private closeInvocation(invocationId: string): void {
    const budget = this.budgets.get(invocationId);
    if (!budget?.record) return;
    this.budgets.delete(invocationId);
    if (budget.droppedLines === 0) return;
    const { record } = budget;
    const changed = record.logsDropped?.lines !== budget.droppedLines;
    record.logsDropped = dropped(budget);
    this.recordDropped(budget);
    if (changed) this.store.recordInvocation(record);
  }

  /** Starts the instance's shared budget again (it went idle or ended). */
  resetInstance(instanceId: string): void {
    const key = instanceKey(instanceId);
    const budget = this.budgets.get(key);
    if (!budget) return;
    this.budgets.delete(key);
    if (budget.droppedLines > 0) this.recordDropped(budget);
  }

  private recordDropped(budget: Budget): void {
    this.store.recordLog({
      ...budget.source,
      invocationId: budget.invocationId,
      stream: 'stderr',
      line: droppedLine(budget.droppedLines, budget.droppedBytes),
      at: this.now(),
    });
  }

  private now(): number {
    return Math.round(this.clock.now());
  }
}

function dropped(budget: Budget): { lines: number; bytes: number } {
  return { lines: budget.droppedLines, bytes: budget.droppedBytes };
}

/** Invocation ids are UUIDs, so this never names one. */
function instanceKey(instanceId: string): string {
  return `instance:${instanceId}`;
}
