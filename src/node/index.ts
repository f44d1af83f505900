export {
  PetriNode,
  type NodeDeps,
  type FunctionView,
  type NodeInfo,
  type InvokeResult,
  type UrlTarget,
  type AliasView,
  type ResolvedTarget,
  type VersionView,
  type InstanceListing,
  type GroupView,
} from './node.ts';
export type { ExchangeContext, HttpEndpoint, UrlCall } from './invoker.ts';
export type { MemberView, MembershipEvent } from './groups.ts';
export { writeMembershipStream, type MembershipStream } from './membership-stream.ts';
export { Pool, type Slot, type PoolLimits } from './pool.ts';
export { Instance, type InstanceHooks } from './instance.ts';
export { AutoscaleDriver, autoscaleSettings } from './autoscaler.ts';
export { ManualClock, systemClock, type Clock, type Timer } from './clock.ts';
export {
  PrewarmRuntimes,
  PREWARM_REFILL_DELAY_MS,
  PREWARM_RETRY_MS,
  type PrewarmClaim,
  type PrewarmRuntimeDeps,
  type PrewarmSetView,
} from './prewarm-runtimes.ts';
