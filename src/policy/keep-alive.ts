import { FixedKeepAlive } from './fixed.ts';
import { GreedyDualKeepAlive } from './greedy-dual.ts';
import { HybridHistogramKeepAlive } from './hybrid-histogram.ts';
import type { InstanceView, KeepAlivePolicy, NodeView, PolicyEvent } from './types.ts';

export const KEEP_ALIVE_POLICY_NAMES = ['fixed', 'greedy-dual', 'hybrid-histogram'] as const;
export type KeepAlivePolicyName = (typeof KEEP_ALIVE_POLICY_NAMES)[number];

export function isKeepAlivePolicyName(name: string): name is KeepAlivePolicyName {
  return (KEEP_ALIVE_POLICY_NAMES as readonly string[]).includes(name);
}

/** What the node config gives every policy. */
export interface KeepAliveDefaults {
  /** The fixed keep-alive (and the hybrid policy's fallback), ms. */
  keepAliveMs: number;
}

/** A new policy of that name, with the node's defaults. */
export function makeKeepAlivePolicy(
  name: KeepAlivePolicyName,
  defaults: KeepAliveDefaults,
): KeepAlivePolicy {
  switch (name) {
    case 'fixed':
      return new FixedKeepAlive(defaults.keepAliveMs);
    case 'greedy-dual':
      return new GreedyDualKeepAlive();
    case 'hybrid-histogram':
      return new HybridHistogramKeepAlive({ fallbackMs: defaults.keepAliveMs });
  }
}

/**
 * The node's keep-alive: each function's spec may choose its policy
 * (`keepAlive.policy`), the node config chooses for the rest. One instance
 * of each policy in use serves all its functions. Under memory pressure the
 * node default's functions give up instances first, then each other policy's
 * in turn, each policy choosing among its own functions' instances.
 */
export class KeepAliveByFunction implements KeepAlivePolicy {
  readonly name: string;
  private readonly policies = new Map<KeepAlivePolicyName, KeepAlivePolicy>();

  constructor(
    private readonly defaultName: KeepAlivePolicyName,
    private readonly make: (name: KeepAlivePolicyName) => KeepAlivePolicy,
    private readonly policyOf: (functionName: string) => KeepAlivePolicyName | undefined,
  ) {
    this.name = defaultName;
  }

  /** The policy that decides for `functionName`. */
  of(functionName: string): KeepAlivePolicy {
    const name = this.policyOf(functionName);
    if (name === undefined || name === this.defaultName)
      return (this.defaultPolicy ??= this.named(this.defaultName));
    return this.named(name);
  }

  private defaultPolicy: KeepAlivePolicy | undefined;

  private named(name: KeepAlivePolicyName): KeepAlivePolicy {
    let policy = this.policies.get(name);
    if (!policy) {
      policy = this.make(name);
      this.policies.set(name, policy);
    }
    return policy;
  }

  keepAliveMs(instance: InstanceView, node: NodeView): number {
    return this.of(instance.functionName).keepAliveMs(instance, node);
  }

  observe(event: PolicyEvent): void {
    this.of(event.functionName).observe?.(event);
  }

  prewarmAt(functionName: string, node: NodeView): number | undefined {
    return this.of(functionName).prewarmAt?.(functionName, node);
  }

  victims(needMb: number, node: NodeView): string[] {
    if (needMb <= 0) return [];
    if (this.policies.size === 1) return [...this.policies.values()][0].victims(needMb, node);
    const instances = node.instances;
    const byPolicy = new Map<KeepAlivePolicy, InstanceView[]>();
    for (const instance of instances) {
      const policy = this.of(instance.functionName);
      const own = byPolicy.get(policy) ?? [];
      own.push(instance);
      byPolicy.set(policy, own);
    }
    const first = this.named(this.defaultName);
    const order = [first, ...[...this.policies.values()].filter((p) => p !== first)];
    const chosen: string[] = [];
    let freed = 0;
    const memoryOf = new Map(instances.map((i) => [i.id, i.memoryMb]));
    for (const policy of order) {
      if (freed >= needMb) break;
      const own = byPolicy.get(policy) ?? [];
      const view: NodeView = {
        now: node.now,
        memoryBudgetMb: node.memoryBudgetMb,
        memoryInUseMb: node.memoryInUseMb,
        instances: own,
      };
      for (const id of policy.victims(needMb - freed, view)) {
        chosen.push(id);
        freed += memoryOf.get(id) ?? 0;
      }
    }
    return chosen;
  }
}
