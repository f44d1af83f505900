/**
 * Live network scenarios. NOT a test file: live.test.ts runs each one as
 * `nsenter --net=<test-ns> node --import tsx scenarios.ts <name> <tag>`, so
 * the bridge, every instance namespace and every iptables rule exist only
 * inside a namespace the test made (DESIGN §10 safety rule). Asserts as it
 * goes and prints one `RESULT {json}` line of figures at the end.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import net from 'node:net';
import { parseConfig } from '../../src/config.ts';
import type { EgressAllowInput } from '../../src/config.ts';
import {
  AddressAllocator,
  findLeftovers,
  listChain,
  listFirewall,
  listForwardChain,
  listLinks,
  networkLayer,
  runIperfClient,
  startIperfServer,
  type NetworkLayer,
} from '../../src/net/index.ts';
import { ipBatch, run } from '../../src/net/exec.ts';
import type { LayerInstance } from '../../src/sandbox/layer.ts';
import { resourcesFor } from '../../src/sandbox/resources.ts';
import type { SandboxSpec } from '../../src/sandbox/types.ts';

type Figures = Record<string, unknown>;

const [scenario = '', tag = ''] = process.argv.slice(2);
const warnings: string[] = [];

function makeLayer(poolSize: number, egressAllow: EgressAllowInput[] = []): NetworkLayer {
  const config = parseConfig({
    stateDir: '/tmp/petri-net-test',
    network: { poolSize, egressAllow },
  });
  return networkLayer(config, tag, (message) => warnings.push(message));
}

function spec(id: string, egress: boolean, bandwidthMbit = 600, inbound = false): SandboxSpec {
  return {
    instanceId: id,
    functionName: 'net-test',
    version: 1,
    codeDir: '/tmp',
    cwd: '/tmp',
    entry: { runtime: 'exec', command: ['true'] },
    env: {},
    // Built by the real sizing rule so new resource fields need no change here.
    resources: { ...resourcesFor(128, parseConfig({}).resources), bandwidthMbit },
    network: { inbound, egress },
  };
}

/** The namespace name an instance runs in, read back from its wrap. */
function netnsOf(instance: LayerInstance): string {
  const flag = instance.wrap([]).find((arg) => arg.startsWith('--net=/run/netns/'));
  assert.ok(flag, 'wrap must nsenter a named namespace');
  return flag.slice('--net=/run/netns/'.length);
}

function inside(instance: LayerInstance, command: string[]): Promise<string> {
  const [file, ...args] = instance.wrap(command);
  return run(file, args);
}

/** Prints what the server said, or `error <code>`, or `timeout` (a silent drop). */
const CONNECT = `const s=require('net').connect(+process.argv[2],process.argv[1]);
s.setTimeout(1000,()=>{console.log('timeout');process.exit(0)});s.on('data',d=>{process.stdout.write(d);s.end()});s.on('error',e=>{console.log('error '+e.code);process.exit(0)})`;
const SERVE = `require('net').createServer(s=>{s.on('error',()=>{});s.end('hello from '+s.localAddress+' to '+s.remoteAddress)}).listen(+process.argv[2],process.argv[1],()=>console.log('ready'))`;
/** What a connection the firewall rejects gets at once (icmp-admin-prohibited). */
const REJECTED = 'error EHOSTUNREACH';

/** Connects from inside `from` to host:port and returns what the server said. */
function connectFrom(from: LayerInstance, host: string, port: number): Promise<string> {
  return inside(from, [process.execPath, '-e', CONNECT, host, String(port)]).then((out) =>
    out.trim(),
  );
}

/** The same from a namespace the scenario made (or, without one, from the node itself). */
function connectIn(netns: string | undefined, host: string, port: number): Promise<string> {
  const command = [process.execPath, '-e', CONNECT, host, String(port)];
  const [file, ...args] = netns
    ? ['nsenter', `--net=/run/netns/${netns}`, '--', ...command]
    : command;
  return run(file, args).then((out) => out.trim());
}

/** A TCP server inside a namespace; resolves once it listens. */
function serveIn(netns: string, address: string, port: number): Promise<() => void> {
  const [file, ...args] = [
    'nsenter',
    `--net=/run/netns/${netns}`,
    '--',
    process.execPath,
    '-e',
    SERVE,
    address,
    String(port),
  ];
  const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    child.stdout.once('data', () => resolve(() => child.kill()));
    child.once('exit', (code) => reject(new Error(`server exited ${code}`)));
  });
}

/** A TCP server in the node's own namespace (the test namespace). */
function serveOnNode(address: string, port: number): Promise<net.Server> {
  const server = net.createServer((socket) => {
    socket.on('error', () => undefined);
    socket.end('hello from gateway');
  });
  return new Promise((resolve) => server.listen(port, address, () => resolve(server)));
}

async function assertNothingLeft(): Promise<void> {
  const left = await findLeftovers(tag, new Set());
  assert.deepEqual(left, { netns: [], links: [] }, 'no namespace or link of this tag is left');
  assert.ok(!(await listLinks()).includes('petri0'), 'the bridge is gone');
  await assert.rejects(listForwardChain(tag), 'the firewall chain is gone');
  const none = { chains: [], jumps: [] };
  assert.deepEqual(await listFirewall(tag), { filter: none, nat: none }, 'no chain or jump left');
}

/** The scenario's allow-list: one port on the gateway, one on a private address outside. */
const GATEWAY_SERVICE_PORT = 7011;
const PRIVATE_ALLOWED = { address: '192.168.77.1', port: 7005 };

async function topology(): Promise<Figures> {
  const gateway = new AddressAllocator(parseConfig({}).network.subnet).gateway;
  const layer = makeLayer(2, [{ address: gateway, port: GATEWAY_SERVICE_PORT }, PRIVATE_ALLOWED]);
  assert.equal(layer.gateway, gateway);
  const active = layer.mechanisms().map((m) => `${m.name}:${m.active}`);
  assert.deepEqual(
    active,
    ['netns:true', 'shaping:true', 'firewall:true', 'egress-nat:true'],
    warnings.join('; '),
  );
  await layer.reconcile();
  const a = await layer.prepare(spec('a', false));
  const b = await layer.prepare(spec('b', true));
  const c = await layer.prepare(spec('c', false, 600, true));
  assert.ok(a.address?.startsWith('10.213.') && b.address?.startsWith('10.213.'));
  assert.notEqual(a.address, b.address);
  assert.match(
    await inside(a, ['ip', '-4', '-o', 'addr', 'show', 'dev', 'eth0']),
    new RegExp(`${a.address}/16`),
  );

  // Without egress there is no route out: the lookup fails locally, nothing is sent.
  const nsA = netnsOf(a);
  const nsB = netnsOf(b);
  await assert.rejects(run('ip', ['-n', nsA, 'route', 'get', '192.0.2.1']), /unreachable/i);
  assert.equal((await run('ip', ['-n', nsA, 'route', 'show', 'default'])).trim(), '');
  assert.match(
    await run('ip', ['-n', nsB, 'route', 'get', '192.0.2.1']),
    new RegExp(`via ${layer.gateway}`),
  );
  // No IPv6 anywhere on the path: not on the bridge, not on the instance's eth0.
  assert.equal((await readFile('/proc/sys/net/ipv6/conf/petri0/disable_ipv6', 'utf8')).trim(), '1');
  // The kernel ORs `all` with the device: both must be 0 or routed member traffic draws redirects.
  for (const dev of ['all', 'petri0'])
    assert.equal(
      (await readFile(`/proc/sys/net/ipv4/conf/${dev}/send_redirects`, 'utf8')).trim(),
      '0',
    );
  // Proxy ARP answers at once (no random hold-back of up to 0.8 s per first contact).
  assert.equal((await readFile('/proc/sys/net/ipv4/neigh/petri0/proxy_delay', 'utf8')).trim(), '0');
  assert.equal((await run('ip', ['-n', nsA, '-6', 'addr', 'show', 'dev', 'eth0'])).trim(), '');
  const hostVeth = `pv${tag}${nsA.split('-').at(-1)}`;
  assert.match(await run('ip', ['-d', 'link', 'show', 'dev', hostVeth]), /isolated on/);
  const egress = await listChain(tag, 'egress');
  assert.match(egress, new RegExp(`-s ${b.address}/32`));
  assert.doesNotMatch(egress, new RegExp(`-s ${a.address}/32`));
  const output = await listChain(tag, 'output');
  assert.match(output, new RegExp(`-d ${c.address}/32 -j ACCEPT`), 'c allows inbound');
  assert.doesNotMatch(output, new RegExp(`-d (${a.address}|${b.address})/32`));
  assert.equal((await readFile('/proc/sys/net/ipv4/ip_forward', 'utf8')).trim(), '1');

  // The node's services: a listener on every node address, and an allow-listed one.
  const nodeServer = await serveOnNode('0.0.0.0', 7001);
  const serviceServer = await serveOnNode(layer.gateway, GATEWAY_SERVICE_PORT);
  const stops: (() => void)[] = [];
  try {
    const node = {
      itself: await connectIn(undefined, layer.gateway, 7001),
      fromA: await connectFrom(a, layer.gateway, 7001),
      fromEgress: await connectFrom(b, layer.gateway, 7001),
      allowListedFromEgress: await connectFrom(b, layer.gateway, GATEWAY_SERVICE_PORT),
      allowListedFromA: await connectFrom(a, layer.gateway, GATEWAY_SERVICE_PORT),
    };
    assert.equal(node.itself, 'hello from gateway', 'the listener is up');
    assert.equal(node.fromA, REJECTED);
    assert.equal(node.fromEgress, REJECTED);
    assert.equal(node.allowListedFromEgress, 'hello from gateway');
    assert.equal(node.allowListedFromA, REJECTED, 'the allow-list is for egress only');

    // Another instance: cut off at layer 2, and when routed through the gateway.
    stops.push(await serveIn(nsB, b.address ?? '', 7002));
    stops.push(await serveIn(netnsOf(c), c.address ?? '', 7004));
    const peers = {
      itself: await connectFrom(b, b.address ?? '', 7002),
      direct: await connectFrom(a, b.address ?? '', 7002),
      // The scenario runs instances without bwrap, so a is root in its namespace.
      routed: await inside(a, ['ip', 'route', 'add', `${b.address}/32`, 'via', layer.gateway]).then(
        () => connectFrom(a, b.address ?? '', 7002),
      ),
      fromEgress: await connectFrom(b, c.address ?? '', 7004),
      nodeWithoutInbound: await connectIn(undefined, b.address ?? '', 7002),
      nodeWithInbound: await connectIn(undefined, c.address ?? '', 7004),
    };
    assert.equal(peers.itself, `hello from ${b.address} to ${b.address}`, 'the listener is up');
    assert.doesNotMatch(peers.direct, /hello/);
    assert.doesNotMatch(peers.routed, /hello/);
    assert.doesNotMatch(peers.fromEgress, /hello/);
    assert.equal(peers.nodeWithoutInbound, REJECTED);
    assert.match(peers.nodeWithInbound, new RegExp(`hello from ${c.address}`));
    const outside = await checkOutside(a, b, layer.gateway);
    const usage = await a.usage?.();
    assert.ok((usage?.netRxBytes ?? 0) > 0 && (usage?.netTxBytes ?? 0) > 0, JSON.stringify(usage));
    for (const stop of stops.splice(0)) stop();

    await Promise.all([a.destroy(), b.destroy(), c.destroy(), a.destroy()]);
    const netns = (await run('ip', ['netns', 'list'])).split('\n').map((l) => l.split(' ')[0]);
    assert.ok(!netns.includes(nsA) && !netns.includes(nsB), 'destroy removes the namespaces');
    assert.doesNotMatch(await listChain(tag, 'egress'), new RegExp(`-s ${b.address}/32`));
    assert.doesNotMatch(await listChain(tag, 'output'), new RegExp(`-d ${c.address}/32`));
    await layer.close();
    await assertNothingLeft();
    return { node, peers, usage, outside, warnings };
  } finally {
    for (const stop of stops) stop();
    nodeServer.close();
    serviceServer.close();
  }
}

/**
 * "Outside" is a namespace this scenario makes behind the test namespace
 * (192.0.2.1 on its veth, and on its loopback a link-local, two private and
 * a public test address, each routed to it by the node), so forwarding, NAT
 * and the egress block list are exercised without a packet leaving the
 * test's namespaces.
 */
async function checkOutside(a: LayerInstance, b: LayerInstance, gateway: string): Promise<Figures> {
  const outNs = `ptout-${tag}`;
  const targets = ['169.254.169.254', '192.168.77.1', '10.77.0.1', '203.0.113.7'];
  await ipBatch([
    `netns add ${outNs}`,
    `link add ptout type veth peer name eth0 netns ${outNs}`,
    'addr add 192.0.2.254/24 dev ptout',
    'link set ptout up',
    ...targets.map((address) => `route add ${address}/32 via 192.0.2.1 dev ptout`),
  ]);
  try {
    await ipBatch(
      [
        'link set lo up',
        'addr add 192.0.2.1/24 dev eth0',
        'link set eth0 up',
        ...targets.map((address) => `addr add ${address}/32 dev lo`),
        // A way back into the bridge, so the outside may try to connect in.
        `route add 10.213.0.0/16 via 192.0.2.254`,
      ],
      { netns: outNs },
    );
    const stops = [
      await serveIn(outNs, '0.0.0.0', 7003),
      await serveIn(outNs, '0.0.0.0', PRIVATE_ALLOWED.port),
      await serveIn(netnsOf(b), b.address ?? '', 7006),
    ];
    try {
      const reached = (to: string): RegExp => new RegExp(`^hello from ${to} to 192.0.2.254$`);
      const egress = {
        public: await connectFrom(b, '192.0.2.1', 7003),
        publicOnLoopback: await connectFrom(b, '203.0.113.7', 7003),
        linkLocal: await connectFrom(b, '169.254.169.254', 7003),
        private: await connectFrom(b, '192.168.77.1', 7003),
        private10: await connectFrom(b, '10.77.0.1', 7003),
        privateAllowed: await connectFrom(b, PRIVATE_ALLOWED.address, PRIVATE_ALLOWED.port),
        nodeOwnAddress: await connectFrom(b, '192.0.2.254', 7001),
        // No egress, even after the function (root in its namespace) adds a default route itself.
        withoutEgress: await inside(a, ['ip', 'route', 'add', 'default', 'via', gateway]).then(() =>
          connectFrom(a, '192.0.2.1', 7003),
        ),
        inFromOutside: await connectIn(outNs, b.address ?? '', 7006),
      };
      // Egress: allowed to public addresses, and NATed to the node's outside address.
      assert.match(egress.public, reached('192.0.2.1'));
      assert.match(egress.publicOnLoopback, reached('203.0.113.7'));
      assert.equal(egress.linkLocal, REJECTED);
      assert.equal(egress.private, REJECTED);
      assert.equal(egress.private10, REJECTED);
      assert.match(egress.privateAllowed, reached(PRIVATE_ALLOWED.address));
      assert.equal(egress.nodeOwnAddress, REJECTED, 'not the node’s own public address either');
      assert.doesNotMatch(egress.withoutEgress, /hello/, 'the forward chain drops it');
      assert.doesNotMatch(egress.inFromOutside, /hello/, 'nothing connects in from outside');
      return egress;
    } finally {
      for (const stop of stops) stop();
    }
  } finally {
    await ipBatch([`link del ptout`, `netns del ${outNs}`], { force: true }).catch(() => undefined);
  }
}

async function crash(): Promise<Figures> {
  const crashed = makeLayer(2);
  await crashed.reconcile();
  const c = await crashed.prepare(spec('c', true, 600, true));
  await crashed.poolIdle();
  const before = await findLeftovers(tag, new Set());
  const rulesBefore = await listFirewall(tag);
  assert.equal(rulesBefore.filter.chains.length, 5, 'the crashed layer left its filter chains');
  assert.match(await listChain(tag, 'egress'), new RegExp(`-s ${c.address}/32`));
  assert.match(await listChain(tag, 'output'), new RegExp(`-d ${c.address}/32`));
  // The "crashed" layer is abandoned, not closed; a fresh one must clean up after it.
  const layer = makeLayer(1);
  await layer.reconcile();
  await layer.poolIdle();
  const after = await findLeftovers(tag, new Set());
  assert.ok(!after.netns.includes(netnsOf(c)), 'the crashed instance namespace is removed');
  assert.equal(after.netns.length, 1, `only the new pool slot remains: ${after.netns.join(',')}`);
  // Rebuilt from scratch: none of the crashed instance's rules, one jump per parent chain.
  assert.doesNotMatch(await listChain(tag, 'egress'), new RegExp(`-s ${c.address}/32`));
  assert.doesNotMatch(await listChain(tag, 'output'), new RegExp(`-d ${c.address}/32`));
  const rulesAfter = await listFirewall(tag);
  const parents = (jumps: string[]): string[] => jumps.map((rule) => rule.split(' ')[1]).sort();
  assert.deepEqual(parents(rulesAfter.filter.jumps), ['FORWARD', 'INPUT', 'OUTPUT']);
  assert.deepEqual(parents(rulesAfter.nat.jumps), ['POSTROUTING']);
  await layer.close();
  await assertNothingLeft();
  return { before: before.netns.length, after: after.netns.length };
}

function hostQdiscs(dev: string): Promise<string> {
  return run('tc', ['qdisc', 'show', 'dev', dev]);
}

async function shaping(): Promise<Figures> {
  // The iperf3 server on the gateway is a node service: allow-listed, for an egress instance.
  const iperfPort = 5301;
  const gateway = new AddressAllocator(parseConfig({}).network.subnet).gateway;
  const layer = makeLayer(1, [{ address: gateway, port: iperfPort }]);
  await layer.reconcile();
  await layer.poolIdle();
  // Warm the pool at 600 Mbit/s, so the 50 Mbit/s instance takes the re-shape path.
  await (await layer.prepare(spec('warm', false, 600))).destroy();
  await layer.poolIdle();
  const mbit = 50;
  const a = await layer.prepare(spec('a', true, mbit));
  assert.equal(netnsOf(a), `petri-${tag}-2`, 'a pool slot pre-shaped at 600 Mbit/s');
  const hostVeth = `pv${tag}${netnsOf(a).split('-').at(-1)}`;
  const ifb = `pi${tag}${netnsOf(a).split('-').at(-1)}`;
  assert.match(await hostQdiscs(hostVeth), /tbf 1: root .*rate 50Mbit/);
  assert.match(await hostQdiscs(hostVeth), /ingress ffff:/);
  assert.match(await hostQdiscs(ifb), /tbf 1: root .*rate 50Mbit/);

  // The function is root in its own namespace, yet the shaping is not there to remove.
  const removal = await inside(a, ['tc', 'qdisc', 'del', 'dev', 'eth0', 'root']).then(
    () => 'succeeded',
    (error: Error) => error.message.split('\n')[0],
  );
  assert.match(await hostQdiscs(hostVeth), /tbf 1: root/);

  const server = await startIperfServer({ address: layer.gateway, port: iperfPort });
  try {
    const client = { server: layer.gateway, port: iperfPort, seconds: 2, netns: netnsOf(a) };
    const upload = await runIperfClient(client);
    const download = await runIperfClient({ ...client, reverse: true });
    const expected = 0.96 * mbit;
    const up = upload.receivedBitsPerSecond / 1e6;
    const down = download.receivedBitsPerSecond / 1e6;
    const usage = await a.usage?.();
    for (const [name, got] of [
      ['upload', up],
      ['download', down],
    ] as const) {
      assert.ok(
        Math.abs(got - expected) <= 0.1 * expected,
        `${name} ${got.toFixed(1)} Mbit/s vs ${expected}`,
      );
    }
    assert.ok((usage?.netTxBytes ?? 0) >= upload.receivedBytes, 'tx counts the upload');
    assert.ok((usage?.netRxBytes ?? 0) >= download.receivedBytes, 'rx counts the download');
    await a.destroy();
    await layer.close();
    await assertNothingLeft();
    return { mbit, expected, upMbit: up, downMbit: down, removal, usage };
  } finally {
    await server.stop();
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((x, y) => x - y);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

async function timePrepare(
  poolSize: number,
  egress: boolean,
  runs: number,
  rate: (i: number) => number = () => 50,
): Promise<Figures> {
  const layer = makeLayer(poolSize);
  await layer.reconcile();
  const prepare: number[] = [];
  const destroy: number[] = [];
  for (let i = 0; i < runs; i++) {
    await layer.poolIdle();
    const t0 = performance.now();
    const instance = await layer.prepare(spec(`m${i}`, egress, rate(i)));
    const t1 = performance.now();
    await instance.destroy();
    destroy.push(performance.now() - t1);
    prepare.push(t1 - t0);
  }
  await layer.close();
  return { prepareMs: median(prepare), destroyMs: median(destroy) };
}

async function bareNodeMs(runs: number): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await run(process.execPath, ['-e', '0']);
    times.push(performance.now() - t0);
  }
  return median(times);
}

async function measure(): Promise<Figures> {
  const runs = 20;
  const pooled = await timePrepare(4, false, runs);
  const unpooled = await timePrepare(0, false, runs);
  const pooledEgress = await timePrepare(4, true, runs);
  // Every prepare wants another rate than the pool pre-shaped with: one `tc` round.
  const pooledReshape = await timePrepare(4, false, runs, (i) => 40 + i);
  await assertNothingLeft();
  return { runs, pooled, pooledReshape, unpooled, pooledEgress, bareNodeMs: await bareNodeMs(10) };
}

const scenarios: Record<string, () => Promise<Figures>> = { topology, crash, shaping, measure };

async function main(): Promise<void> {
  const body = scenarios[scenario];
  assert.ok(body, `unknown scenario ${scenario}`);
  assert.match(tag, /^[a-z][a-z0-9]{0,5}$/);
  console.log(`RESULT ${JSON.stringify(await body())}`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
