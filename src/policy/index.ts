export type { InstanceState, InstanceView, KeepAlivePolicy, NodeView } from './types.ts';
export { FixedKeepAlive } from './fixed.ts';
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
