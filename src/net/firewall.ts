import { readFile, writeFile } from 'node:fs/promises';
import { run } from './exec.ts';
import { chainNames } from './naming.ts';

/**
 * Egress control with iptables (nf_tables-backed on Debian 12). Each node owns
 * two chains, jumped to from FORWARD and POSTROUTING:
 *
 *   PETRI-<TAG>-FWD: replies back into the bridge pass; new connections from
 *     outside into the bridge drop; each egress instance's source address may
 *     leave; everything else from the bridge to outside the subnet drops.
 *   PETRI-<TAG>-NAT: MASQUERADE for the subnet leaving the subnet.
 *
 * The missing default route already stops a well-behaved instance; the DROP
 * is what holds when a function with CAP_NET_ADMIN in its namespace adds one.
 */

const IPT = 'iptables';

function ipt(args: readonly string[]): Promise<string> {
  // -w: wait for the xtables lock instead of failing when another tool holds it.
  return run(IPT, ['-w', ...args]);
}

export interface FirewallSpec {
  tag: string;
  bridge: string;
  /** Normalised subnet, e.g. 10.213.0.0/16. */
  subnet: string;
}

export function egressRuleArgs(spec: FirewallSpec, address: string): string[] {
  return ['-i', spec.bridge, '-s', `${address}/32`, '!', '-d', spec.subnet, '-j', 'ACCEPT'];
}

/** Rules of the forward chain in order (without the per-instance ACCEPTs, which go first). */
export function forwardRules(spec: FirewallSpec): string[][] {
  const br = spec.bridge;
  return [
    ['-o', br, '-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', '-j', 'ACCEPT'],
    ['-o', br, '!', '-i', br, '-j', 'DROP'],
    ['-i', br, '!', '-d', spec.subnet, '-j', 'DROP'],
  ];
}

export function natRule(spec: FirewallSpec): string[] {
  return ['-s', spec.subnet, '!', '-d', spec.subnet, '-j', 'MASQUERADE'];
}

/** Creates this node's chains afresh (after removing any old ones). */
export async function installFirewall(spec: FirewallSpec): Promise<void> {
  await removeFirewall(spec.tag);
  const chains = chainNames(spec.tag);
  await ipt(['-N', chains.forward]);
  for (const rule of forwardRules(spec)) await ipt(['-A', chains.forward, ...rule]);
  await ipt(['-I', 'FORWARD', '1', '-j', chains.forward]);
  await ipt(['-t', 'nat', '-N', chains.nat]);
  await ipt(['-t', 'nat', '-A', chains.nat, ...natRule(spec)]);
  await ipt(['-t', 'nat', '-I', 'POSTROUTING', '1', '-j', chains.nat]);
}

export async function allowEgress(spec: FirewallSpec, address: string): Promise<void> {
  await ipt(['-I', chainNames(spec.tag).forward, '1', ...egressRuleArgs(spec, address)]);
}

export async function revokeEgress(spec: FirewallSpec, address: string): Promise<void> {
  await ipt(['-D', chainNames(spec.tag).forward, ...egressRuleArgs(spec, address)]).catch(
    () => undefined,
  );
}

async function removeChain(table: string, parent: string, chain: string): Promise<void> {
  // Delete every jump (a crash may have left more than one), then the chain.
  for (let i = 0; i < 16; i++) {
    const removed = await ipt(['-t', table, '-D', parent, '-j', chain]).then(
      () => true,
      () => false,
    );
    if (!removed) break;
  }
  await ipt(['-t', table, '-F', chain]).catch(() => undefined);
  await ipt(['-t', table, '-X', chain]).catch(() => undefined);
}

/** Removes this node tag's chains and jumps; quiet when there are none. */
export async function removeFirewall(tag: string): Promise<void> {
  const chains = chainNames(tag);
  await removeChain('filter', 'FORWARD', chains.forward);
  await removeChain('nat', 'POSTROUTING', chains.nat);
}

/** Lists this node's forward chain (tests and diagnostics). */
export function listForwardChain(tag: string): Promise<string> {
  return ipt(['-S', chainNames(tag).forward]);
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
