import { readFile, writeFile } from 'node:fs/promises';
import type { EgressAllow } from '../config.ts';
import { run } from './exec.ts';
import { chainNames, groupChainPattern, type ChainNames } from './naming.ts';

/**
 * The node's network boundary in iptables (nf_tables-backed on Debian 12),
 * in chains of its own (names carry the node tag, see naming.ts):
 *
 *   FWD (from FORWARD): replies back into the bridge pass; traffic routed
 *     from the bridge back into it (one instance to another through the
 *     gateway) is refused (TCP reset, the rest dropped) unless both are peers
 *     in one group; new connections from outside into the bridge drop;
 *     instances with egress go to EGRESS; everything else from the bridge drops.
 *   IN (from INPUT): from the bridge to the node itself only replies pass,
 *     plus the services Petri offers instances (`services`, none yet) and,
 *     for egress instances, allow-listed node addresses; the rest is rejected.
 *   OUT (from OUTPUT): the node opens nothing towards instances but to those
 *     whose spec allows inbound (a per-instance ACCEPT); replies pass.
 *   EGRESS: one `-s <address>/32 -j DEST` per instance with egress.
 *   DEST: where egress may go: the config's allow-list, then no address of the
 *     node's own nor broadcast or multicast, no private, link-local or other
 *     non-public range; the rest is accepted (and NATed by the nat chain).
 *   NAT (from POSTROUTING): MASQUERADE for the subnet leaving the subnet.
 *
 * Bridged traffic between two instances never reaches these chains unless
 * br_netfilter is on; the network layer stops it at layer 2 instead (every
 * host veth is an isolated bridge port). The missing default route already
 * keeps a well-behaved instance in; the rules are what holds when a function
 * with CAP_NET_ADMIN in its namespace adds a route itself. Source addresses
 * are trusted: sandboxed instances have no capability to spoof one.
 */

const IPT = 'iptables';
const IPT_RESTORE = 'iptables-restore';

function ipt(args: readonly string[]): Promise<string> {
  // -w: wait for the xtables lock instead of failing when another tool holds it.
  return run(IPT, ['-w', ...args]);
}

/** Applies iptables-restore text on top of what is there, in one process. */
function restore(text: string): Promise<string> {
  return run(IPT_RESTORE, ['-w', '--noflush'], text);
}

/** A port on the node that instances may reach (see `FirewallSpec.services`). */
export interface NodeService {
  address: string;
  port: number;
  protocol: 'tcp' | 'udp';
}

export interface FirewallSpec {
  tag: string;
  bridge: string;
  /** Normalised subnet, e.g. 10.213.0.0/16. */
  subnet: string;
  /** Destinations egress may reach although their range is blocked (node config). */
  egressAllow: readonly EgressAllow[];
  /**
   * Services Petri itself offers every instance on the node (e.g. a group
   * coordinator on the gateway). None yet: this is where they go.
   */
  services: readonly NodeService[];
}

/**
 * What egress never reaches unless allow-listed: private (RFC 1918), shared
 * CGN (RFC 6598), link-local (cloud metadata at 169.254.169.254), loopback,
 * "this network", multicast and reserved space. The node's own addresses are
 * matched by address type, whatever they are.
 */
export const BLOCKED_EGRESS: readonly string[] = [
  '0.0.0.0/8',
  '10.0.0.0/8',
  '100.64.0.0/10',
  '127.0.0.0/8',
  '169.254.0.0/16',
  '172.16.0.0/12',
  '192.168.0.0/16',
  '224.0.0.0/4',
  '240.0.0.0/4',
];

/** Instances are told at once (a TCP connect fails with EHOSTUNREACH) instead of timing out. */
const REJECT = ['-j', 'REJECT', '--reject-with', 'icmp-admin-prohibited'];
const REPLIES = ['-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', '-j', 'ACCEPT'];

function portRule(target: { address: string; port: number; protocol: string }): string[] {
  const { address, port, protocol } = target;
  return ['-d', `${address}/32`, '-p', protocol, '--dport', String(port), '-j', 'ACCEPT'];
}

/** The per-instance rule in the egress chain. */
export function egressRuleArgs(spec: FirewallSpec, address: string): string[] {
  return ['-s', `${address}/32`, '-j', chainNames(spec.tag).destinations];
}

/** What an instance's spec lets others connect to: everything, or these TCP ports. */
export type InboundPorts = true | readonly number[];

/**
 * ACCEPTs for connections to `address` (the output chain's, for the node, and
 * a group chain's, for peers): any port with `true`, else one rule per TCP port.
 */
export function inboundRules(address: string, inbound: InboundPorts): string[][] {
  const to = ['-d', `${address}/32`];
  if (inbound === true) return [[...to, '-j', 'ACCEPT']];
  return inbound.map((port) => [...to, '-p', 'tcp', '--dport', String(port), '-j', 'ACCEPT']);
}

/** The per-instance ACCEPT in the output chain: the node may connect to `address`. */
export function inboundRuleArgs(address: string): string[] {
  return inboundRules(address, true)[0];
}

const FILTER_CHAINS = ['forward', 'input', 'output', 'egress', 'destinations'] as const;
type FilterChain = (typeof FILTER_CHAINS)[number];
const JUMPS: [FilterChain, string][] = [
  ['forward', 'FORWARD'],
  ['input', 'INPUT'],
  ['output', 'OUTPUT'],
];

/** Rules of each filter chain, in order (without per-instance rules). */
export function filterRules(spec: FirewallSpec): Record<FilterChain, string[][]> {
  const br = spec.bridge;
  const chains = chainNames(spec.tag);
  return {
    forward: [
      ['-o', br, ...REPLIES],
      // TCP is reset, so a member trying a non-peer learns at once (group-firewall.ts); chosen
      // over ICMP when the node's redirects (now off, layer.ts) used up the ICMP rate limit.
      ['-i', br, '-o', br, '-p', 'tcp', '-j', 'REJECT', '--reject-with', 'tcp-reset'],
      ['-i', br, '-o', br, '-j', 'DROP'],
      ['-o', br, '-j', 'DROP'],
      ['-i', br, '-j', chains.egress],
      ['-i', br, '-j', 'DROP'],
    ],
    input: [
      ['!', '-i', br, '-j', 'RETURN'],
      REPLIES,
      ...spec.services.map(portRule),
      ['-j', chains.egress],
      REJECT,
    ],
    // Per-instance inbound ACCEPTs go in at position 2, after the RETURN.
    output: [['!', '-o', br, '-j', 'RETURN'], REPLIES, REJECT],
    egress: [],
    destinations: [
      ...spec.egressAllow.map(portRule),
      ['-m', 'addrtype', '!', '--dst-type', 'UNICAST', ...REJECT],
      ...BLOCKED_EGRESS.map((range) => ['-d', range, ...REJECT]),
      ['-j', 'ACCEPT'],
    ],
  };
}

export function natRule(spec: FirewallSpec): string[] {
  return ['-s', spec.subnet, '!', '-d', spec.subnet, '-j', 'MASQUERADE'];
}

/** The iptables-restore text that creates the filter chains and their jumps. */
export function filterRestoreText(spec: FirewallSpec): string {
  const chains = chainNames(spec.tag);
  const rules = filterRules(spec);
  const lines = ['*filter'];
  for (const key of FILTER_CHAINS) lines.push(`:${chains[key]} - [0:0]`);
  for (const key of FILTER_CHAINS) {
    for (const rule of rules[key]) lines.push(['-A', chains[key], ...rule].join(' '));
  }
  for (const [key, parent] of JUMPS) lines.push(`-I ${parent} 1 -j ${chains[key]}`);
  lines.push('COMMIT', '');
  return lines.join('\n');
}

/** Creates this node's filter chains afresh (after removing any old ones), in one transaction. */
export async function installFirewall(spec: FirewallSpec): Promise<void> {
  await removeFirewall(spec.tag);
  await restore(filterRestoreText(spec));
}

/** Creates the MASQUERADE chain (separately: a node may have a filter table but no nat). */
export async function installNat(spec: FirewallSpec): Promise<void> {
  const nat = chainNames(spec.tag).nat;
  const text = ['*nat', `:${nat} - [0:0]`, ['-A', nat, ...natRule(spec)].join(' ')];
  text.push(`-I POSTROUTING 1 -j ${nat}`, 'COMMIT', '');
  await restore(text.join('\n'));
}

export async function allowEgress(spec: FirewallSpec, address: string): Promise<void> {
  await ipt(['-A', chainNames(spec.tag).egress, ...egressRuleArgs(spec, address)]);
}

export async function revokeEgress(spec: FirewallSpec, address: string): Promise<void> {
  await ipt(['-D', chainNames(spec.tag).egress, ...egressRuleArgs(spec, address)]).catch(
    () => undefined,
  );
}

export async function allowInbound(
  spec: FirewallSpec,
  address: string,
  inbound: InboundPorts = true,
): Promise<void> {
  const output = chainNames(spec.tag).output;
  const lines = inboundRules(address, inbound).map((rule) =>
    ['-I', output, '2', ...rule].join(' '),
  );
  await restore(['*filter', ...lines, 'COMMIT', ''].join('\n'));
}

export async function revokeInbound(
  spec: FirewallSpec,
  address: string,
  inbound: InboundPorts = true,
): Promise<void> {
  const output = chainNames(spec.tag).output;
  // One at a time: a transaction would fail whole if one rule were already gone.
  for (const rule of inboundRules(address, inbound)) {
    await ipt(['-D', output, ...rule]).catch(() => undefined);
  }
}

/** What of ours one table holds: our chains, and rules elsewhere that jump into them. */
export interface TableLeftovers {
  chains: string[];
  jumps: string[];
}

/** Reads one table's `iptables -S` listing for the chains in `ours`. */
export function leftoversIn(listing: string, ours: ReadonlySet<string>): TableLeftovers {
  const lines = listing.split('\n');
  const chains = lines.filter((l) => l.startsWith('-N ')).map((l) => l.slice(3).trim());
  const jumps = lines.filter((line) => {
    const words = line.trim().split(/\s+/);
    if (words[0] !== '-A' || ours.has(words[1])) return false;
    return words.some((word, i) => (word === '-j' || word === '-g') && ours.has(words[i + 1]));
  });
  return { chains: chains.filter((name) => ours.has(name)), jumps };
}

async function tableLeftovers(
  table: string,
  ours: ReadonlySet<string>,
  also?: RegExp,
): Promise<TableLeftovers> {
  const listing = await ipt(['-t', table, '-S']).catch(() => '');
  return leftoversIn(listing, also ? withMatching(listing, ours, also) : ours);
}

/** `ours` plus every chain the listing declares whose name matches `pattern` (group chains). */
function withMatching(listing: string, ours: ReadonlySet<string>, pattern: RegExp): Set<string> {
  const all = new Set(ours);
  for (const line of listing.split('\n')) {
    const name = line.startsWith('-N ') ? line.slice(3).trim() : '';
    if (pattern.test(name)) all.add(name);
  }
  return all;
}

function ourChains(tag: string): Record<'filter' | 'nat', Set<string>> {
  const chains = chainNames(tag);
  return { filter: new Set(FILTER_CHAINS.map((key) => chains[key])), nat: new Set([chains.nat]) };
}

/** This tag's chains and the jumps into them, per table (tests, diagnostics, clean-up). */
export async function listFirewall(tag: string): Promise<Record<'filter' | 'nat', TableLeftovers>> {
  const ours = ourChains(tag);
  const [filter, nat] = await Promise.all([
    tableLeftovers('filter', ours.filter, groupChainPattern(tag)),
    tableLeftovers('nat', ours.nat),
  ]);
  return { filter, nat };
}

/**
 * Removes this node tag's chains and every rule jumping into them (however
 * many a crash left, whatever bridge they named); quiet when there are none.
 * One listing and one transaction per table.
 */
export async function removeFirewall(tag: string): Promise<void> {
  const found = await listFirewall(tag);
  for (const table of ['filter', 'nat'] as const) {
    const { chains, jumps } = found[table];
    if (chains.length === 0 && jumps.length === 0) continue;
    const lines = [`*${table}`, ...jumps.map((rule) => `-D ${rule.trim().slice(3)}`)];
    // Flush all before deleting any: our chains jump into each other.
    for (const chain of chains) lines.push(`-F ${chain}`);
    for (const chain of chains) lines.push(`-X ${chain}`);
    lines.push('COMMIT', '');
    await restore(lines.join('\n'));
  }
}

/** Lists this node's forward chain (tests and diagnostics). */
export function listForwardChain(tag: string): Promise<string> {
  return listChain(tag, 'forward');
}

/** Lists one of this node's chains (tests and diagnostics). */
export function listChain(tag: string, chain: keyof ChainNames): Promise<string> {
  const table = chain === 'nat' ? 'nat' : 'filter';
  return ipt(['-t', table, '-S', chainNames(tag)[chain]]);
}

const IP_FORWARD = '/proc/sys/net/ipv4/ip_forward';

/**
 * Turns on IPv4 forwarding in the node's namespace (needed for egress NAT).
 * It is left on at close, as Docker and Podman do: other software may rely
 * on it by then, and this node's DROP rules are what confine instances.
 */
export async function enableForwarding(): Promise<void> {
  if ((await readFile(IP_FORWARD, 'utf8')).trim() !== '1') await writeFile(IP_FORWARD, '1');
}
