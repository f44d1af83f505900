import type { LogsConfig } from '../config.ts';
import type { LogStream } from '../runtime/index.ts';
import { LOG_ROW_BYTES, logLineCost, type InvocationRecord, type Store } from '../store/index.ts';
import type { Clock } from './clock.ts';

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
}

/** The line that stands for what a cap dropped. */
export function droppedLine(lines: number, bytes: number): string {
  return `[petri: ${lines} lines / ${bytes} bytes dropped]`;
}

/**
 * Caps the log kept per invocation: lines are stored until the invocation's
 * lines cost `invocationBytes` (bytes plus a fixed cost per row, as the
 * store counts them), then only counted. When the invocation ends, what was
 * dropped goes into its record (`logsDropped`) and one last line says so.
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
    const cost = logLineCost(line);
    if (budget.droppedLines > 0 || budget.kept + cost > this.config.invocationBytes) {
      budget.droppedLines += 1;
      budget.droppedBytes += cost - LOG_ROW_BYTES;
      return;
    }
    budget.kept += cost;
    this.store.recordLog({ ...source, invocationId, stream, line, at: this.now() });
  }

  /** Ends an invocation's log, putting what its cap dropped into `record`. */
  finishInvocation(record: InvocationRecord): void {
    const budget = this.budgets.get(record.id);
    if (!budget) return;
    this.budgets.delete(record.id);
    if (budget.droppedLines === 0) return;
    record.logsDropped = { lines: budget.droppedLines, bytes: budget.droppedBytes };
    this.recordDropped(budget);
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

/** Invocation ids are UUIDs, so this never names one. */
function instanceKey(instanceId: string): string {
  return `instance:${instanceId}`;
}
