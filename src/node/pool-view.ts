import type { InstanceView, NodeView } from '../policy/index.ts';
import type { Instance } from './instance.ts';

/** What a PoolView reads from its pool, when asked. */
export interface PoolViewSource {
  memoryInUseMb(): number;
  allInstances(): Instance[];
  /** Idle or paused instances by id, least recently idle first. */
  readonly idleById: ReadonlyMap<string, Instance>;
  instancesOf(functionName: string): Iterable<Instance> | undefined;
}

/**
 * The pool's NodeView: its parts are computed when read, by methods (no
 * closures made per view), since the pool makes one for every decision and
 * most policies read little of it.
 */
export class PoolView implements NodeView {
  constructor(
    private readonly source: PoolViewSource,
    readonly now: number,
    readonly memoryBudgetMb: number,
  ) {}

  get memoryInUseMb(): number {
    return this.source.memoryInUseMb();
  }

  get instances(): InstanceView[] {
    return this.source.allInstances().map((i) => i.view());
  }

  /** Views made as they are walked: a policy that stops after a few victims pays for a few. */
  get idleInstances(): Iterable<InstanceView> {
    return idleViews(this.source.idleById);
  }

  idleInstance(id: string): InstanceView | undefined {
    return this.source.idleById.get(id)?.view();
  }

  instancesOf(functionName: string): InstanceView[] {
    return [...(this.source.instancesOf(functionName) ?? [])].map((i) => i.view());
  }
}

function* idleViews(idle: ReadonlyMap<string, Instance>): Generator<InstanceView> {
  for (const instance of idle.values()) yield instance.view();
}
