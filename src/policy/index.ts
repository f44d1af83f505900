export type { InstanceState, InstanceView, KeepAlivePolicy, NodeView } from './types.ts';
export { FixedKeepAlive } from './fixed.ts';
