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
  /**
   * The same idle or paused instances as in `instances`, least recently
   * idle first, made as they are walked (a policy that stops after a few
   * pays for a few). Absent (a hand-made view): filter `instances`.
   */
  readonly idleInstances?: Iterable<InstanceView>;
  /** One instance by id if it is idle or paused now; with `idleInstances`. */
  idleInstance?(id: string): InstanceView | undefined;
  /** The instances of one function (any state); with `idleInstances`. */
  instancesOf?(functionName: string): readonly InstanceView[];
}

/**
 * What the pool tells a policy as it happens (all times on the pool's clock):
 * an invocation arrived for a function, an instance finished starting (and
 * how long that took), an invocation finished on an instance.
 */
export type PolicyEvent =
  | { readonly kind: 'arrival'; readonly functionName: string; readonly at: number }
  | {
      readonly kind: 'started';
      readonly functionName: string;
      readonly instanceId: string;
      readonly at: number;
      readonly startMs: number;
      /** The instance's memory (absent from hand-made events). */
      readonly memoryMb?: number;
    }
  | {
      readonly kind: 'finished';
      readonly functionName: string;
      readonly instanceId: string;
      readonly memoryMb: number;
      readonly at: number;
    };

/** Decides how long an idle instance lives, and which idle ones go when room is needed. */
export interface KeepAlivePolicy {
  readonly name: string;
  /**
   * How long `instance`, now idle, stays alive before it is stopped.
   * `Infinity`: until memory is needed (no timer).
   */
  keepAliveMs(instance: InstanceView, node: NodeView): number;
  /** Idle or paused instances to stop so that `needMb` more fits; may free less if it cannot. */
  victims(needMb: number, node: NodeView): string[];
  /** Hears what happens in the pool; policies that learn (costs, idle times) implement it. */
  observe?(event: PolicyEvent): void;
  /**
   * Asked when an invocation of `functionName` has finished: the time (on
   * the pool's clock) to start one instance of it ahead of its next predicted
   * arrival, or undefined for none. The pool carries it out unless an
   * invocation arrives first.
   */
  prewarmAt?(functionName: string, node: NodeView): number | undefined;
}
