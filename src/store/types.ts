import type { ErrorCode } from '../errors.ts';
import type { FunctionSpec } from '../spec/index.ts';

/** How an invocation got its instance (see src/policy/start-path.ts). */
export type StartPath = 'warm' | 'paused' | 'prewarm' | 'restore' | 'cold';

/** One announced phase (the scheduler's MicrotaskRecord; the store keeps it as JSON). */
export interface MicrotaskRecord {
  name: string;
  class: string;
  startMs: number;
  durationMs: number;
  waitedMs: number;
}
export type InvocationStatus = 'queued' | 'running' | 'succeeded' | 'failed';

export interface FunctionRecord {
  name: string;
  version: number;
  spec: FunctionSpec;
  /** Where this version's (bundled) code lives on the node. */
  codeDir: string;
  createdAt: number;
  updatedAt: number;
  /** The digest of the version folder (code and bundle); absent for versions made before it was kept. */
  codeDigest?: string;
}

/** An alias: a name for a version, optionally sending a share of calls to a second one. */
export interface AliasRecord {
  functionName: string;
  name: string;
  version: number;
  /** A second version and the share of invocations (0–1) it gets. */
  canary?: { version: number; weight: number };
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
  /** A function URL invocation's request and the status it was answered with. */
  http?: { method: string; path: string; status?: number };
  /** Phases it announced, in order (context.microtask or the exec/http channel). */
  microtasks?: MicrotaskRecord[];
  /** Announcements past the per-invocation cap: counted, not recorded or scheduled. */
  microtasksDropped?: number;
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

/** How long and how many finished invocations the store keeps (node config `history`). */
export interface HistoryRetention {
  /** Finished invocations received before now − maxAgeMs, and instance events as old, are deleted. */
  maxAgeMs: number;
  /** Past this many invocation records the oldest finished ones go. */
  maxInvocations: number;
  expiryIntervalMs: number;
}

export interface ExpiredHistory {
  invocations: number;
  instanceEvents: number;
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
