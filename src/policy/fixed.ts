import type { InstanceView, KeepAlivePolicy, NodeView } from './types.ts';
import { lruVictims } from './victims.ts';

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
    return lruVictims(needMb, node);
  }
}
