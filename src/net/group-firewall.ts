import { run } from './exec.ts';
import { inboundRules, type FirewallSpec, type InboundPorts } from './firewall.ts';
import { chainNames, groupChainName } from './naming.ts';

/**
 * Function groups in the firewall (DESIGN §10). Bridge ports stay isolated,
 * so members never exchange frames directly: the bridge answers ARP for the
 * whole subnet (proxy_arp_pvlan, see `routeAcrossBridge`) and the node routes
 * member to member, where the forward chain decides. Each group has a chain
 * `PETRI-<tag>-G<id>`:
 *
 *   FWD:  -i br -o br -s <member> -j G<id>      one per member, before the DROP
 *   G<id>: -d <member> [-p tcp --dport P] -j ACCEPT   per member that allows inbound
 *   IN:   -s <member> -d <gateway> -p tcp --dport <coordinator> -j ACCEPT
 *
 * A packet is accepted only when its source and destination are both members
 * of the same group and the destination allows that port; everything else
 * routed across the bridge still drops. Only members reach the coordinator.
 */

export interface GroupMemberRules {
  groupId: number;
  address: string;
  /** What peers may connect to at this member; false: nothing. */
  inbound: false | InboundPorts;
  gateway: string;
  coordinatorPort: number;
}

function ipt(args: readonly string[]): Promise<string> {
  return run('iptables', ['-w', ...args]);
}

/** The member's rules, each as [chain, position or undefined (append), rule]. */
export function memberRules(
  spec: FirewallSpec,
  member: GroupMemberRules,
): [string, string | undefined, string[]][] {
  const chains = chainNames(spec.tag);
  const group = groupChainName(spec.tag, member.groupId);
  const from = ['-s', `${member.address}/32`];
  const rules: [string, string | undefined, string[]][] = [
    [chains.forward, '2', ['-i', spec.bridge, '-o', spec.bridge, ...from, '-j', group]],
    [
      chains.input,
      '3',
      [
        ...from,
        '-d',
        `${member.gateway}/32`,
        '-p',
        'tcp',
        '--dport',
        String(member.coordinatorPort),
        '-j',
        'ACCEPT',
      ],
    ],
  ];
  if (member.inbound !== false) {
    for (const rule of inboundRules(member.address, member.inbound))
      rules.push([group, undefined, rule]);
  }
  return rules;
}

/** Creates the group's chain if it is not there yet. */
export async function ensureGroupChain(spec: FirewallSpec, groupId: number): Promise<void> {
  const group = groupChainName(spec.tag, groupId);
  const exists = await ipt(['-S', group]).then(
    () => true,
    () => false,
  );
  if (!exists) await ipt(['-N', group]);
}

/** Lets one member reach its peers and the coordinator, and its peers reach it (one transaction). */
export async function allowGroupMember(
  spec: FirewallSpec,
  member: GroupMemberRules,
): Promise<void> {
  const lines = ['*filter'];
  for (const [chain, position, rule] of memberRules(spec, member)) {
    lines.push((position ? ['-I', chain, position] : ['-A', chain]).concat(rule).join(' '));
  }
  lines.push('COMMIT', '');
  await run('iptables-restore', ['-w', '--noflush'], lines.join('\n'));
}

/** Takes one member's rules back; quiet about rules already gone. */
export async function revokeGroupMember(
  spec: FirewallSpec,
  member: GroupMemberRules,
): Promise<void> {
  for (const [chain, , rule] of memberRules(spec, member)) {
    await ipt(['-D', chain, ...rule]).catch(() => undefined);
  }
}

/** Removes the group's chain once no member's rule jumps into it. */
export async function removeGroupChain(spec: FirewallSpec, groupId: number): Promise<void> {
  const group = groupChainName(spec.tag, groupId);
  await ipt(['-F', group]).catch(() => undefined);
  await ipt(['-X', group]).catch(() => undefined);
}
