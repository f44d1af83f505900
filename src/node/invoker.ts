import { PetriError, toPetriError } from '../errors.ts';
import type { InvocationRecord, Store } from '../store/index.ts';
import type { Clock } from './clock.ts';
import { timeOrderedId } from './ids.ts';
import type { NodeMetrics } from './metrics.ts';
import type { LogKeeper } from './logs.ts';
import type { FunctionEntry, Pool, Slot } from './pool.ts';
import { roundMs, type UsageSink } from './sink.ts';

export interface InvokeResult {
  record: InvocationRecord;
  value?: unknown;
}

export interface InvokerDeps {
  pool: Pool;
  store: Store;
  metrics: NodeMetrics;
  sink: UsageSink;
  clock: Clock;
  logs: LogKeeper;
}

/**
 * An invocation's life cycle: a record made on arrival, a slot from the pool
 * (warm, cold or queued), one round trip to the instance, and the finished
 * record handed to the sink. Errors end up in the record, never thrown.
 */
export class Invoker {
  private readonly asyncRuns = new Set<Promise<unknown>>();
  private closing = false;

  constructor(private readonly deps: InvokerDeps) {}

  invoke(entry: FunctionEntry, event: unknown): Promise<InvokeResult> {
    return this.run(entry, this.newRecord(entry, 'sync'), event);
  }

  /** Records the invocation durably as queued and runs it in the background. */
  invokeAsync(entry: FunctionEntry, event: unknown): InvocationRecord {
    const record = this.newRecord(entry, 'async');
    this.deps.store.recordInvocationNow(record);
    const running = this.run(entry, record, event).finally(() => this.asyncRuns.delete(running));
    this.asyncRuns.add(running);
    return record;
  }

  /** New invocations fail with NodeRestarted from now on. */
  stopAccepting(): void {
    this.closing = true;
  }

  /** Resolves once every background invocation has ended. */
  async drain(): Promise<void> {
    await Promise.allSettled([...this.asyncRuns]);
  }

  private newRecord(entry: FunctionEntry, mode: 'sync' | 'async'): InvocationRecord {
    const receivedAt = this.deps.clock.now();
    return {
      id: timeOrderedId(Math.floor(receivedAt)),
      functionName: entry.record.name,
      version: entry.record.version,
      mode,
      status: 'queued',
      receivedAt,
    };
  }

  private async run(
    entry: FunctionEntry,
    record: InvocationRecord,
    event: unknown,
  ): Promise<InvokeResult> {
    let slot: Slot | undefined;
    try {
      if (this.closing) throw new PetriError('NodeRestarted', 'the node is shutting down');
      // A cold start that fails still counts as one (metrics, the record, x-petri-start).
      const acquired = this.deps.pool.acquire(entry, () => (record.startPath = 'cold'));
      if (record.mode === 'async') acquired.catch(() => {}); // settled below
      slot = await acquired;
      Object.assign(record, {
        status: 'running',
        version: slot.instance.version,
        startPath: slot.startPath,
        instanceId: slot.instance.id,
        dispatchedAt: slot.dispatchedAt,
        startedAt: this.deps.clock.now(),
      });
      if (record.mode === 'async') this.deps.store.recordInvocation({ ...record });
      const value = await slot.instance.invoke(record.id, event);
      // Only async callers fetch results later; sync results go back in the response.
      if (record.mode === 'async') record.result = value;
      this.finish(record, slot, undefined);
      return { record, value };
    } catch (err) {
      this.finish(record, slot, toPetriError(err));
      return { record };
    } finally {
      if (slot) this.deps.pool.release(slot.instance);
    }
  }

  private finish(
    record: InvocationRecord,
    slot: Slot | undefined,
    error: PetriError | undefined,
  ): void {
    const finished = this.deps.clock.now();
    record.finishedAt = finished;
    record.status = error ? 'failed' : 'succeeded';
    if (error) record.error = { code: error.code, message: error.message, details: error.details };
    record.totalMs = roundMs(finished - record.receivedAt);
    if (record.startedAt !== undefined && record.dispatchedAt !== undefined) {
      record.queuedMs = roundMs(record.dispatchedAt - record.receivedAt);
      record.initMs = roundMs(record.startedAt - record.dispatchedAt);
      record.executionMs = roundMs(finished - record.startedAt);
    } else {
      record.queuedMs = record.totalMs;
    }
    this.deps.metrics.record(
      record.functionName,
      // 'unserved': the node never gave it an instance (queue full or timed out, too big, stopping).
      record.startPath ?? 'unserved',
      error?.code ?? 'success',
      record.totalMs / 1000,
    );
    const phases = slot?.instance.takeMicrotasks(record.id);
    if (phases) {
      record.microtasks = phases.microtasks;
      if (phases.dropped > 0) record.microtasksDropped = phases.dropped;
    }
    this.deps.logs.finishInvocation(record);
    this.deps.sink.complete(record, slot?.instance);
  }
}
