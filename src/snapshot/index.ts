export { FileSnapshotManager, type SnapshotDeps } from './manager.ts';
export type { SnapshotManager, SnapshotState, SnapshotStatus, TierStatus } from './types.ts';
