import type { FunctionRecord } from '../store/index.ts';

export type SnapshotState = 'building' | 'ready' | 'failed';

/** What GET /v1/functions/{name} shows of a version's snapshot. */
export interface SnapshotStatus {
  state: SnapshotState;
  /** Why the build failed: the function stays cold-only. */
  reason?: string;
  /** The blob's size on its tier. */
  bytes?: number;
  /** From the build's start (bundling included) to the blob placed. */
  buildMs?: number;
  /** The tier the blob lives on. */
  tier?: string;
  /** Instances restored from it, and the last one's time from start to ready. */
  restores: number;
  lastRestoreMs?: number;
}

/** One storage tier as the placement policy sees it. */
export interface TierView {
  readonly name: string;
  readonly capacityBytes: number;
  readonly usedBytes: number;
}

/** Chooses the tier a new snapshot of `bytes` goes to; undefined: none has room. */
export type TierPlacement = (tiers: readonly TierView[], bytes: number) => string | undefined;

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
  /** A restore from the blob failed: it is dropped and the version stays cold-only. */
  markBroken(name: string, version: number, reason: string): void;
  /** Removes the snapshots of the function's versions other than `keep` (all, when undefined). */
  drop(name: string, keep?: number): Promise<void>;
  /** Empties the tiers (leftovers of an earlier run). */
  reconcile(): Promise<void>;
  /** Kills builds under way and removes every snapshot. */
  close(): Promise<void>;
}
