import { MinHeap } from './heap.ts';
import type { InstanceView, KeepAlivePolicy, NodeView, PolicyEvent } from './types.ts';

/** A priority given to an instance; `stamp` tells the current one from ones it replaced. */
interface Ranked {
  priority: number;
  usedAt: number;
  id: string;
  stamp: number;
}

interface FunctionFigures {
  /** Invocations since the function last had no instance. */
  frequency: number;
  /** Running mean of its start times (ms); undefined until one is measured. */
  costMs: number | undefined;
}

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
  /** Per function: its frequency and measured cost, one map entry (a lookup per event). */
  private readonly functions = new Map<string, FunctionFigures>();
  private readonly priorities = new Map<string, number>();
  /**
   * Every priority given, lowest first, for views the pool indexes (see
   * `victims`); an entry is current while its stamp is the instance's.
   */
  private readonly ranked = new MinHeap<Ranked>(
    (a, b) => a.priority < b.priority || (a.priority === b.priority && a.usedAt < b.usedAt),
  );
  private readonly stamps = new Map<string, number>();
  private nextStamp = 0;
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
        this.figuresOf(event.functionName).frequency += 1;
        return;
      case 'started': {
        const figures = this.figuresOf(event.functionName);
        const known = figures.costMs;
        figures.costMs =
          known === undefined ? event.startMs : known + this.smoothing * (event.startMs - known);
        // Never used yet (started ahead): priced as if used when it started.
        if (event.memoryMb !== undefined && !this.priorities.has(event.instanceId))
          this.rank(
            event.instanceId,
            this.priorityNow(event.functionName, event.memoryMb),
            event.at,
          );
        return;
      }
      case 'finished':
        this.rank(event.instanceId, this.priorityNow(event.functionName, event.memoryMb), event.at);
        return;
    }
  }

  /** The priority an instance of `functionName` gets if used now. */
  priorityNow(functionName: string, memoryMb: number): number {
    const size = Math.max(1, memoryMb);
    const figures = this.functions.get(functionName);
    const frequency = figures?.frequency ?? 0;
    const cost = figures?.costMs ?? this.defaultCostMs;
    return this.clockValue + (frequency * cost) / size;
  }

  /** Cost of a cold start of the function (ms), as measured so far. */
  cost(functionName: string): number {
    return this.functions.get(functionName)?.costMs ?? this.defaultCostMs;
  }

  private figuresOf(functionName: string): FunctionFigures {
    let figures = this.functions.get(functionName);
    if (!figures) {
      figures = { frequency: 0, costMs: undefined };
      this.functions.set(functionName, figures);
    }
    return figures;
  }

  /** A function with no instance left starts counting its frequency anew. */
  private resetFrequency(functionName: string): void {
    const figures = this.functions.get(functionName);
    if (figures) figures.frequency = 0;
  }

  private rank(id: string, priority: number, usedAt: number): void {
    this.priorities.set(id, priority);
    const stamp = this.nextStamp++;
    this.stamps.set(id, stamp);
    this.ranked.push({ priority, usedAt, id, stamp });
    // Stale entries (an instance used again, or gone) are dropped at the top; rebuild if they pile up.
    if (this.ranked.size > 2 * this.stamps.size + 1024)
      this.ranked.retain((r) => this.stamps.get(r.id) === r.stamp);
  }

  victims(needMb: number, node: NodeView): string[] {
    if (needMb <= 0) return [];
    if (node.idleInstance && node.instancesOf) return this.victimsByHeap(needMb, node);
    return this.victimsByScan(needMb, node);
  }

  /**
   * The pool's view: the lowest current priority first, from the heap, each
   * checked idle by id, so an eviction costs a few heap steps instead of a
   * sort of every instance. Instances the policy never heard of (none, in
   * the pool) are left to the scan.
   */
  private victimsByHeap(needMb: number, node: NodeView): string[] {
    const chosen: InstanceView[] = [];
    let freed = 0;
    while (freed < needMb) {
      const top = this.ranked.peek();
      if (!top) break;
      this.ranked.pop();
      if (this.stamps.get(top.id) !== top.stamp) continue;
      const instance = node.idleInstance!(top.id);
      if (!instance) {
        // Busy (its next finish ranks it again) or gone.
        this.stamps.delete(top.id);
        this.priorities.delete(top.id);
        continue;
      }
      chosen.push(instance);
      freed += instance.memoryMb;
      this.clockValue = Math.max(this.clockValue, top.priority);
    }
    const ids = chosen.map((i) => i.id);
    if (freed < needMb) {
      const rest = this.victimsByScan(needMb - freed, node, new Set(ids));
      ids.push(...rest);
    }
    for (const id of ids) {
      this.priorities.delete(id);
      this.stamps.delete(id);
    }
    const gone = new Set(ids);
    for (const name of new Set(chosen.map((i) => i.functionName))) {
      const left = node.instancesOf!(name).some((i) => !gone.has(i.id) && i.state !== 'dead');
      if (!left) this.resetFrequency(name);
    }
    return ids;
  }

  private victimsByScan(needMb: number, node: NodeView, except?: Set<string>): string[] {
    const instances = except ? node.instances.filter((i) => !except.has(i.id)) : node.instances;
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
    for (const id of gone) {
      this.priorities.delete(id);
      this.stamps.delete(id);
    }
    // Instances that died some other way (crash, new version) leave entries behind.
    if (this.priorities.size > 2 * all.length + 64) {
      const live = new Set(all.map((i) => i.id));
      for (const id of this.priorities.keys()) if (!live.has(id)) this.priorities.delete(id);
    }
    for (const name of new Set(evicted.map((i) => i.functionName))) {
      const left = all.some(
        (i) => i.functionName === name && !gone.has(i.id) && i.state !== 'dead',
      );
      if (!left) this.resetFrequency(name);
    }
  }
}
