import { PetriError, toPetriError } from '../errors.ts';
import type { FunctionRecord, InvocationRecord, Store } from '../store/index.ts';
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

/** A function URL call to a handler: its request line and how its value becomes the response. */
export interface UrlCall<R extends { statusCode: number }> {
  method: string;
  path: string;
  respond(value: unknown): R;
}

/** What a proxied exchange knows of its invocation. */
export interface ExchangeContext {
  /** Aborted when the invocation ends early (timeout, the instance's exit). */
  signal: AbortSignal;
  invocationId: string;
}

export interface HttpEndpoint {
  host: string;
  port: number;
}

/** A result as the record keeps it: bytes as their base64 text (JSON has no bytes). */
function storedResult(value: unknown): unknown {
  return Buffer.isBuffer(value) ? value.toString('base64') : value;
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

  /** `target`: the version to run (default: the function's current one). */
  invoke(
    entry: FunctionEntry,
    event: unknown,
    target: FunctionRecord = entry.record,
  ): Promise<InvokeResult> {
    return this.run(entry, this.newRecord(target, 'sync'), target, (slot, id) =>
      slot.instance.invoke(id, event),
    );
  }

  /**
   * A function URL request to a `node` or `exec` function: `event` is the
   * request as an event, `call.respond` turns the handler's value into the
   * response (throwing a PetriError when it cannot), whose status is recorded.
   */
  async invokeUrl<R extends { statusCode: number }>(
    entry: FunctionEntry,
    target: FunctionRecord,
    event: (invocationId: string) => unknown,
    call: UrlCall<R>,
  ): Promise<{ record: InvocationRecord; response?: R }> {
    const record = this.newRecord(target, 'sync', call);
    let response: R | undefined;
    await this.run(entry, record, target, async (slot, id) => {
      response = call.respond(await slot.instance.invoke(id, event(id)));
      if (record.http) record.http.status = response.statusCode;
      return undefined;
    });
    return { record, response };
  }

  /**
   * A function URL request proxied to an `http` function's server: `exchange`
   * gets the instance's endpoint once a slot is taken and resolves with the
   * status the server answered once the response has been relayed. The
   * instance's timeout and exit abort its signal.
   */
  async proxy(
    entry: FunctionEntry,
    target: FunctionRecord,
    call: { method: string; path: string },
    exchange: (endpoint: HttpEndpoint, context: ExchangeContext) => Promise<number>,
  ): Promise<InvocationRecord> {
    const record = this.newRecord(target, 'sync', call);
    await this.run(entry, record, target, (slot, id) => {
      const endpoint = slot.instance.httpEndpoint;
      if (!endpoint) throw new PetriError('Internal', 'the instance reported no server port');
      // A then, not an async callback: one promise less per proxied request.
      return slot.instance.track(id, (signal) =>
        exchange(endpoint, { signal, invocationId: id }).then((status) => {
          if (record.http) record.http.status = status;
          return undefined;
        }),
      );
    });
    return record;
  }

  /** Records the invocation durably as queued and runs it in the background. */
  invokeAsync(
    entry: FunctionEntry,
    event: unknown,
    target: FunctionRecord = entry.record,
  ): InvocationRecord {
    const record = this.newRecord(target, 'async');
    this.deps.store.recordInvocationNow(record);
    const running = this.run(entry, record, target, (slot, id) =>
      slot.instance.invoke(id, event),
    ).finally(() => this.asyncRuns.delete(running));
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

  private newRecord(
    target: FunctionRecord,
    mode: 'sync' | 'async',
    http?: { method: string; path: string },
  ): InvocationRecord {
    const receivedAt = this.deps.clock.now();
    const record: InvocationRecord = {
      id: timeOrderedId(Math.floor(receivedAt)),
      functionName: target.name,
      version: target.version,
      mode,
      status: 'queued',
      receivedAt,
    };
    if (http) record.http = { method: http.method, path: http.path };
    return record;
  }

  private async run(
    entry: FunctionEntry,
    record: InvocationRecord,
    target: FunctionRecord,
    send: (slot: Slot, id: string) => Promise<unknown>,
  ): Promise<InvokeResult> {
    let slot: Slot | undefined;
    try {
      if (this.closing) throw new PetriError('NodeRestarted', 'the node is shutting down');
      // A start that fails still counts as the path it took (metrics, the record, x-petri-start).
      // A warm slot comes back as is (no promise to wait for); a throw is caught below.
      const acquired = this.deps.pool.acquireNow(
        entry,
        (path) => (record.startPath = path ?? 'cold'),
        target,
      );
      if (acquired instanceof Promise) {
        if (record.mode === 'async') acquired.catch(() => {}); // settled below
        slot = await acquired;
      } else slot = acquired;
      Object.assign(record, {
        status: 'running',
        version: slot.instance.version,
        startPath: slot.startPath,
        instanceId: slot.instance.id,
        dispatchedAt: slot.dispatchedAt,
        startedAt: this.deps.clock.now(),
      });
      if (record.mode === 'async') this.deps.store.recordInvocation({ ...record });
      const value = await send(slot, record.id);
      // Only async callers fetch results later; sync results go back in the response.
      if (record.mode === 'async') record.result = storedResult(value);
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
    // A function URL caller that got a platform error got its status.
    if (error && record.http) record.http.status = error.status;
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
