import type { ErrorCode } from '../errors.ts';
import type { FunctionSpec } from '../spec/index.ts';

export type StartPath = 'warm' | 'prewarm' | 'restore' | 'cold';
export type InvocationStatus = 'queued' | 'running' | 'succeeded' | 'failed';

export interface FunctionRecord {
  name: string;
  version: number;
  spec: FunctionSpec;
  /** Where this version's (bundled) code lives on the node. */
  codeDir: string;
  createdAt: number;
  updatedAt: number;
}

/** One invocation: timings are epoch ms; durations are ms. */
export interface InvocationRecord {
  id: string;
  functionName: string;
  version: number;
  mode: 'sync' | 'async';
  status: InvocationStatus;
  startPath?: StartPath;
  instanceId?: string;
  error?: { code: ErrorCode; message: string; details?: unknown };
  result?: unknown;
  receivedAt: number;
  dispatchedAt?: number;
  startedAt?: number;
  finishedAt?: number;
  queuedMs?: number;
  initMs?: number;
  executionMs?: number;
  totalMs?: number;
  cpuMs?: number;
  peakMemoryBytes?: number;
  netRxBytes?: number;
  netTxBytes?: number;
  /** Log lines past the invocation's log cap: not stored, only counted. */
  logsDropped?: { lines: number; bytes: number };
}

export interface InvocationQuery {
  functionName?: string;
  limit: number;
  since?: number;
}

export interface InstanceEventRecord {
  instanceId: string;
  functionName: string;
  version: number;
  /** starting, ready, idle, busy, stopping, dead, ... */
  event: string;
  at: number;
  details?: unknown;
}

export interface LogRecord {
  functionName: string;
  version: number;
  invocationId?: string;
  instanceId: string;
  stream: 'stdout' | 'stderr';
  line: string;
  at: number;
}

export interface LogQuery {
  functionName: string;
  invocationId?: string;
  since?: number;
  limit: number;
}

/** How long and how much log the store keeps (node config `logs`). */
export interface LogRetention {
  maxAgeMs: number;
  maxBytes: number;
  /** How often expiry runs; it also runs once an eighth of maxBytes was written since the last run. */
  expiryIntervalMs: number;
}

export interface ExpiredLogs {
  rows: number;
  bytes: number;
}

/** One autoscaler decision for one function (src/policy/autoscale.ts). */
export interface AutoscaleDecisionRecord {
  functionName: string;
  policy: string;
  at: number;
  /** The policy's metric (concurrency or invocations/s) over its stable and panic windows. */
  observedStable: number;
  observedPanic: number;
  desired: number;
  actual: number;
  panic: boolean;
}

export interface AutoscaleDecisionQuery {
  functionName?: string;
  limit: number;
  since?: number;
}
