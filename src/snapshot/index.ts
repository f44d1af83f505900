export { FileSnapshotManager, type SnapshotDeps } from './manager.ts';
export { fastestWithRoom } from './placement.ts';
export type {
  SnapshotManager,
  SnapshotState,
  SnapshotStatus,
  TierPlacement,
  TierView,
} from './types.ts';
