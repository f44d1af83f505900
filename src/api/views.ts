import type { InvocationRecord } from '../store/index.ts';

type Timings =
  | 'receivedAt'
  | 'dispatchedAt'
  | 'startedAt'
  | 'finishedAt'
  | 'queuedMs'
  | 'initMs'
  | 'executionMs'
  | 'totalMs';
type Resources = 'cpuMs' | 'peakMemoryBytes' | 'netRxBytes' | 'netTxBytes';

/** The API's shape of an invocation (GET /v1/invocations/{id}): the record, grouped. */
export type InvocationView = Omit<InvocationRecord, Timings | Resources> & {
  timings: Pick<InvocationRecord, Timings>;
  resources: Pick<InvocationRecord, Resources>;
};

export function toInvocationView(record: InvocationRecord): InvocationView {
  return {
    id: record.id,
    functionName: record.functionName,
    version: record.version,
    mode: record.mode,
    status: record.status,
    startPath: record.startPath,
    instanceId: record.instanceId,
    result: record.result,
    error: record.error,
    logsDropped: record.logsDropped,
    http: record.http,
    microtasks: record.microtasks,
    microtasksDropped: record.microtasksDropped,
    timings: {
      receivedAt: record.receivedAt,
      dispatchedAt: record.dispatchedAt,
      startedAt: record.startedAt,
      finishedAt: record.finishedAt,
      queuedMs: record.queuedMs,
      initMs: record.initMs,
      executionMs: record.executionMs,
      totalMs: record.totalMs,
    },
    resources: {
      cpuMs: record.cpuMs,
      peakMemoryBytes: record.peakMemoryBytes,
      netRxBytes: record.netRxBytes,
      netTxBytes: record.netTxBytes,
    },
  };
}
