/**
 * Petri's node network (DESIGN §10): bridge, per-instance namespaces, veths,
 * host-side shaping, egress NAT and address allocation.
 */
export { networkLayer, type NetworkLayer, type NetworkLayerOptions } from './layer.ts';
export { AddressAllocator, parseSubnet, parseIpv4, formatIpv4, type Subnet } from './address.ts';
export {
  nodeTagFrom,
  assertNodeTag,
  slotNames,
  netnsPath,
  chainNames,
  type SlotNames,
} from './naming.ts';
export {
  bridgeLines,
  slotHostLines,
  slotInnerLines,
  slotTeardownLines,
  shapingLines,
  reshapeLines,
  unshapeLines,
  shapeKey,
  egressRouteLines,
  type ShapingSpec,
} from './batch.ts';
export { cleanupAll, findLeftovers, listNetns, listLinks, type Leftovers } from './cleanup.ts';
export { BLOCKED_EGRESS, listChain, listFirewall, listForwardChain } from './firewall.ts';
export { readCounters, parseNetDev, type Counters } from './stats.ts';
export { NetCommandError, run as runCommand } from './exec.ts';
export {
  startIperfServer,
  runIperfClient,
  parseIperfJson,
  type IperfServer,
  type IperfResult,
  type IperfClientOptions,
  type IperfServerOptions,
} from './iperf.ts';
