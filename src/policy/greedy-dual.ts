import type { InstanceView, KeepAlivePolicy, NodeView, PolicyEvent } from './types.ts';

export interface GreedyDualOptions {
  /** Cost (ms) of a function whose start the node has not measured yet. */
  defaultCostMs?: number;
  /** Weight of the newest start time in a function's running mean of start times. */
  costSmoothing?: number;
}

/**
 * Greedy-Dual keep-alive (FaasCache, Fuerst & Sharma, ASPLOS'21): idle
 * instances are kept while memory allows; under pressure the one with the
 * lowest priority goes first, where
 *
 *   priority = clock + frequency × cost / size
 *
 * frequency is the function's invocations since it last had no instance,
 * cost what a cold start costs over a warm one (its start time, measured by
 * the node per function), size its memory. An instance's priority is set
 * each time it is used; evicting one sets the clock to its priority, so
 * instances used long ago age out relative to recent ones.
 */
export class GreedyDualKeepAlive implements KeepAlivePolicy {
  readonly name = 'greedy-dual';
  private clockValue = 0;
  private readonly frequency = new Map<string, number>();
  private readonly costMs = new Map<string, number>();
  private readonly priorities = new Map<string, number>();
  private readonly defaultCostMs: number;
  private readonly smoothing: number;

  constructor(options: GreedyDualOptions = {}) {
    this.defaultCostMs = options.defaultCostMs ?? 100;
    this.smoothing = options.costSmoothing ?? 0.2;
  }

  /** The Greedy-Dual clock: the priority of the last instance evicted. */
  get clock(): number {
    return this.clockValue;
  }

  keepAliveMs(): number {
    return Number.POSITIVE_INFINITY;
  }

  observe(event: PolicyEvent): void {
    switch (event.kind) {
      case 'arrival':
        this.frequency.set(event.functionName, (this.frequency.get(event.functionName) ?? 0) + 1);
        return;
      case 'started': {
        const known = this.costMs.get(event.functionName);
        const next =
          known === undefined ? event.startMs : known + this.smoothing * (event.startMs - known);
        this.costMs.set(event.functionName, next);
        return;
      }
      case 'finished':
        this.priorities.set(event.instanceId, this.priorityNow(event.functionName, event.memoryMb));
        return;
    }
  }

  /** The priority an instance of `functionName` gets if used now. */
  priorityNow(functionName: string, memoryMb: number): number {
    const size = Math.max(1, memoryMb);
    const frequency = this.frequency.get(functionName) ?? 0;
    return this.clockValue + (frequency * this.cost(functionName)) / size;
  }

  /** Cost of a cold start of the function (ms), as measured so far. */
  cost(functionName: string): number {
    return this.costMs.get(functionName) ?? this.defaultCostMs;
  }

  victims(needMb: number, node: NodeView): string[] {
    if (needMb <= 0) return [];
    const instances = node.instances;
    const ranked = instances
      .filter((i) => i.state === 'idle' || i.state === 'paused')
      .map((i) => ({ instance: i, priority: this.priorityOf(i) }))
      .sort((a, b) => a.priority - b.priority || a.instance.lastUsedAt - b.instance.lastUsedAt);
    const chosen: InstanceView[] = [];
    let freed = 0;
    for (const { instance, priority } of ranked) {
      if (freed >= needMb) break;
      chosen.push(instance);
      freed += instance.memoryMb;
      this.clockValue = Math.max(this.clockValue, priority);
    }
    this.forget(chosen, instances);
    return chosen.map((i) => i.id);
  }

  private priorityOf(instance: InstanceView): number {
    const known = this.priorities.get(instance.id);
    if (known !== undefined) return known;
    // Never used yet (started ahead): priority as if used when first seen.
    const priority = this.priorityNow(instance.functionName, instance.memoryMb);
    this.priorities.set(instance.id, priority);
    return priority;
  }

  /** Drops evicted instances; a function left with none starts counting its frequency anew. */
  private forget(evicted: InstanceView[], all: readonly InstanceView[]): void {
    const gone = new Set(evicted.map((i) => i.id));
    for (const id of gone) this.priorities.delete(id);
    // Instances that died some other way (crash, new version) leave entries behind.
    if (this.priorities.size > 2 * all.length + 64) {
      const live = new Set(all.map((i) => i.id));
      for (const id of this.priorities.keys()) if (!live.has(id)) this.priorities.delete(id);
    }
    for (const name of new Set(evicted.map((i) => i.functionName))) {
      const left = all.some(
        (i) => i.functionName === name && !gone.has(i.id) && i.state !== 'dead',
      );
      if (!left) this.frequency.delete(name);
    }
  }
}
