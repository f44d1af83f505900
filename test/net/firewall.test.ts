import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfig } from '../../src/config.ts';
import {
  BLOCKED_EGRESS,
  egressRuleArgs,
  filterRestoreText,
  filterRules,
  leftoversIn,
  natRule,
  type FirewallSpec,
} from '../../src/net/firewall.ts';

const spec: FirewallSpec = {
  tag: 'abc',
  bridge: 'petri0',
  subnet: '10.213.0.0/16',
  egressAllow: [{ address: '10.254.0.1', port: 9000, protocol: 'tcp' }],
  services: [],
};

const line = (rule: string[]): string => rule.join(' ');

test('forward: replies in, nothing routed between instances or in from outside, egress checked', () => {
  assert.deepEqual(filterRules(spec).forward.map(line), [
    '-o petri0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
    '-i petri0 -o petri0 -p tcp -j REJECT --reject-with tcp-reset',
    '-i petri0 -o petri0 -j DROP',
    '-o petri0 -j DROP',
    '-i petri0 -j PETRI-ABC-EGRESS',
    '-i petri0 -j DROP',
  ]);
  assert.equal(line(egressRuleArgs(spec, '10.213.0.7')), '-s 10.213.0.7/32 -j PETRI-ABC-DEST');
  assert.equal(line(natRule(spec)), '-s 10.213.0.0/16 ! -d 10.213.0.0/16 -j MASQUERADE');
});

test('input and output: only replies cross between node and instances, unless offered or granted', () => {
  const rules = filterRules(spec);
  const reject = '-j REJECT --reject-with icmp-admin-prohibited';
  assert.deepEqual(rules.input.map(line), [
    '! -i petri0 -j RETURN',
    '-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
    '-j PETRI-ABC-EGRESS',
    reject,
  ]);
  assert.deepEqual(rules.output.map(line), [
    '! -o petri0 -j RETURN',
    '-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
    reject,
  ]);
  // The hook for services Petri offers instances goes before the egress check.
  const offered = filterRules({
    ...spec,
    services: [{ address: '10.213.0.1', port: 7400, protocol: 'tcp' }],
  });
  assert.equal(
    line(offered.input[2]),
    '-d 10.213.0.1/32 -p tcp --dport 7400 -j ACCEPT',
    'services follow the replies rule',
  );
});

test('destinations: the allow-list first, then never the node, private or link-local, else out', () => {
  const rules = filterRules(spec).destinations.map(line);
  assert.equal(rules[0], '-d 10.254.0.1/32 -p tcp --dport 9000 -j ACCEPT');
  assert.equal(
    rules[1],
    '-m addrtype ! --dst-type UNICAST -j REJECT --reject-with icmp-admin-prohibited',
  );
  for (const range of ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '169.254.0.0/16']) {
    assert.ok(BLOCKED_EGRESS.includes(range), range);
    assert.ok(rules.includes(`-d ${range} -j REJECT --reject-with icmp-admin-prohibited`), range);
  }
  assert.equal(rules.at(-1), '-j ACCEPT');
});

test('one iptables-restore transaction makes every filter chain and its jump', () => {
  const text = filterRestoreText(spec);
  const lines = text.split('\n');
  assert.equal(lines[0], '*filter');
  assert.equal(lines.at(-2), 'COMMIT');
  for (const chain of ['FWD', 'IN', 'OUT', 'EGRESS', 'DEST']) {
    assert.ok(lines.includes(`:PETRI-ABC-${chain} - [0:0]`), chain);
  }
  for (const [parent, chain] of [
    ['FORWARD', 'FWD'],
    ['INPUT', 'IN'],
    ['OUTPUT', 'OUT'],
  ]) {
    assert.ok(lines.includes(`-I ${parent} 1 -j PETRI-ABC-${chain}`), parent);
  }
});

test('clean-up finds its own chains and every jump into them, not another tag’s', () => {
  const listing = [
    '-P INPUT ACCEPT',
    '-N PETRI-ABC-FWD',
    '-N PETRI-ABC-DEST',
    '-N PETRI-ABCD-FWD',
    '-A FORWARD -j PETRI-ABC-FWD',
    '-A FORWARD -j PETRI-ABC-FWD',
    '-A FORWARD -j PETRI-ABCD-FWD',
    '-A INPUT -i oldbr -j PETRI-ABC-IN',
    '-A PETRI-ABC-FWD -i petri0 -j PETRI-ABC-DEST',
    '-A DOCKER-USER -j RETURN',
  ].join('\n');
  const ours = new Set(['PETRI-ABC-FWD', 'PETRI-ABC-IN', 'PETRI-ABC-DEST']);
  assert.deepEqual(leftoversIn(listing, ours), {
    chains: ['PETRI-ABC-FWD', 'PETRI-ABC-DEST'],
    jumps: [
      '-A FORWARD -j PETRI-ABC-FWD',
      '-A FORWARD -j PETRI-ABC-FWD',
      '-A INPUT -i oldbr -j PETRI-ABC-IN',
    ],
  });
});

test('config: egressAllow takes IPv4 address and port pairs, TCP unless told', () => {
  const config = parseConfig({ network: { egressAllow: [{ address: '10.0.0.2', port: 53 }] } });
  assert.deepEqual(config.network.egressAllow, [
    { address: '10.0.0.2', port: 53, protocol: 'tcp' },
  ]);
  assert.deepEqual(parseConfig({}).network.egressAllow, []);
  for (const bad of [
    { address: '10.0.0.0/8', port: 53 },
    { address: 'metadata.internal', port: 80 },
    { address: '10.0.0.2', port: 0 },
    { address: '10.0.0.2', port: 53, protocol: 'icmp' },
    { address: '10.0.0.2' },
  ]) {
    assert.throws(() => parseConfig({ network: { egressAllow: [bad] } }), JSON.stringify(bad));
  }
});

test('group members: routed to their group chain, peers admitted on their open ports, coordinator only for members', async () => {
  const { memberRules } = await import('../../src/net/group-firewall.ts');
  const rules = (inbound: false | true | number[]) =>
    memberRules(spec, {
      groupId: 3,
      address: '10.213.0.9',
      inbound,
      gateway: '10.213.0.1',
      coordinatorPort: 7946,
    }).map(([chain, position, rule]) => `${chain} ${position ?? 'append'} ${line(rule)}`);
  assert.deepEqual(rules([2379, 2380]), [
    'PETRI-ABC-FWD 2 -i petri0 -o petri0 -s 10.213.0.9/32 -j PETRI-ABC-G3',
    'PETRI-ABC-IN 3 -s 10.213.0.9/32 -d 10.213.0.1/32 -p tcp --dport 7946 -j ACCEPT',
    'PETRI-ABC-G3 append -d 10.213.0.9/32 -p tcp --dport 2379 -j ACCEPT',
    'PETRI-ABC-G3 append -d 10.213.0.9/32 -p tcp --dport 2380 -j ACCEPT',
  ]);
  assert.equal(rules(true).at(-1), 'PETRI-ABC-G3 append -d 10.213.0.9/32 -j ACCEPT');
  assert.equal(rules(false).length, 2, 'without inbound no peer may connect to it');
});
