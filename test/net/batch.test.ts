import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  bridgeLines,
  chainNames,
  egressRouteLines,
  nodeTagFrom,
  parseIperfJson,
  parseNetDev,
  reshapeLines,
  shapeKey,
  unshapeLines,
  shapingLines,
  slotHostLines,
  slotInnerLines,
  slotNames,
  slotTeardownLines,
} from '../../src/net/index.ts';
import { leftoverMatchers } from '../../src/net/naming.ts';
import { countersIn } from '../../src/net/stats.ts';

test('names carry the node tag and fit in 15 characters', () => {
  assert.deepEqual(slotNames('abcde', 12), {
    netns: 'petri-abcde-12',
    hostVeth: 'pvabcde12',
    ifb: 'piabcde12',
  });
  assert.ok(slotNames('abcdef', 9_999_999).hostVeth.length <= 15);
  assert.throws(() => slotNames('abcdef', 99_999_999), /too large/);
  assert.throws(() => slotNames('Bad', 1), /node tag/);
  assert.throws(() => slotNames('a;b', 1), /node tag/);
  assert.deepEqual(chainNames('abc'), {
    forward: 'PETRI-ABC-FWD',
    input: 'PETRI-ABC-IN',
    output: 'PETRI-ABC-OUT',
    egress: 'PETRI-ABC-EGRESS',
    destinations: 'PETRI-ABC-DEST',
    nat: 'PETRI-ABC-NAT',
  });
  // iptables takes chain names of at most 28 characters.
  assert.ok(Object.values(chainNames('abcdef')).every((name) => name.length <= 28));
});

test('node tags from the state dir are stable letters', () => {
  const tag = nodeTagFrom('/var/lib/petri');
  assert.match(tag, /^[a-z]{5}$/);
  assert.equal(nodeTagFrom('/var/lib/petri'), tag);
  assert.notEqual(nodeTagFrom('/var/lib/petri2'), tag);
});

test("leftover patterns match only this tag's names", () => {
  const m = leftoverMatchers('ab');
  assert.ok(m.netns.test('petri-ab-3'));
  assert.ok(!m.netns.test('petri-abc-3'));
  assert.ok(m.link.test('pvab3') && m.link.test('piab0'));
  assert.ok(!m.link.test('pvabc3') && !m.link.test('petri0') && !m.link.test('pvab'));
});

test('the bridge round creates the bridge only when missing, with a MAC of its own', async () => {
  const { bridgeMac } = await import('../../src/net/naming.ts');
  assert.equal(bridgeMac('abc'), bridgeMac('abc'));
  assert.notEqual(bridgeMac('abc'), bridgeMac('abd'));
  assert.match(bridgeMac('abc'), /^02(:[0-9a-f]{2}){5}$/);
  const spec = {
    bridge: 'petri0',
    gateway: '10.213.0.1',
    prefixLength: 16,
    mac: '02:00:00:00:00:01',
  };
  assert.deepEqual(bridgeLines(spec, false), [
    'link add petri0 type bridge',
    'link set petri0 address 02:00:00:00:00:01',
    'addr replace 10.213.0.1/16 dev petri0',
    'link set petri0 up',
  ]);
  assert.deepEqual(bridgeLines(spec, true), [
    // A crashed run's instances are gone: so are the node's permanent entries for them.
    'neigh flush dev petri0 nud permanent',
    'link set petri0 address 02:00:00:00:00:01',
    'addr replace 10.213.0.1/16 dev petri0',
    'link set petri0 up',
  ]);
});

test('a slot is one host round and one in-namespace round', () => {
  const names = slotNames('abc', 7);
  assert.deepEqual(slotHostLines(names, 'petri0'), [
    'netns add petri-abc-7',
    'link add pvabc7 type veth peer name eth0 netns petri-abc-7',
    'link set pvabc7 master petri0 addrgenmode none up',
    // An isolated port: no frames to or from other instances' ports.
    'link set pvabc7 type bridge_slave isolated on',
    'link add piabc7 type ifb',
    'link set piabc7 up',
  ]);
  // The address's prefix gives the only route: the bridge subnet. No default route.
  assert.deepEqual(slotInnerLines('10.213.0.9', 16), [
    'link set lo up',
    'link set eth0 addrgenmode none',
    'addr add 10.213.0.9/16 dev eth0',
    'link set eth0 up',
  ]);
  assert.deepEqual(egressRouteLines('10.213.0.1'), [
    'route replace default via 10.213.0.1 dev eth0',
  ]);
  assert.deepEqual(slotTeardownLines(names), [
    'link del pvabc7',
    'link del piabc7',
    'netns del petri-abc-7',
  ]);
});

test('with its MAC known, the node resolves a slot for good and forgets it at tear-down', () => {
  const slot = { ...slotNames('abc', 7), address: '10.213.0.9', mac: '02:11:22:33:44:55' };
  const host = slotHostLines(slot, 'petri0');
  assert.equal(
    host[1],
    'link add pvabc7 type veth peer name eth0 address 02:11:22:33:44:55 netns petri-abc-7',
  );
  assert.equal(
    host.at(-1),
    'neigh replace 10.213.0.9 lladdr 02:11:22:33:44:55 dev petri0 nud permanent',
  );
  assert.equal(
    slotTeardownLines(slot, 'petri0').at(-1),
    'neigh flush to 10.213.0.9 dev petri0 nud permanent',
  );
});

test('the direct path: one exact src/dst redirect per peer each way, neighbours of peers only', async () => {
  const { joinFilterLines, leaveFilterLines, peerNeighLine, peerNeighDelLine, randomMac } =
    await import('../../src/net/group-path.ts');
  const member = (n: number) => ({
    hostVeth: `pvabc${n}`,
    netns: `petri-abc-${n}`,
    address: `10.213.0.${n}`,
    mac: `02:00:00:00:00:0${n}`,
  });
  assert.deepEqual(joinFilterLines(member(3), 11, [{ member: member(2), key: 10 }]), [
    'qdisc add dev pvabc3 handle ffff: ingress',
    'filter add dev pvabc3 parent ffff: prio 10 handle 800::a protocol ip u32 match ip src 10.213.0.3/32 match ip dst 10.213.0.2/32 action mirred egress redirect dev pvabc2',
    'filter add dev pvabc2 parent ffff: prio 10 handle 800::b protocol ip u32 match ip src 10.213.0.2/32 match ip dst 10.213.0.3/32 action mirred egress redirect dev pvabc3',
  ]);
  assert.deepEqual(leaveFilterLines(member(3), 11, [{ member: member(2) }]), [
    'filter del dev pvabc2 parent ffff: prio 10 handle 800::b protocol ip u32',
    'qdisc del dev pvabc3 handle ffff: ingress',
  ]);
  assert.equal(
    peerNeighLine(member(2)),
    'neigh replace 10.213.0.2 lladdr 02:00:00:00:00:02 dev eth0 nud permanent',
  );
  assert.equal(peerNeighDelLine(member(2)), 'neigh del 10.213.0.2 dev eth0');
  for (let i = 0; i < 50; i++) {
    // Locally administered, unicast.
    assert.match(randomMac(), /^[0-9a-f][26ae](:[0-9a-f]{2}){5}$/);
  }
});

test('shaping is a host-side TBF each way, upload via ingress → IFB', () => {
  const lines = shapingLines({
    hostVeth: 'pvabc7',
    ifb: 'piabc7',
    bandwidthMbit: 43.4,
    burstBytes: 262144,
  });
  assert.deepEqual(lines, [
    'qdisc add dev pvabc7 root handle 1: tbf rate 43400kbit burst 262144 latency 50ms',
    'qdisc add dev pvabc7 handle ffff: ingress',
    'filter add dev pvabc7 parent ffff: protocol all prio 1 u32 match u32 0 0 action mirred egress redirect dev piabc7',
    'qdisc add dev piabc7 root handle 1: tbf rate 43400kbit burst 262144 latency 50ms',
  ]);
});

test('a pool slot shaped at another rate is re-shaped in place, or unshaped', () => {
  const spec = { hostVeth: 'pva1', ifb: 'pia1', bandwidthMbit: 600, burstBytes: 262144 };
  assert.deepEqual(reshapeLines(spec), [
    'qdisc change dev pva1 root handle 1: tbf rate 600000kbit burst 262144 latency 50ms',
    'qdisc change dev pia1 root handle 1: tbf rate 600000kbit burst 262144 latency 50ms',
  ]);
  assert.deepEqual(unshapeLines(spec), [
    'qdisc del dev pva1 root',
    'qdisc del dev pva1 ingress',
    'qdisc del dev pia1 root',
  ]);
  assert.equal(shapeKey(spec), shapeKey({ bandwidthMbit: 600, burstBytes: 262144 }));
  assert.notEqual(shapeKey(spec), shapeKey({ bandwidthMbit: 601, burstBytes: 262144 }));
});

test('a burst below one frame is raised so TBF can pass packets', () => {
  const [root] = shapingLines({ hostVeth: 'a', ifb: 'b', bandwidthMbit: 1, burstBytes: 100 });
  assert.match(root, /burst 3028 /);
});

test('parses /proc/net/dev', () => {
  const text = [
    'Inter-|   Receive                                                |  Transmit',
    ' face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed',
    '    lo:     100       2    0    0    0     0          0         0      100       2    0    0    0     0       0          0',
    'pvabc7: 5000 10 0 0 0 0 0 0 7000 12 0 0 0 0 0 0',
  ].join('\n');
  const map = parseNetDev(text);
  assert.deepEqual(map.get('pvabc7'), { rxBytes: 5000, txBytes: 7000 });
  assert.deepEqual(map.get('lo'), { rxBytes: 100, txBytes: 100 });
});

test("reads one interface's line of /proc/net/dev as the whole parse does", () => {
  const text = [
    'Inter-|   Receive                                                |  Transmit',
    ' face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed',
    '    lo:     100       2    0    0    0     0          0         0      100       2    0    0    0     0       0          0',
    '  eth0: 98765432109  77    0    0    0     0          0         0 12345678901   88    0    0    0     0       0          0',
    ' xeth0:1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16',
  ].join('\n');
  for (const name of ['lo', 'eth0', 'xeth0', 'th0', 'none']) {
    assert.deepEqual(countersIn(text, name), parseNetDev(text).get(name), name);
  }
  assert.deepEqual(countersIn(text, 'eth0'), { rxBytes: 98765432109, txBytes: 12345678901 });
});

test('parses iperf3 -J output and surfaces its errors', () => {
  const ok = JSON.stringify({
    end: {
      sum_sent: { bits_per_second: 5e7, bytes: 1, retransmits: 3 },
      sum_received: { bits_per_second: 4.8e7, bytes: 12_000_000 },
    },
  });
  assert.deepEqual(parseIperfJson(ok), {
    receivedBitsPerSecond: 4.8e7,
    sentBitsPerSecond: 5e7,
    receivedBytes: 12_000_000,
    retransmits: 3,
  });
  assert.throws(() => parseIperfJson('{"error":"unable to connect"}'), /unable to connect/);
});
