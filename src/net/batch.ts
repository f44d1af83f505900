import { INSTANCE_IFNAME, type SlotNames } from './naming.ts';

/**
 * The text of the `ip -batch` / `tc -batch` rounds. Kept pure so unit tests
 * can pin exactly what is sent to the kernel. Every value written here comes
 * from the allocator, the naming module or a validated config field, never
 * from function code.
 */

export interface BridgeSpec {
  bridge: string;
  gateway: string;
  prefixLength: number;
  /** The bridge's fixed MAC (naming.ts bridgeMac). */
  mac: string;
}

/**
 * Creates the bridge (when missing) and gives it the gateway address. A bridge
 * left by a crashed run loses the permanent neighbour entries of its instances
 * (slotHostLines): none of them is alive.
 */
export function bridgeLines(spec: BridgeSpec, exists: boolean): string[] {
  return [
    ...(exists
      ? [`neigh flush dev ${spec.bridge} nud permanent`]
      : [`link add ${spec.bridge} type bridge`]),
    `link set ${spec.bridge} address ${spec.mac}`,
    `addr replace ${spec.gateway}/${spec.prefixLength} dev ${spec.bridge}`,
    `link set ${spec.bridge} up`,
  ];
}

/**
 * Host side of one ready namespace: the namespace, a veth whose peer is born
 * inside it as eth0, the host end on the bridge, and the IFB for upload
 * shaping. One round.
 *
 * The host end is an isolated bridge port: isolated ports exchange no frames
 * with each other, only with the bridge itself (the gateway), so no instance
 * reaches another at layer 2, whether or not br_netfilter shows bridged
 * traffic to iptables. It gets no IPv6 link-local address (nothing uses one).
 * With `mac`, the instance's eth0 gets that address (group-path.ts needs to
 * know it without asking the namespace), and the node resolves the
 * instance's `address` to it for good (a permanent neighbour entry), so no
 * ARP an instance sends, whatever sender address it claims, can move another
 * instance's traffic from the node to itself.
 */
export function slotHostLines(
  names: SlotNames & { mac?: string; address?: string },
  bridge: string,
): string[] {
  const mac = names.mac ? ` address ${names.mac}` : '';
  return [
    `netns add ${names.netns}`,
    `link add ${names.hostVeth} type veth peer name ${INSTANCE_IFNAME}${mac} netns ${names.netns}`,
    `link set ${names.hostVeth} master ${bridge} addrgenmode none up`,
    `link set ${names.hostVeth} type bridge_slave isolated on`,
    `link add ${names.ifb} type ifb`,
    `link set ${names.ifb} up`,
    ...(names.mac && names.address
      ? [`neigh replace ${names.address} lladdr ${names.mac} dev ${bridge} nud permanent`]
      : []),
  ];
}

/**
 * Inside the namespace (`ip -n <ns> -batch`): the address with the subnet's
 * prefix, which also installs the only route — the one to the bridge subnet.
 * eth0 gets no IPv6 address (addrgenmode none before it comes up), so an
 * instance has no IPv6 beyond its own loopback and, lacking CAP_NET_ADMIN,
 * cannot add one.
 */
export function slotInnerLines(address: string, prefixLength: number): string[] {
  return [
    'link set lo up',
    `link set ${INSTANCE_IFNAME} addrgenmode none`,
    `addr add ${address}/${prefixLength} dev ${INSTANCE_IFNAME}`,
    `link set ${INSTANCE_IFNAME} up`,
  ];
}

/** Default route for an instance with egress (inside its namespace). */
export function egressRouteLines(gateway: string): string[] {
  return [`route replace default via ${gateway} dev ${INSTANCE_IFNAME}`];
}

/**
 * Host-side tear-down. The veth goes first and explicitly: deleting a
 * namespace frees its devices only once the kernel's async cleanup runs (and
 * never while a straggler process holds it), so the pair would linger.
 */
export function slotTeardownLines(
  names: SlotNames & { mac?: string; address?: string },
  bridge?: string,
): string[] {
  const lines = [`link del ${names.hostVeth}`, `link del ${names.ifb}`, `netns del ${names.netns}`];
  // The node's permanent entry for the address goes with it (slotHostLines).
  if (bridge && names.mac && names.address) {
    lines.push(`neigh flush to ${names.address} dev ${bridge} nud permanent`);
  }
  return lines;
}

export interface ShapingSpec {
  hostVeth: string;
  ifb: string;
  bandwidthMbit: number;
  burstBytes: number;
  /** Queueing delay TBF allows before it drops; sizes the queue with the rate. */
  latencyMs?: number;
}

/** TBF needs a bucket of at least one full frame or nothing passes. */
const MIN_BURST = 2 * 1514;
const DEFAULT_LATENCY_MS = 50;

function tbf(spec: ShapingSpec): string {
  const kbit = Math.max(8, Math.round(spec.bandwidthMbit * 1000));
  const burst = Math.max(MIN_BURST, Math.round(spec.burstBytes));
  return `tbf rate ${kbit}kbit burst ${burst} latency ${spec.latencyMs ?? DEFAULT_LATENCY_MS}ms`;
}

/**
 * Both directions, host side only, so nothing inside the namespace can lift
 * them. Download: TBF as the root qdisc of the host veth (host → instance).
 * Upload: the host veth's ingress (instance → host) is redirected to the IFB,
 * whose root TBF shapes it.
 */
export function shapingLines(spec: ShapingSpec): string[] {
  return [
    `qdisc add dev ${spec.hostVeth} root handle 1: ${tbf(spec)}`,
    `qdisc add dev ${spec.hostVeth} handle ffff: ingress`,
    `filter add dev ${spec.hostVeth} parent ffff: protocol all prio 1 u32 match u32 0 0 action mirred egress redirect dev ${spec.ifb}`,
    `qdisc add dev ${spec.ifb} root handle 1: ${tbf(spec)}`,
  ];
}

/** New rate/burst for a slot the pool already shaped at another rate. */
export function reshapeLines(spec: ShapingSpec): string[] {
  return [
    `qdisc change dev ${spec.hostVeth} root handle 1: ${tbf(spec)}`,
    `qdisc change dev ${spec.ifb} root handle 1: ${tbf(spec)}`,
  ];
}

/** Removes a pool slot's shaping for an instance that is not shaped. */
export function unshapeLines(names: Pick<ShapingSpec, 'hostVeth' | 'ifb'>): string[] {
  return [
    `qdisc del dev ${names.hostVeth} root`,
    `qdisc del dev ${names.hostVeth} ingress`,
    `qdisc del dev ${names.ifb} root`,
  ];
}

/** Identifies the TBF parameters a slot is shaped with (pool reuse test). */
export function shapeKey(spec: Pick<ShapingSpec, 'bandwidthMbit' | 'burstBytes'>): string {
  return tbf({ hostVeth: '', ifb: '', ...spec });
}
