export type {
  InstanceState,
  InstanceView,
  KeepAlivePolicy,
  NodeView,
  PolicyEvent,
} from './types.ts';
export { FixedKeepAlive } from './fixed.ts';
export { type GreedyDualOptions, GreedyDualKeepAlive } from './greedy-dual.ts';
export {
  type HybridHistogramOptions,
  type HybridMode,
  type HybridWindows,
  HybridHistogramKeepAlive,
  coefficientOfVariation,
  percentileBin,
} from './hybrid-histogram.ts';
export {
  type KeepAliveDefaults,
  type KeepAlivePolicyName,
  KEEP_ALIVE_POLICY_NAMES,
  KeepAliveByFunction,
  isKeepAlivePolicyName,
  makeKeepAlivePolicy,
} from './keep-alive.ts';
export {
  type Placement,
  type PlacementPolicy,
  type PlacementWindow,
  AlwaysSpread,
  PackWhenSequential,
  PLACEMENT_POLICIES,
} from './placement.ts';
export {
  type StartChoice,
  type StartDecision,
  type StartOptions,
  type StartPathPolicy,
  invalidDecision,
  NewFirst,
  START_PATH_POLICIES,
  WarmFirst,
} from './start-path.ts';
export {
  type AutoscaleDecision,
  type Autoscaler,
  type AutoscalePolicyName,
  type AutoscaleSample,
  type AutoscaleSettings,
  AUTOSCALE_POLICIES,
  createAutoscaler,
  OnDemandAutoscaler,
  SlidingWindow,
  WindowedAutoscaler,
} from './autoscale.ts';
export {
  type IncomingSnapshot,
  type SnapshotTierPolicy,
  type SnapshotTierPolicyName,
  type StoredSnapshotView,
  type TierMove,
  type TierPlan,
  type TierView,
  FastestWithRoom,
  invalidTierPlan,
  LruDemote,
  SNAPSHOT_TIER_POLICIES,
  SNAPSHOT_TIER_POLICY_NAMES,
} from './snapshot-tiers.ts';
