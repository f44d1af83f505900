export {
  PetriNode,
  type NodeDeps,
  type FunctionView,
  type NodeInfo,
  type InvokeResult,
  type AliasView,
  type ResolvedTarget,
  type VersionView,
} from './node.ts';
export { Pool, type Slot, type PoolLimits } from './pool.ts';
export { Instance } from './instance.ts';
export { ManualClock, systemClock, type Clock, type Timer } from './clock.ts';
