import path from 'node:path';
import type { Logger } from 'pino';
import {
  cgroupLayer,
  detectCgroups,
  enableFastCgroupMoves,
  type DaemonCpuset,
} from '../cgroup/index.ts';
import type { NodeConfig } from '../config.ts';
import { networkLayer, nodeTagFrom } from '../net/index.ts';
import { bwrapLayer } from './bwrap.ts';
import type { IsolationLayer } from './layer.ts';
import { ProcessDriver } from './process.ts';
import type { SandboxDriver } from './types.ts';

/**
 * Builds the node's sandbox driver with every isolation layer this node can
 * use, innermost first: bubblewrap, then the network namespace, then the
 * cgroup join (so the process is in its cgroup before anything else runs).
 * The node tag, derived from the state dir, keeps two nodes' cgroups,
 * namespaces and interfaces apart, so neither cleans up the other's.
 */
export async function createDriver(
  config: NodeConfig,
  hostScript: string,
  log: Logger,
): Promise<SandboxDriver> {
  const warn = (message: string): void => log.warn(message);
  const tag = nodeTagFrom(path.resolve(config.stateDir));
  if (config.isolation.cgroups !== 'off' && config.isolation.fastCgroupMoves !== 'off') {
    const result = enableFastCgroupMoves();
    if (result === 'enabled') log.info('remounted cgroup2 with favordynmods for fast cgroup moves');
  }
  const layers: IsolationLayer[] = [
    bwrapLayer(config, { warn, readOnlyPaths: [path.dirname(hostScript)] }),
    networkLayer(config, tag, warn),
    cgroupLayer(config, tag, { warn }),
  ];
  return new ProcessDriver({ hostScript, nodeBinary: config.runtime.nodeBinary, layers });
}

/**
 * For CPU placement: moves the daemon into a cpuset cgroup of its own, named
 * after the node tag so two nodes never share one.
 */
export function daemonCpusetFor(config: NodeConfig): () => Promise<DaemonCpuset | undefined> {
  return async () => {
    if (config.isolation.cgroups === 'off') return undefined;
    const tag = nodeTagFrom(path.resolve(config.stateDir));
    return detectCgroups().daemonCpuset(`petri-daemon-${tag}`);
  };
}
