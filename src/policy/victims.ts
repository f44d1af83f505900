import type { InstanceView, NodeView } from './types.ts';

/**
 * Idle instances, least recently used first, until `needMb` is freed. A
 * paused instance holds its memory too: it is as much a victim as an idle one.
 */
export function lruVictims(needMb: number, node: NodeView): string[] {
  const idle = node.instances
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
