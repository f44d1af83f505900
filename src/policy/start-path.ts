import type { InstanceView, NodeView } from './types.ts';

/**
 * Start paths: how an invocation gets an instance. Every path but `queue`
 * ends with an instance serving the invocation:
 *   warm     a running instance with a free slot
 *   paused   a frozen idle instance, thawed
 *   prewarm  a generic runtime bound to the function
 *   restore  a new instance restored from the function's snapshot
 *   cold     a new instance started from scratch
 */
export type StartChoice = 'warm' | 'paused' | 'prewarm' | 'restore' | 'cold';

/** What the start-path policy may choose from for one invocation of one function. */
export interface StartOptions {
  readonly functionName: string;
  readonly version: number;
  readonly memoryMb: number;
  /** Running instances of the current version with a free slot. */
  readonly warm: readonly InstanceView[];
  /** Frozen idle instances of the current version. */
  readonly paused: readonly InstanceView[];
  /** Ready prewarmed runtimes that could be bound to this function. */
  readonly prewarms: number;
  /** True when the function has a snapshot ready to restore. */
  readonly snapshotReady: boolean;
  /**
   * True when the function's instance cap allows one more instance. Memory
   * is the pool's to find: a start it cannot make room for waits in the queue.
   */
  readonly belowCap: boolean;
}

export type StartDecision =
  | { readonly path: 'warm' | 'paused'; readonly instanceId: string }
  | { readonly path: 'prewarm' | 'restore' | 'cold' }
  | { readonly path: 'queue' };

/** Chooses each invocation's start path from frozen views; never touches the pool. */
export interface StartPathPolicy {
  readonly name: string;
  choose(options: StartOptions, node: NodeView): StartDecision;
}

/** Why `decision` is not one `options` allows, or undefined when it is. */
export function invalidDecision(
  decision: StartDecision,
  options: StartOptions,
): string | undefined {
  switch (decision.path) {
    case 'warm':
    case 'paused': {
      const list = decision.path === 'warm' ? options.warm : options.paused;
      return list.some((instance) => instance.id === decision.instanceId)
        ? undefined
        : `instance ${decision.instanceId} is not a ${decision.path} candidate`;
    }
    case 'prewarm':
      if (options.prewarms <= 0) return 'no prewarmed runtime is ready';
      return options.belowCap ? undefined : 'the function is at its instance cap';
    case 'restore':
      if (!options.snapshotReady) return 'the function has no ready snapshot';
      return options.belowCap ? undefined : 'the function is at its instance cap';
    case 'cold':
      return options.belowCap ? undefined : 'the function is at its instance cap';
    case 'queue':
      return undefined;
  }
}

/** The most recently used of `instances` (the others can age out), if any. */
function mostRecent(instances: readonly InstanceView[]): InstanceView | undefined {
  let best: InstanceView | undefined;
  for (const instance of instances)
    if (!best || instance.lastUsedAt > best.lastUsedAt) best = instance;
  return best;
}

/** A new instance by the cheapest way there is, or undefined at the cap. */
function newInstance(options: StartOptions): StartDecision | undefined {
  if (!options.belowCap) return undefined;
  if (options.prewarms > 0) return { path: 'prewarm' };
  if (options.snapshotReady) return { path: 'restore' };
  return { path: 'cold' };
}

/**
 * The default, cheapest first: warm → paused → prewarm → restore → cold,
 * and the queue when the function is at its cap. Among instances, the most
 * recently used, so the rest age out (what OpenWhisk and Lambda do).
 */
export class WarmFirst implements StartPathPolicy {
  readonly name = 'warm-first';

  choose(options: StartOptions): StartDecision {
    const warm = mostRecent(options.warm);
    if (warm) return { path: 'warm', instanceId: warm.id };
    const paused = mostRecent(options.paused);
    if (paused) return { path: 'paused', instanceId: paused.id };
    return newInstance(options) ?? { path: 'queue' };
  }
}

/**
 * A new instance whenever the cap allows, reusing one only at the cap: the
 * baseline that shows what keeping instances buys (and a way to measure
 * start paths under load).
 */
export class NewFirst implements StartPathPolicy {
  readonly name = 'new-first';

  choose(options: StartOptions): StartDecision {
    const fresh = newInstance(options);
    if (fresh) return fresh;
    const warm = mostRecent(options.warm);
    if (warm) return { path: 'warm', instanceId: warm.id };
    const paused = mostRecent(options.paused);
    return paused ? { path: 'paused', instanceId: paused.id } : { path: 'queue' };
  }
}

export const START_PATH_POLICIES = {
  'warm-first': () => new WarmFirst(),
  'new-first': () => new NewFirst(),
} as const satisfies Record<string, () => StartPathPolicy>;
