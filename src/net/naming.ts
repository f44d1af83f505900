import { createHash } from 'node:crypto';

/**
 * Names of what Petri makes in the kernel. Network namespace names are global
 * on the host (files under /run/netns) and interface names are limited to 15
 * characters, so every name carries the node's tag: two nodes on one host, or
 * a test next to a running node, never touch each other's leftovers.
 */

const TAG_PATTERN = /^[a-z][a-z0-9]{0,5}$/;
const IFNAME_PATTERN = /^[A-Za-z0-9_.-]{1,15}$/;
const IFNAME_MAX = 15;

/** A node tag of five lowercase letters derived from the state directory. */
export function nodeTagFrom(stateDir: string): string {
  const digest = createHash('sha256').update(stateDir).digest();
  // Letters only, so `pv<tag><n>` splits unambiguously into tag and number.
  return Array.from(digest.subarray(0, 5), (byte) => String.fromCharCode(97 + (byte % 26))).join(
    '',
  );
}

/** Throws unless `tag` is 1–6 chars of [a-z0-9] starting with a letter. */
export function assertNodeTag(tag: string): void {
  if (!TAG_PATTERN.test(tag)) {
    throw new Error(`node tag must match ${TAG_PATTERN} (got "${tag}")`);
  }
}

/** Throws unless `name` is a valid interface name (it is written into batch input). */
export function assertIfName(name: string): void {
  if (!IFNAME_PATTERN.test(name)) throw new Error(`invalid interface name "${name}"`);
}

export interface SlotNames {
  /** Network namespace, `petri-<tag>-<n>`. */
  netns: string;
  /** Host side of the veth pair, `pv<tag><n>`; its peer is `eth0` inside the namespace. */
  hostVeth: string;
  /** IFB device that carries the instance's upload through a TBF, `pi<tag><n>`. */
  ifb: string;
}

export function slotNames(tag: string, n: number): SlotNames {
  assertNodeTag(tag);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`bad slot number ${n}`);
  const names = { netns: `petri-${tag}-${n}`, hostVeth: `pv${tag}${n}`, ifb: `pi${tag}${n}` };
  if (names.hostVeth.length > IFNAME_MAX) throw new Error(`slot number ${n} too large`);
  return names;
}

/**
 * The bridge's own MAC: fixed (from the tag), locally administered. A bridge
 * left to pick its own takes the lowest of its ports' MACs and changes it as
 * instances come and go, and every change flushes the node's neighbour table
 * on it, the permanent entries too (neigh_changeaddr), and leaves instances
 * with a stale MAC for their gateway.
 */
export function bridgeMac(tag: string): string {
  const digest = createHash('sha256').update(`bridge:${tag}`).digest();
  return ['02', ...[...digest.subarray(0, 5)].map((b) => b.toString(16).padStart(2, '0'))].join(
    ':',
  );
}

/** Matchers for this tag's leftovers (used by reconcile and cleanupAll). */
export function leftoverMatchers(tag: string): { netns: RegExp; link: RegExp } {
  assertNodeTag(tag);
  return { netns: new RegExp(`^petri-${tag}-\\d+$`), link: new RegExp(`^p[vi]${tag}\\d+$`) };
}

export interface ChainNames {
  /** filter, jumped to from FORWARD: what is routed into, out of and across the bridge. */
  forward: string;
  /** filter, jumped to from INPUT: what instances may send to the node itself. */
  input: string;
  /** filter, jumped to from OUTPUT: what the node may open towards instances. */
  output: string;
  /** filter: one rule per instance with egress, sending its traffic to `destinations`. */
  egress: string;
  /** filter: where egress may go (the allow-list, then the blocked ranges). */
  destinations: string;
  /** nat, jumped to from POSTROUTING: MASQUERADE for egress. */
  nat: string;
}

/** iptables chain names for this node (≤ 28 chars). */
export function chainNames(tag: string): ChainNames {
  assertNodeTag(tag);
  const prefix = `PETRI-${tag.toUpperCase()}-`;
  return {
    forward: `${prefix}FWD`,
    input: `${prefix}IN`,
    output: `${prefix}OUT`,
    egress: `${prefix}EGRESS`,
    destinations: `${prefix}DEST`,
    nat: `${prefix}NAT`,
  };
}

/** The filter chain of one function group: which members may be connected to, and on what. */
export function groupChainName(tag: string, groupId: number): string {
  if (!Number.isSafeInteger(groupId) || groupId < 0 || groupId > 999_999)
    throw new Error(`bad group id ${groupId}`);
  return `${chainNames(tag).forward.slice(0, -'FWD'.length)}G${groupId}`;
}

/** Matches every group chain of this tag (reconcile and stop remove them). */
export function groupChainPattern(tag: string): RegExp {
  assertNodeTag(tag);
  return new RegExp(`^PETRI-${tag.toUpperCase()}-G\\d+$`);
}

/** Where `ip netns add` mounts a namespace; nsenter joins it by this path. */
export function netnsPath(netns: string): string {
  return `/run/netns/${netns}`;
}

/** The instance's end of its veth pair, inside its namespace. */
export const INSTANCE_IFNAME = 'eth0';
