import type { InstanceView, KeepAlivePolicy, NodeView } from './types.ts';

/**
 * Fixed-TTL keep-alive (what OpenWhisk and AWS Lambda do): an idle instance
 * lives `defaultMs` (or its function's own `keepAlive.ms`); when room is
 * needed, the least recently used idle instances go first.
 */
export class FixedKeepAlive implements KeepAlivePolicy {
  readonly name = 'fixed';

  constructor(private readonly defaultMs: number) {}

  keepAliveMs(instance: InstanceView, _node: NodeView): number {
    return instance.keepAliveMs ?? this.defaultMs;
  }

  victims(needMb: number, node: NodeView): string[] {
    const idle = node.instances
      // A paused instance holds its memory too: it is as much a victim as an idle one.
      .filter((instance) => instance.state === 'idle' || instance.state === 'paused')
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
}
