import type { InstanceView, NodeView } from './types.ts';

/**
 * Idle instances, least recently used first, until `needMb` is freed. A
 * paused instance holds its memory too: it is as much a victim as an idle one.
 * (The pool's order is by when an instance became idle, which is its last
 * use, or its start for one started ahead and never used.)
 */
export function lruVictims(needMb: number, node: NodeView): string[] {
  if (needMb <= 0) return [];
  // The pool's own order walks only as far as it must; a hand-made view is sorted here.
  const idle =
    node.idleInstances ??
    node.instances
      .filter((instance: InstanceView) => instance.state === 'idle' || instance.state === 'paused')
      .sort((a, b) => a.lastUsedAt - b.lastUsedAt);
  const chosen: string[] = [];
  let freed = 0;
  for (const instance of idle) {
    if (freed >= needMb) break;
    chosen.push(instance.id);
    freed += instance.memoryMb;
  }
  return chosen;
}
