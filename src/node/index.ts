export {
  PetriNode,
  type NodeDeps,
  type FunctionView,
  type NodeInfo,
  type InvokeResult,
} from './node.ts';
export { Pool, type Slot, type PoolLimits } from './pool.ts';
export { Instance } from './instance.ts';
export { AutoscaleDriver, autoscaleSettings } from './autoscaler.ts';
export { ManualClock, systemClock, type Clock, type Timer } from './clock.ts';
