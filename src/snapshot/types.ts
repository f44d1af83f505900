import type { FunctionRecord } from '../store/index.ts';

/** `evicted`: the tier policy made room with it; the version's starts are cold again. */
export type SnapshotState = 'building' | 'ready' | 'failed' | 'evicted';

/** What GET /v1/functions/{name} shows of a version's snapshot. */
export interface SnapshotStatus {
  state: SnapshotState;
  /** Why the build failed or the snapshot was evicted: the function stays cold-only. */
  reason?: string;
  /** The blob's size on its tier. */
  bytes?: number;
  /** From the build's start (bundling included) to the blob placed. */
  buildMs?: number;
  /** The tier the blob lives on. */
  tier?: string;
  /** Instances restored from it, and their time from start to ready: the last and the mean. */
  restores: number;
  lastRestoreMs?: number;
  meanRestoreMs?: number;
  /** Times the tier policy moved it to a slower tier. */
  demotions?: number;
}

/** A tier and the snapshots on it, for GET /v1/node. */
export interface TierStatus {
  name: string;
  dir: string;
  capacityBytes: number;
  usedBytes: number;
  /** `name/version` of each snapshot on it. */
  snapshots: string[];
}

/**
 * Builds, stores, places and removes the restore snapshots of function
 * versions (DESIGN §4). Builds run in the background, in a sandbox.
 */
export interface SnapshotManager {
  /** Starts building a snapshot of the version (no-op when one exists or is under way). */
  build(record: FunctionRecord): void;
  status(name: string, version: number): SnapshotStatus | undefined;
  /** The ready blob's path, or undefined. */
  blobFor(name: string, version: number): string | undefined;
  /** Notes one restore and its time from start to ready. */
  recordRestore(name: string, version: number, ms: number): void;
  /**
   * A restore from `file` failed: the snapshot is dropped and the version
   * stays cold-only, unless the snapshot has moved away from `file` since.
   */
  markBroken(name: string, version: number, reason: string, file?: string): void;
  /** The tiers, their use and the tier policy's name. */
  tierStatus(): { policy: string; tiers: TierStatus[] };
  /** Removes the snapshots of the function's versions other than `keep` (all, when undefined). */
  drop(name: string, keep?: number): Promise<void>;
  /** Empties the tiers (leftovers of an earlier run). */
  reconcile(): Promise<void>;
  /** Kills builds under way and removes every snapshot. */
  close(): Promise<void>;
}
