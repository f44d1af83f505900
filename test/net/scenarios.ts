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
import {
  findLeftovers,
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

function makeLayer(poolSize: number): NetworkLayer {
  const config = parseConfig({ stateDir: '/tmp/petri-net-test', network: { poolSize } });
  return networkLayer(config, tag, (message) => warnings.push(message));
}

function spec(id: string, egress: boolean, bandwidthMbit = 600): SandboxSpec {
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
    network: { inbound: true, egress },
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

const CONNECT = `const s=require('net').connect(+process.argv[2],process.argv[1]);
s.setTimeout(1000,()=>process.exit(3));s.on('data',d=>{process.stdout.write(d);s.end()});s.on('error',e=>{console.error(e.code);process.exit(2)})`;
const SERVE = `require('net').createServer(s=>s.end('hello from '+process.argv[1]+' to '+s.remoteAddress)).listen(+process.argv[2],process.argv[1],()=>console.log('ready'))`;

/** Connects from inside `from` to host:port and returns what the server said. */
function connectFrom(from: LayerInstance, host: string, port: number): Promise<string> {
  return inside(from, [process.execPath, '-e', CONNECT, host, String(port)]);
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

function serveOnGateway(address: string, port: number): Promise<net.Server> {
  const server = net.createServer((socket) => socket.end('hello from gateway'));
  return new Promise((resolve) => server.listen(port, address, () => resolve(server)));
}

async function assertNothingLeft(): Promise<void> {
  const left = await findLeftovers(tag, new Set());
  assert.deepEqual(left, { netns: [], links: [] }, 'no namespace or link of this tag is left');
  assert.ok(!(await listLinks()).includes('petri0'), 'the bridge is gone');
  await assert.rejects(listForwardChain(tag), 'the firewall chain is gone');
}

async function topology(): Promise<Figures> {
  const layer = makeLayer(2);
  const active = layer.mechanisms().map((m) => `${m.name}:${m.active}`);
  assert.deepEqual(active, ['netns:true', 'shaping:true', 'egress-nat:true'], warnings.join('; '));
  await layer.reconcile();
  const a = await layer.prepare(spec('a', false));
  const b = await layer.prepare(spec('b', true));
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
  assert.equal((await readFile('/proc/sys/net/ipv6/conf/petri0/disable_ipv6', 'utf8')).trim(), '1');
  const chain = await listForwardChain(tag);
  assert.match(chain, new RegExp(`-s ${b.address}/32`));
  assert.doesNotMatch(chain, new RegExp(`-s ${a.address}/32`));
  assert.equal((await readFile('/proc/sys/net/ipv4/ip_forward', 'utf8')).trim(), '1');

  // Reach the gateway, and another instance across the bridge.
  const gatewayServer = await serveOnGateway(layer.gateway, 7001);
  assert.equal(await connectFrom(a, layer.gateway, 7001), 'hello from gateway');
  gatewayServer.close();
  const stop = await serveIn(nsB, b.address ?? '', 7002);
  assert.equal(
    await connectFrom(a, b.address ?? '', 7002),
    `hello from ${b.address} to ${a.address}`,
  );
  stop();
  const outside = await checkOutside(a, b, layer.gateway);
  const usage = await a.usage?.();
  assert.ok((usage?.netRxBytes ?? 0) > 0 && (usage?.netTxBytes ?? 0) > 0, JSON.stringify(usage));

  await Promise.all([a.destroy(), b.destroy(), a.destroy()]);
  const netns = (await run('ip', ['netns', 'list'])).split('\n').map((l) => l.split(' ')[0]);
  assert.ok(!netns.includes(nsA) && !netns.includes(nsB), 'destroy removes the namespaces');
  assert.doesNotMatch(await listForwardChain(tag), new RegExp(`-s ${b.address}/32`));
  await layer.close();
  await assertNothingLeft();
  return { usage, outside, warnings };
}

/**
 * "Outside" is a namespace this scenario makes behind the test namespace
 * (192.0.2.1, reached through the node's routing), so forwarding and NAT are
 * exercised without a packet leaving the test's namespaces.
 */
async function checkOutside(a: LayerInstance, b: LayerInstance, gateway: string): Promise<Figures> {
  const outNs = `ptout-${tag}`;
  await ipBatch([
    `netns add ${outNs}`,
    `link add ptout type veth peer name eth0 netns ${outNs}`,
    'addr add 192.0.2.254/24 dev ptout',
    'link set ptout up',
  ]);
  try {
    await ipBatch(['link set lo up', 'addr add 192.0.2.1/24 dev eth0', 'link set eth0 up'], {
      netns: outNs,
    });
    const stop = await serveIn(outNs, '192.0.2.1', 7003);
    try {
      // Egress: allowed, and NATed to the node's outside address.
      const viaNat = await connectFrom(b, '192.0.2.1', 7003);
      assert.equal(viaNat, 'hello from 192.0.2.1 to 192.0.2.254');
      // No egress, even after the function (root in its namespace) adds a default route itself.
      await inside(a, ['ip', 'route', 'add', 'default', 'via', gateway]);
      const blocked = await connectFrom(a, '192.0.2.1', 7003).then(
        (reply) => `reached: ${reply}`,
        () => 'blocked',
      );
      assert.equal(blocked, 'blocked', 'the forward chain drops a non-egress instance');
      return { viaNat, blocked };
    } finally {
      stop();
    }
  } finally {
    await ipBatch([`link del ptout`, `netns del ${outNs}`], { force: true }).catch(() => undefined);
  }
}

async function crash(): Promise<Figures> {
  const crashed = makeLayer(2);
  await crashed.reconcile();
  const c = await crashed.prepare(spec('c', true));
  await crashed.poolIdle();
  const before = await findLeftovers(tag, new Set());
  // The "crashed" layer is abandoned, not closed; a fresh one must clean up after it.
  const layer = makeLayer(1);
  await layer.reconcile();
  await layer.poolIdle();
  const after = await findLeftovers(tag, new Set());
  assert.ok(!after.netns.includes(netnsOf(c)), 'the crashed instance namespace is removed');
  assert.equal(after.netns.length, 1, `only the new pool slot remains: ${after.netns.join(',')}`);
  assert.doesNotMatch(await listForwardChain(tag), new RegExp(`-s ${c.address}/32`));
  await layer.close();
  await assertNothingLeft();
  return { before: before.netns.length, after: after.netns.length };
}

function hostQdiscs(dev: string): Promise<string> {
  return run('tc', ['qdisc', 'show', 'dev', dev]);
}

async function shaping(): Promise<Figures> {
  const layer = makeLayer(1);
  await layer.reconcile();
  await layer.poolIdle();
  // Warm the pool at 600 Mbit/s, so the 50 Mbit/s instance takes the re-shape path.
  await (await layer.prepare(spec('warm', false, 600))).destroy();
  await layer.poolIdle();
  const mbit = 50;
  const a = await layer.prepare(spec('a', false, mbit));
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

  const server = await startIperfServer({ address: layer.gateway, port: 5301 });
  try {
    const client = { server: layer.gateway, port: 5301, seconds: 2, netns: netnsOf(a) };
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
