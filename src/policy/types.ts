/**
 * What a policy may see of the pool: read-only snapshots, never the pool's
 * internals, so the same policy code runs in a simulator with a fake clock.
 */
/** `paused`: idle and frozen by the cgroup freezer (memory kept, no CPU) until an invocation thaws it. */
export type InstanceState = 'starting' | 'idle' | 'paused' | 'busy' | 'stopping' | 'dead';

export interface InstanceView {
  readonly id: string;
  readonly functionName: string;
  readonly version: number;
  readonly state: InstanceState;
  readonly memoryMb: number;
  readonly inFlight: number;
  readonly startedAt: number;
  readonly lastUsedAt: number;
  readonly invocations: number;
  /** The function's own keep-alive override, if its spec has one. */
  readonly keepAliveMs?: number;
}

export interface NodeView {
  readonly now: number;
  readonly memoryBudgetMb: number;
  readonly memoryInUseMb: number;
  readonly instances: readonly InstanceView[];
}

/** Decides how long an idle instance lives, and which idle ones go when room is needed. */
export interface KeepAlivePolicy {
  readonly name: string;
  /** How long `instance`, now idle, stays alive before it is stopped. */
  keepAliveMs(instance: InstanceView, node: NodeView): number;
  /** Idle or paused instances to stop so that `needMb` more fits; may free less if it cannot. */
  victims(needMb: number, node: NodeView): string[];
}
