import type { InvocationRecord } from '../store/index.ts';

/** The API's shape of an invocation (GET /v1/invocations/{id}). */
export interface InvocationView {
  id: string;
  functionName: string;
  version: number;
  mode: 'sync' | 'async';
  status: InvocationRecord['status'];
  startPath?: InvocationRecord['startPath'];
  instanceId?: string;
  result?: unknown;
  error?: InvocationRecord['error'];
  timings: {
    receivedAt: number;
    dispatchedAt?: number;
    startedAt?: number;
    finishedAt?: number;
    queuedMs?: number;
    initMs?: number;
    executionMs?: number;
    totalMs?: number;
  };
  resources: {
    cpuMs?: number;
    peakMemoryBytes?: number;
    netRxBytes?: number;
    netTxBytes?: number;
  };
}

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
