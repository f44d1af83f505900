import path from 'node:path';
import type { Logger } from 'pino';
import {
  cgroupLayer,
  DAEMON_CPUSET_PREFIX,
  detectCgroups,
  enableFastCgroupMoves,
  type DaemonCpuset,
} from '../cgroup/index.ts';
import type { NodeConfig } from '../config.ts';
import { networkLayer, nodeTagFrom } from '../net/index.ts';
import {
  bwrapLayer,
  ProcessDriver,
  resolveHostTools,
  type IsolationLayer,
  type SandboxDriver,
} from '../sandbox/index.ts';

/**
 * Builds the node's sandbox driver with every isolation layer this node can
 * use, innermost first: bubblewrap, then the network namespace, then the
 * cgroup join (so the process is in its cgroup before anything else runs).
 * The node tag, derived from the state dir, keeps two nodes' cgroups,
 * namespaces and interfaces apart, so neither cleans up the other's. The
 * launch chain's tools (sh, nsenter, bwrap, setpriv) run as root, so they are
 * resolved once here, from the trusted PATH only, and named absolutely.
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
  const tools = resolveHostTools();
  const layers: IsolationLayer[] = [
    bwrapLayer(config, {
      warn,
      binary: tools.bwrap,
      setpriv: tools.setpriv,
      readOnlyPaths: [path.dirname(hostScript)],
      nodeBinary: config.runtime.nodeBinary,
    }),
    networkLayer(config, tag, warn, { nsenter: tools.nsenter }),
    cgroupLayer(config, tag, { warn, shell: tools.sh }),
  ];
  const limits = { responseBytes: config.responseLimitBytes, logLineBytes: config.logs.lineBytes };
  return new ProcessDriver({
    hostScript,
    layers,
    limits,
    launchTools: tools,
    nodeBinary: config.runtime.nodeBinary,
    prewarmDir: path.join(path.resolve(config.stateDir), 'prewarms'),
  });
}

/**
 * For CPU placement: moves the daemon into a cpuset cgroup of its own, named
 * after the node tag so two nodes never share one.
 */
export function daemonCpusetFor(config: NodeConfig): () => Promise<DaemonCpuset | undefined> {
  return async () => {
    if (config.isolation.cgroups === 'off') return undefined;
    const tag = nodeTagFrom(path.resolve(config.stateDir));
    return detectCgroups().daemonCpuset(`${DAEMON_CPUSET_PREFIX}${tag}`);
  };
}
