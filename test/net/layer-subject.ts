import { fileURLToPath } from 'node:url';
import { parseConfig } from '../../src/config.ts';
import {
  cleanupAll,
  listForwardChain,
  networkLayer,
  type NetworkLayer,
} from '../../src/net/index.ts';
import { resourcesFor } from '../../src/sandbox/index.ts';
import { missingNetMechanism } from '../helpers/test-namespace.ts';
import { netTraces, netTracesOf } from '../helpers/traces.ts';
import type { LayerSubject } from '../sandbox/layer.case.ts';

/**
 * The network layer as a conformance subject. Its real cases run in a child
 * inside a test namespace (layer.test.ts passes `netLayerRef`), so the
 * bridge, namespaces and iptables chains never touch this host's network.
 */
/**
 * A bridge named after the case's tag, so a case run in this host's own
 * namespace (the switched-off one) never mistakes a real node's petri0 for
 * something the case left.
 */
function bridgeOf(tag: string): string {
  return `pb${tag}`.slice(0, 15);
}

export const netLayerSubject: LayerSubject = {
  kind: 'layer',
  name: 'network layer',
  make: (tag, options = {}) => {
    const config = parseConfig({
      stateDir: '/tmp/petri-net-conformance',
      network: { poolSize: 2, bridge: bridgeOf(tag) },
      isolation: options.off ? { network: 'off' } : {},
    });
    return networkLayer(config, tag, () => undefined);
  },
  spec: (id) => ({
    instanceId: id,
    functionName: 'net-conformance',
    version: 1,
    codeDir: '/tmp',
    cwd: '/tmp',
    entry: { runtime: 'exec', command: ['true'] },
    env: {},
    resources: resourcesFor(128, parseConfig({}).resources),
    // Egress on, so prepare also opens a firewall rule that destroy must close.
    network: { inbound: true, egress: true },
  }),
  missing: () => missingNetMechanism(),
  makesTraces: true,
  traces: async (tag, instance) => [
    ...(await netTracesOf(tag, instance.wrap([]))),
    ...(await egressRuleOf(tag, instance.address)),
  ],
  leftovers: (tag) => netTraces(tag, bridgeOf(tag)),
  settle: (layer) => (layer as NetworkLayer).poolIdle(),
  // Instance namespaces have global names; the bridge goes with the test namespace.
  cleanup: async (tag) => {
    await cleanupAll(tag);
  },
};

/** The firewall rule that lets `address` out, if the node's chain holds one. */
async function egressRuleOf(tag: string, address: string | undefined): Promise<string[]> {
  if (!address) return [];
  const chain = await listForwardChain(tag).catch(() => '');
  return chain.includes(`-s ${address}/32`) ? [`egress rule for ${address}`] : [];
}

export const netLayerRef = {
  module: fileURLToPath(import.meta.url),
  exportName: 'netLayerSubject',
};
