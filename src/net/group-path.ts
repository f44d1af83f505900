import { randomBytes } from 'node:crypto';
import { ipBatch, tcBatch } from './exec.ts';
import { INSTANCE_IFNAME } from './naming.ts';

/**
 * The direct path between members of one group (Boxer's member-to-member
 * traffic, issue #13). Without it a member's packet for a peer goes up the
 * bridge, through the node's routing, conntrack and the forward chain's group
 * rules, and down the bridge again (group-firewall.ts): twice the bridge and
 * netfilter of a plain veth pair. With it, the packet leaves the sender's host
 * veth straight for the receiver's:
 *
 *   - on the sender's host veth, an ingress u32 filter for exactly
 *     `src <sender>/32 dst <peer>/32` (IPv4) with `mirred egress redirect` to
 *     the peer's host veth, one per peer (handle 800::<peer's key>);
 *   - inside the sender's namespace, a permanent neighbour entry for the peer
 *     with the peer's own eth0 MAC (the node sets it; the instance, without
 *     CAP_NET_ADMIN, cannot change it), so the redirected frame is addressed
 *     to the peer and its eth0 takes it. Every other address still resolves
 *     to the bridge (proxy ARP) and goes the routed way.
 *
 * Only a pair the group rules would pass whole takes it: both members open
 * every port (`network.inbound: true`, so the group chain accepts any IPv4
 * packet between them, either way — exactly what the filters pass, with no
 * state needed) and neither is shaped (a shaped member's upload must go
 * through its IFB, which this path would skip). Any other member, and any
 * pair with one, stays on the routed path and its rules.
 *
 * Fail-closed: a frame addressed to a peer's MAC that no filter takes (a
 * member the filters were not yet, or no longer, made for; a non-member that
 * learnt a MAC) reaches the bridge on an isolated port, which forwards it to
 * no other instance's port, and the node does not route a frame that is not
 * addressed to it. The filters match the sender's own source address, so a
 * spoofed source never takes the path.
 */

/** A member as the direct path sees it. */
export interface PathMember {
  hostVeth: string;
  netns: string;
  address: string;
  mac: string;
}

/** u32 priority of the peer filters on a member's host veth ingress. */
export const PEER_PRIO = 10;
/** u32 node ids are 12 bits: peers of one member are keyed 1…4095. */
export const MAX_PEER_KEY = 0xfff;

/** A random locally administered unicast MAC (for an instance's eth0). */
export function randomMac(): string {
  const bytes = randomBytes(6);
  bytes[0] = (bytes[0] & 0xfe) | 0x02;
  return [...bytes].map((b) => b.toString(16).padStart(2, '0')).join(':');
}

/** The sender's filter that sends its packets for `to` straight to `to`'s host veth. */
export function peerFilterLine(from: PathMember, to: PathMember, toKey: number): string {
  return (
    `filter add dev ${from.hostVeth} parent ffff: prio ${PEER_PRIO} handle 800::${toKey.toString(16)} ` +
    `protocol ip u32 match ip src ${from.address}/32 match ip dst ${to.address}/32 ` +
    `action mirred egress redirect dev ${to.hostVeth}`
  );
}

export function peerFilterDelLine(from: PathMember, toKey: number): string {
  return `filter del dev ${from.hostVeth} parent ffff: prio ${PEER_PRIO} handle 800::${toKey.toString(16)} protocol ip u32`;
}

/** Inside a member's namespace: its peer's address resolves to the peer's MAC. */
export function peerNeighLine(peer: PathMember): string {
  return `neigh replace ${peer.address} lladdr ${peer.mac} dev ${INSTANCE_IFNAME} nud permanent`;
}

export function peerNeighDelLine(peer: PathMember): string {
  return `neigh del ${peer.address} dev ${INSTANCE_IFNAME}`;
}

/**
 * `tc -batch` lines that join `member` to `peers` both ways: its ingress qdisc
 * (an unshaped slot has none), a filter per peer on its side and one on each
 * peer's side.
 */
export function joinFilterLines(
  member: PathMember,
  key: number,
  peers: readonly { member: PathMember; key: number }[],
): string[] {
  const lines = [`qdisc add dev ${member.hostVeth} handle ffff: ingress`];
  for (const peer of peers) {
    lines.push(peerFilterLine(member, peer.member, peer.key));
    lines.push(peerFilterLine(peer.member, member, key));
  }
  return lines;
}

/** `tc -batch` lines that take `member` out of its peers' filters and drop its own. */
export function leaveFilterLines(
  member: PathMember,
  key: number,
  peers: readonly { member: PathMember }[],
): string[] {
  return [
    ...peers.map((peer) => peerFilterDelLine(peer.member, key)),
    `qdisc del dev ${member.hostVeth} handle ffff: ingress`,
  ];
}

interface Joined {
  member: PathMember;
  key: number;
}

/**
 * Per group, the members on the direct path. Joins and leaves of one group
 * run one at a time (a member joining while another does would miss it).
 */
export class GroupPaths {
  private readonly groups = new Map<number, GroupState>();

  /** Members of `groupId` on the direct path (tests, diagnostics). */
  members(groupId: number): PathMember[] {
    return (this.groups.get(groupId)?.members ?? []).map((j) => j.member);
  }

  join(groupId: number, member: PathMember): Promise<void> {
    return this.serial(groupId, async (group) => {
      const key = freeKey(group.members);
      if (key === undefined) return; // beyond 4095 members: the routed path serves it
      const peers = [...group.members];
      // Listed before the first command, so a failed join's leave removes what got in.
      group.members.push({ member, key });
      // Filters before neighbour entries: a frame sent to a peer's MAC before its
      // filter exists would only be dropped by the isolated port.
      await tcBatch(joinFilterLines(member, key, peers));
      if (peers.length === 0) return;
      await Promise.all([
        ipBatch(
          peers.map((peer) => peerNeighLine(peer.member)),
          { netns: member.netns },
        ),
        ...peers.map((peer) => ipBatch([peerNeighLine(member)], { netns: peer.member.netns })),
      ]);
    });
  }

  /** Takes the member at `address` off the path (quiet when it was never on it). */
  leave(groupId: number, address: string): Promise<void> {
    return this.serial(groupId, async (group) => {
      const joined = group.members.find((j) => j.member.address === address);
      if (!joined) return;
      group.members = group.members.filter((j) => j !== joined);
      const peers = group.members;
      // Peers forget its MAC first (their packets for the address go the routed way, where
      // the forward chain decides), then the filters towards it and its own go.
      await Promise.all(
        peers.map((peer) =>
          ipBatch([peerNeighDelLine(joined.member)], { netns: peer.member.netns }).catch(
            () => undefined,
          ),
        ),
      );
      await tcBatch(leaveFilterLines(joined.member, joined.key, peers), { force: true }).catch(
        () => undefined,
      );
    });
  }

  private serial(groupId: number, step: (group: GroupState) => Promise<void>): Promise<void> {
    let group = this.groups.get(groupId);
    if (!group) {
      group = { members: [], queue: Promise.resolve(), pending: 0 };
      this.groups.set(groupId, group);
    }
    const g = group;
    g.pending += 1;
    const next = g.queue.then(() => step(g));
    g.queue = next
      .catch(() => undefined)
      .finally(() => {
        g.pending -= 1;
        if (g.pending === 0 && g.members.length === 0 && this.groups.get(groupId) === g)
          this.groups.delete(groupId);
      });
    return next;
  }
}

interface GroupState {
  members: Joined[];
  queue: Promise<void>;
  pending: number;
}

function freeKey(members: readonly Joined[]): number | undefined {
  const used = new Set(members.map((j) => j.key));
  for (let key = 1; key <= MAX_PEER_KEY; key++) if (!used.has(key)) return key;
  return undefined;
}
