import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { spawnDaemon, type Daemon } from '../../src/harness/index.ts';
import { nodeTagFrom, runCommand as run } from '../../src/net/index.ts';
import { netnsWithAddress } from '../../src/bench/f2f/cpu.ts';
import { nodeIn } from '../helpers/outside.ts';
import { requireRoot } from '../helpers/root.ts';

/**
 * Function groups on a real daemon (as root, in a namespace made for this
 * test): members get their rank, size, address and peers, reach each other
 * and the coordinator, and nothing else reaches them or is reached by them.
 */
const MEMBER_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'group-member');
const ETCD_DIR = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '../../examples/etcd-group',
);
const REDIS_DIR = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '../../examples/redis-cluster',
);
const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'petri-groups-'));
const codeRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'petri-groups-code-'));
const tag = nodeTagFrom(stateDir);
/** Ten instances of 128 MB fit, eleven do not. */
const BUDGET_MB = 1280;
let daemon: Daemon | undefined;

/** A node handler that listens and connects, to stand for an instance outside any group. */
const PROBE = `
import net from 'node:net';
let server;
export async function handler(event) {
  if (event.probe === 'listen') {
    server ??= await new Promise((resolve) => {
      const s = net.createServer((socket) => socket.end('hello')).listen(7000, '0.0.0.0', () => resolve(s));
    });
    return { address: process.env.PETRI_ADDRESS, gateway: process.env.PETRI_GATEWAY };
  }
  return await new Promise((resolve) => {
    const socket = net.connect({ host: event.host, port: event.port, timeout: 1500 });
    socket.once('connect', () => { socket.destroy(); resolve('connected'); });
    socket.once('timeout', () => { socket.destroy(); resolve('timeout'); });
    socket.once('error', (e) => resolve(e.code));
  });
}
`;

/** Connects (from the namespace it runs in, optionally from a given source address); always exits 0. */
const SPOOF_CONNECT = `const s=require('net').connect({host:process.argv[1],port:+process.argv[2],localAddress:process.argv[3]});
s.setTimeout(1500,()=>{console.log('timeout');process.exit(0)});s.on('connect',()=>{console.log('connected');s.destroy()});s.on('error',e=>{console.log(e.code);process.exit(0)})`;

/** Sends one line to a member's port 7000 from the node (the test namespace) and parses the answer. */
const ASK_SCRIPT = `const s=require('net').connect(+process.argv[2],process.argv[1]);let b='';
s.setTimeout(5000,()=>{console.log(JSON.stringify({error:'timeout'}));process.exit(0)});
s.on('connect',()=>s.write(process.argv[3]+'\\n'));s.on('data',d=>b+=d);s.on('end',()=>console.log(b.trim()||'{}'));
s.on('error',e=>{console.log(JSON.stringify({error:e.code}));process.exit(0)})`;

async function ask(address: string, line: string, port = 7000): Promise<Record<string, unknown>> {
  const out = await nodeIn(daemon!.testbed!.name, ASK_SCRIPT, [address, String(port), line]);
  try {
    return JSON.parse(out) as Record<string, unknown>;
  } catch {
    return { raw: out };
  }
}

async function call(method: 'GET' | 'PUT' | 'POST' | 'DELETE', url: string, body?: unknown) {
  const response = await request(daemon!.url + url, {
    method,
    body: body === undefined ? undefined : JSON.stringify(body),
    headers: { ...daemon!.headers, 'content-type': 'application/json' },
  });
  const text = await response.body.text();
  // A string result of an invoke comes back as text/plain, everything else as JSON.
  const isText = String(response.headers['content-type'] ?? '').startsWith('text/plain');
  return {
    status: response.statusCode,
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- JSON bodies of many shapes
    body: (isText ? text : JSON.parse(text)) as Record<string, any>,
  };
}

async function deploy(name: string, spec: Record<string, unknown>, dir = MEMBER_DIR) {
  const reply = await call('PUT', `/v1/functions/${name}`, { ...spec, source: { path: dir } });
  assert.ok(reply.status < 300, JSON.stringify(reply.body));
}

function readSpec(dir: string): Record<string, unknown> {
  return JSON.parse(fs.readFileSync(path.join(dir, 'petri.json'), 'utf8')) as Record<
    string,
    unknown
  >;
}

interface Member {
  rank: number;
  state: string;
  address: string;
  instanceId: string;
}

async function runGroup(body: Record<string, unknown>): Promise<Member[]> {
  const reply = await call('POST', '/v1/groups', body);
  assert.equal(reply.status, 201, JSON.stringify(reply.body));
  return reply.body.members as Member[];
}

/** Waits until every member answers `info` with its command running. */
async function infos(members: Member[]): Promise<Record<string, unknown>[]> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const answers = await Promise.all(members.map((m) => ask(m.address, 'info')));
    if (answers.every((a) => a.error === undefined) || Date.now() > deadline) return answers;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Reads GET /v1/groups/{name}/events (the node side of the membership stream) line by line. */
async function watch(name: string) {
  const controller = new AbortController();
  const response = await request(`${daemon!.url}/v1/groups/${name}/events`, {
    headers: daemon!.headers,
    signal: controller.signal,
  });
  assert.equal(response.statusCode, 200);
  assert.equal(response.headers['content-type'], 'application/x-ndjson');
  const lines: Record<string, unknown>[] = [];
  let rest = '';
  let ended = false;
  response.body.setEncoding('utf8');
  response.body.on('data', (chunk: string) => {
    const parts = (rest + chunk).split('\n');
    rest = parts.pop() ?? '';
    for (const part of parts)
      if (part.trim() !== '') lines.push(JSON.parse(part) as Record<string, unknown>);
  });
  response.body.on('end', () => (ended = true));
  response.body.on('error', () => (ended = true));
  return {
    get ended() {
      return ended;
    },
    async until(done: (lines: Record<string, unknown>[]) => boolean, ms = 10_000) {
      const deadline = Date.now() + ms;
      while (!done(lines) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      return lines;
    },
    close: () => controller.abort(),
  };
}

function netnsOfTag(): string[] {
  const listing = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  return listing.split('\n').filter((line) => line.startsWith(`petri-${tag}-`));
}

function groupChains(): string[] {
  const listing = execFileSync(
    'nsenter',
    [`--net=/run/netns/${daemon!.testbed!.name}`, '--', 'iptables', '-w', '-S'],
    { encoding: 'utf8' },
  );
  return listing
    .split('\n')
    .filter((line) => new RegExp(`PETRI-${tag.toUpperCase()}-G\\d+`).test(line));
}

function instanceCgroups(): string[] {
  const out = execFileSync(
    'find',
    ['/sys/fs/cgroup', '-maxdepth', '6', '-type', 'd', '-path', `*petri/${tag}/*`],
    {
      encoding: 'utf8',
    },
  );
  return out.split('\n').filter(Boolean);
}

before(async () => {
  if (process.getuid?.() !== 0) return;
  const configFile = path.join(stateDir, 'config.json');
  fs.writeFileSync(
    configFile,
    // etcd preallocates its WAL, a 61 MiB segment plus the next one: more than the default 64 MB /tmp.
    JSON.stringify({
      memoryBudgetMb: BUDGET_MB,
      network: { poolSize: 0 },
      resources: { tmpSizeMb: 192 },
    }),
  );
  daemon = await spawnDaemon({ stateDir, configFile });
  const service = { runtime: 'service', command: ['node', 'member.mjs'], memoryMb: 128 };
  await deploy('member', { ...service, network: { inbound: true } });
  await deploy('ported', { ...service, network: { inbound: [7000] } });
  await deploy('closed', { ...service });
  const probeDir = path.join(codeRoot, 'probe');
  fs.mkdirSync(probeDir);
  fs.writeFileSync(path.join(probeDir, 'index.mjs'), PROBE);
  await deploy('probe', { runtime: 'node', memoryMb: 128, network: { inbound: true } }, probeDir);
});

after(async () => {
  await daemon?.close();
  fs.rmSync(stateDir, { recursive: true, force: true });
  fs.rmSync(codeRoot, { recursive: true, force: true });
});

describe('function groups on a real daemon', () => {
  it('gives each member its rank, size, address and peers, after the barrier', async (t) => {
    if (!requireRoot(t)) return;
    const members = await runGroup({ function: 'member', size: 3, barrier: 3, name: 'trio' });
    assert.deepEqual(
      members.map((m) => m.rank),
      [0, 1, 2],
    );
    const answers = await infos(members);
    const addresses = members.map((m) => m.address);
    const peers = addresses.join('\n') + '\n';
    for (const [rank, info] of answers.entries()) {
      assert.equal(info.group, 'trio');
      assert.equal(info.rank, String(rank));
      assert.equal(info.size, '3');
      assert.equal(info.address, addresses[rank]);
      // The barrier held every command until all three had joined: each saw all peers at start.
      assert.equal(info.peersAtStart, peers, `rank ${rank}'s peers file`);
      assert.match(String(info.coordinator), /^http:\/\/10\.213\.0\.1:\d+$/);
    }
    const got = await call('GET', '/v1/groups/trio');
    assert.deepEqual(
      got.body.members.map((m: Member) => m.state),
      ['running', 'running', 'running'],
    );
    // Members are counted apart from the pool's instances, in the node facts and the metrics.
    const facts = await call('GET', '/v1/node');
    assert.equal(facts.body.groups.running, 1);
    assert.equal(facts.body.groups.members.running, 3);
    const metrics = await request(daemon!.url + '/metrics', { headers: daemon!.headers });
    const text = await metrics.body.text();
    assert.match(text, /^petri_groups 1$/m);
    assert.match(text, /^petri_group_members\{state="running"\} 3$/m);
    const fn = await call('GET', '/v1/functions/member');
    const listed = fn.body.instanceList as { address: string; ports: unknown; rank: number }[];
    assert.deepEqual(listed.map((i) => i.address).sort(), [...addresses].sort());
    assert.ok(listed.every((i) => i.ports === 'all'));
  });

  it('lets members reach each other and the coordinator; the node reaches them', async (t) => {
    if (!requireRoot(t)) return;
    const { body } = await call('GET', '/v1/groups/trio');
    const [a, b, c] = body.members as Member[];
    assert.deepEqual(await ask(a.address, `connect ${b.address} 7000`), { result: 'connected' });
    assert.deepEqual(await ask(c.address, `connect ${a.address} 7001`), { result: 'connected' });
    const self = await ask(b.address, 'coordinator /v1/self');
    assert.equal(self.status, 200);
    assert.equal(JSON.parse(String(self.body)).rank, 1);
    const peers = await ask(b.address, 'coordinator /v1/peers');
    assert.equal(peers.body, [a, b, c].map((m) => m.address + '\n').join(''));
  });

  it('keeps other groups, other functions and the node apart as the specs say', async (t) => {
    if (!requireRoot(t)) return;
    const trio = (await call('GET', '/v1/groups/trio')).body.members as Member[];
    const [other] = await runGroup({ function: 'member', size: 1, name: 'other' });
    const ported = await runGroup({ function: 'ported', size: 2, name: 'ported' });
    const closed = await runGroup({ function: 'closed', size: 2, name: 'closed' });
    await infos([other, ...ported]);
    const loner = (await call('POST', '/v1/functions/probe/invoke', { probe: 'listen' })).body;
    // Across groups: neither way (reset by the node, so at once).
    const refused = { result: 'ECONNREFUSED' };
    assert.deepEqual(await ask(other.address, `connect ${trio[0].address} 7000`), refused);
    assert.deepEqual(await ask(trio[0].address, `connect ${other.address} 7000`), refused);
    // A plain instance with inbound on: no member reaches it, it reaches no member.
    assert.deepEqual(await ask(trio[0].address, `connect ${loner.address} 7000`), refused);
    const fromLoner = await call('POST', '/v1/functions/probe/invoke', {
      host: trio[0].address,
      port: 7000,
    });
    assert.equal(fromLoner.body, 'ECONNREFUSED');
    // …nor the coordinator: only members may.
    const coordinatorPort = Number(
      new URL(String((await ask(trio[0].address, 'info')).coordinator)).port,
    );
    const toCoordinator = await call('POST', '/v1/functions/probe/invoke', {
      host: String(loner.gateway),
      port: coordinatorPort,
    });
    assert.equal(toCoordinator.body, 'EHOSTUNREACH');
    // A port list opens those TCP ports only, to the node and to peers.
    assert.deepEqual(await ask(ported[0].address, `connect ${ported[1].address} 7000`), {
      result: 'connected',
    });
    assert.deepEqual(await ask(ported[0].address, `connect ${ported[1].address} 7001`), refused);
    assert.equal((await ask(ported[1].address, 'info', 7001)).error, 'EHOSTUNREACH');
    // Without inbound, neither the node nor a peer connects.
    assert.equal((await ask(closed[0].address, 'info')).error, 'EHOSTUNREACH');
    for (const name of ['other', 'ported', 'closed']) {
      assert.equal((await call('DELETE', `/v1/groups/${name}`)).status, 200);
    }
  });

  it('streams joins and leaves and rewrites the peers file when the group scales', async (t) => {
    if (!requireRoot(t)) return;
    const nodeSide = await watch('trio');
    const up = await call('POST', '/v1/groups/trio/scale', { size: 5 });
    assert.equal(up.status, 200, JSON.stringify(up.body));
    const members = up.body.members as Member[];
    assert.deepEqual(
      members.map((m) => m.rank),
      [0, 1, 2, 3, 4],
    );
    await infos(members);
    const down = await call('POST', '/v1/groups/trio/scale', { size: 2 });
    assert.deepEqual(
      (down.body.members as Member[]).map((m) => m.rank),
      [0, 1],
    );
    const deadline = Date.now() + 5000;
    let seen: { type: string; rank: number }[] = [];
    let info: Record<string, unknown> = {};
    while (Date.now() < deadline) {
      seen = ((await ask(members[0].address, 'events')).events ?? []) as typeof seen;
      info = await ask(members[0].address, 'info');
      if (seen.filter((e) => e.type === 'leave').length >= 3) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const changes = seen.filter((e) => e.type !== 'members').map((e) => `${e.type} ${e.rank}`);
    assert.deepEqual(changes.filter((e) => e.startsWith('join')).sort(), ['join 3', 'join 4']);
    assert.deepEqual(changes.filter((e) => e.startsWith('leave')).sort(), [
      'leave 2',
      'leave 3',
      'leave 4',
    ]);
    // The node side (GET /v1/groups/{name}/events) heard the same changes, in order.
    const heard = await nodeSide.until(
      (lines) => lines.filter((l) => l.type === 'leave').length >= 3,
    );
    nodeSide.close();
    assert.deepEqual(heard[0].type, 'members');
    assert.equal((heard[0].members as unknown[]).length, 3);
    assert.deepEqual(
      heard
        .slice(1)
        .map((e) => `${e.type} ${e.rank}`)
        .sort(),
      ['join 3', 'join 4', 'leave 2', 'leave 3', 'leave 4'],
    );
    assert.deepEqual(
      (heard.at(-1)!.members as Member[]).map((m) => m.address),
      members.slice(0, 2).map((m) => m.address),
    );
    assert.equal(
      info.peersNow,
      members
        .slice(0, 2)
        .map((m) => m.address + '\n')
        .join(''),
    );
  });

  it('admits a group all or nothing against the memory budget', async (t) => {
    if (!requireRoot(t)) return;
    const before = netnsOfTag().length;
    // Two members of trio and the probe (384 MB) are running; 8 more of 128 MB would pass 1280 MB.
    const reply = await call('POST', '/v1/groups', { function: 'member', size: 8, name: 'big' });
    assert.equal(reply.status, 503);
    assert.equal(reply.body.error.code, 'CapacityExceeded');
    assert.equal((await call('GET', '/v1/groups/big')).body.error.code, 'GroupNotFound');
    assert.equal(netnsOfTag().length, before, 'no member was started');
    const fits = await call('POST', '/v1/groups', { function: 'member', size: 7, name: 'fits' });
    assert.equal(fits.status, 201, JSON.stringify(fits.body));
    assert.equal((await call('DELETE', '/v1/groups/fits')).status, 200);
  });

  it('rejects bad group requests with registered codes and keeps serving', async (t) => {
    if (!requireRoot(t)) return;
    const cases: [unknown, number, string][] = [
      [{ function: 'member', size: 0 }, 400, 'InvalidRequest'],
      [{ function: 'member', size: 2, barrier: 3 }, 400, 'InvalidRequest'],
      [{ function: 'member', size: 1, extra: true }, 400, 'InvalidRequest'],
      [{ function: 'probe', size: 1 }, 400, 'InvalidRequest'],
      [{ function: 'nope', size: 1 }, 404, 'FunctionNotFound'],
      [{ function: 'member', size: 1, name: 'trio' }, 409, 'GroupExists'],
    ];
    for (const [body, status, code] of cases) {
      const reply = await call('POST', '/v1/groups', body);
      assert.equal(reply.status, status, JSON.stringify(body));
      assert.equal(reply.body.error.code, code, JSON.stringify(body));
    }
    const invoke = await call('POST', '/v1/functions/member/invoke', {});
    assert.equal(invoke.body.error.code, 'NotInvocable');
    assert.equal((await call('GET', '/v1/groups')).status, 200);
  });

  it('removes every member’s namespace, cgroup and rules with the group', async (t) => {
    if (!requireRoot(t)) return;
    assert.ok(groupChains().length > 0, 'the running group has rules');
    const namespaces = netnsOfTag().length;
    const stream = await watch('trio');
    assert.equal((await call('DELETE', '/v1/groups/trio')).status, 200);
    await stream.until(() => stream.ended);
    assert.ok(stream.ended, "the node side's stream ends with the group");
    assert.equal((await call('GET', '/v1/groups/trio/events')).body.error.code, 'GroupNotFound');
    assert.deepEqual((await call('GET', '/v1/groups')).body.groups, []);
    assert.deepEqual(groupChains(), []);
    assert.equal(netnsOfTag().length, namespaces - 2, "both members' namespaces are gone");
    assert.deepEqual(
      instanceCgroups().filter((dir) => /\/member-\d+-/.test(dir)),
      [],
      'no member cgroup is left',
    );
  });

  it('runs an unmodified etcd cluster of 3 that reaches quorum and serves a put/get', async (t) => {
    if (
      !requireRoot(t, () =>
        fs.existsSync('/usr/bin/etcd') ? undefined : 'etcd-server not installed',
      )
    )
      return;
    await deploy('etcd', readSpec(ETCD_DIR), ETCD_DIR);
    const members = await runGroup({ function: 'etcd', size: 3, barrier: 3, name: 'kv' });
    const endpoints = members.map((m) => `http://${m.address}:2379`).join(',');
    const etcdctl = (...args: string[]) =>
      run('nsenter', [
        `--net=/run/netns/${daemon!.testbed!.name}`,
        '--',
        'etcdctl',
        '--endpoints',
        endpoints,
        '--command-timeout=5s',
        ...args,
      ]);
    const deadline = Date.now() + 30_000;
    let health = '';
    while (Date.now() < deadline) {
      health = await etcdctl('endpoint', 'health', '-w', 'json').catch((err: Error) => err.message);
      if ((health.match(/"health":true/g) ?? []).length === 3) break;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    const diagnosis = async () => {
      const group = (await call('GET', '/v1/groups/kv')).body;
      const exited = new Set(
        (group.members as (Member & { exitCode?: number })[])
          .filter((m) => m.exitCode !== undefined)
          .map((m) => m.instanceId),
      );
      const logs = (await call('GET', '/v1/functions/etcd/logs?limit=2000')).body.logs as {
        instanceId: string;
        line: string;
      }[];
      const lines = logs.filter((l) => exited.has(l.instanceId)).map((l) => l.line);
      return JSON.stringify({ health, group, exitedLogs: lines.slice(-15) });
    };
    assert.equal((health.match(/"health":true/g) ?? []).length, 3, await diagnosis());
    const list = await etcdctl('member', 'list');
    assert.equal(list.trim().split('\n').length, 3, list);
    const one = (m: Member) => ['--endpoints', `http://${m.address}:2379`];
    const ctl = (m: Member, ...args: string[]) =>
      run('nsenter', [
        `--net=/run/netns/${daemon!.testbed!.name}`,
        '--',
        'etcdctl',
        ...one(m),
        ...args,
      ]);
    assert.equal((await ctl(members[0], 'put', 'greeting', 'hello')).trim(), 'OK');
    assert.equal((await ctl(members[2], 'get', 'greeting', '--print-value-only')).trim(), 'hello');
    assert.equal((await call('DELETE', '/v1/groups/kv')).status, 200);
  });

  it('runs an unmodified Redis Cluster of 6 that rank 0 creates; SET/GET through redis-cli -c', async (t) => {
    if (
      !requireRoot(t, () =>
        fs.existsSync('/usr/bin/redis-server') && fs.existsSync('/usr/bin/redis-cli')
          ? undefined
          : 'redis-server / redis-tools not installed',
      )
    )
      return;
    await deploy('redis', readSpec(REDIS_DIR), REDIS_DIR);
    const members = await runGroup({ function: 'redis', size: 6, barrier: 6, name: 'cache' });
    const fromNode = (file: string, ...args: string[]) =>
      run('nsenter', [`--net=/run/netns/${daemon!.testbed!.name}`, '--', file, ...args]);
    const cli = (m: Member, ...args: string[]) =>
      fromNode('redis-cli', '-h', m.address, '-p', '6379', ...args);
    // Slots are assigned first, replicas attached last, and each member learns the state on
    // its own: formed = every member says cluster_state:ok and three replicas are attached.
    const deadline = Date.now() + 60_000;
    let infos: string[] = [];
    let roles = '';
    while (Date.now() < deadline) {
      infos = await Promise.all(
        members.map((m) => cli(m, 'cluster', 'info').catch((err: Error) => err.message)),
      );
      roles = await cli(members[0], 'cluster', 'nodes').catch((err: Error) => err.message);
      const ok = infos.every((info) => /cluster_state:ok/.test(info));
      if (ok && (roles.match(/slave/g) ?? []).length === 3) break;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    const info = infos.join('\n');
    const logs = async () =>
      JSON.stringify(
        ((await call('GET', '/v1/functions/redis/logs?limit=200')).body.logs as { line: string }[])
          .map((l) => l.line)
          .slice(-20),
      );
    assert.ok(
      infos.every((one) => /cluster_state:ok/.test(one)),
      info + (await logs()),
    );
    assert.match(info, /cluster_size:3/, info);
    assert.equal((roles.match(/master/g) ?? []).length, 3, roles);
    assert.equal((roles.match(/slave/g) ?? []).length, 3, roles);
    // -c follows MOVED redirects: keys land on different masters, any member answers.
    for (const key of ['alpha', 'beta', 'gamma']) {
      assert.equal((await cli(members[1], '-c', 'set', key, `v-${key}`)).trim(), 'OK');
      assert.equal((await cli(members[4], '-c', 'get', key)).trim(), `v-${key}`);
    }
    const bench = await fromNode(
      'redis-benchmark',
      ...['--cluster', '-h', members[0].address, '-p', '6379'],
      ...['-n', '2000', '-c', '8', '-t', 'set,get', '-q'],
    );
    t.diagnostic(bench.trim().replace(/\s+/g, ' '));
    assert.match(bench, /SET: [\d.]+ requests per second/, bench);
    assert.match(bench, /GET: [\d.]+ requests per second/, bench);
    const namespaces = netnsOfTag().length;
    assert.equal((await call('DELETE', '/v1/groups/cache')).status, 200);
    assert.equal(netnsOfTag().length, namespaces - 6, "the members' namespaces are gone");
    assert.deepEqual(
      instanceCgroups().filter((dir) => /\/redis-\d+-/.test(dir)),
      [],
      'no member cgroup is left',
    );
  });

  it('leaves nothing after a crash (reconcile) and after a stop', async (t) => {
    if (!requireRoot(t)) return;
    await runGroup({ function: 'member', size: 2, name: 'crash' });
    assert.ok(groupChains().length > 0);
    const testbed = daemon!.testbed!;
    await daemon!.stop('SIGKILL');
    const configFile = path.join(stateDir, 'config.json');
    daemon = await spawnDaemon({ stateDir, configFile, testbed, token: daemon!.token });
    assert.deepEqual(groupChains(), [], 'reconcile removed the crashed group’s rules');
    assert.deepEqual(netnsOfTag(), [], 'and its namespaces');
    assert.deepEqual((await call('GET', '/v1/groups')).body.groups, []);
    await runGroup({ function: 'member', size: 2, name: 'stop' });
    // A node-side stream left open does not hold the stop up; it ends with the daemon.
    const open = await watch('stop');
    await daemon!.stop('SIGTERM');
    await open.until(() => open.ended);
    assert.ok(open.ended);
    assert.deepEqual(groupChains(), []);
    assert.deepEqual(netnsOfTag(), []);
    assert.deepEqual(instanceCgroups(), []);
    await testbed.close();
    daemon = undefined;
  });
});

/**
 * The direct path (src/net/group-path.ts) is for unshaped members that open
 * every port, so these run on a second daemon with shaping off; the one above
 * (shaping on, the default) keeps every member on the routed path.
 */
describe('the direct path between members, shaping off', () => {
  const directState = fs.mkdtempSync(path.join(os.tmpdir(), 'petri-groups-direct-'));
  const directTag = nodeTagFrom(directState);
  let main: Daemon | undefined;

  before(async () => {
    if (process.getuid?.() !== 0) return;
    main = daemon;
    const configFile = path.join(directState, 'config.json');
    fs.writeFileSync(
      configFile,
      JSON.stringify({ isolation: { shaping: 'off' }, network: { poolSize: 0 } }),
    );
    daemon = await spawnDaemon({ stateDir: directState, configFile });
    const service = { runtime: 'service', command: ['node', 'member.mjs'], memoryMb: 128 };
    await deploy('member', { ...service, network: { inbound: true } });
    await deploy('ported', { ...service, network: { inbound: [7000] } });
    await deploy(
      'probe',
      { runtime: 'node', memoryMb: 128, network: { inbound: true } },
      path.join(codeRoot, 'probe'),
    );
    await runGroup({ function: 'member', size: 3, barrier: 3, name: 'trio' });
  });

  after(async () => {
    await daemon?.close();
    daemon = main;
    fs.rmSync(directState, { recursive: true, force: true });
  });

  it('takes the direct path between members only; a spoofed MAC or source does not get in', async (t) => {
    if (!requireRoot(t)) return;
    const trio = (await call('GET', '/v1/groups/trio')).body.members as Member[];
    await infos(trio);
    const [a, b] = trio;
    const testbed = daemon!.testbed!.name;
    const [nsA, nsB] = [
      await netnsWithAddress(directTag, a.address),
      await netnsWithAddress(directTag, b.address),
    ];
    const veth = (ns: string) => `pv${directTag}${ns.slice(`petri-${directTag}-`.length)}`;
    const macOf = async (ns: string) => {
      const link = JSON.parse(await run('ip', ['-n', ns, '-j', 'link', 'show', 'dev', 'eth0']));
      return String((link as { address: string }[])[0].address);
    };
    // a resolves b to b's own MAC (set by the node, permanent), and a filter on a's host
    // veth sends exactly a → b to b's host veth, bypassing the bridge and the node.
    const neigh = await run('ip', ['-n', nsA, 'neigh', 'show', b.address]);
    assert.match(neigh, new RegExp(`lladdr ${await macOf(nsB)} PERMANENT`));
    const filters = (ns: string) =>
      run('tc', ['-n', testbed, '-s', 'filter', 'show', 'dev', veth(ns), 'ingress']);
    const before = await filters(nsA);
    assert.match(before, new RegExp(`match 0ad5[0-9a-f]{4}/ffffffff at 12`), before);
    assert.match(before, new RegExp(`Redirect to device ${veth(nsB)}`), before);
    const sent = (listing: string) =>
      [...listing.matchAll(/Sent (\d+) bytes/g)].reduce((sum, m) => sum + Number(m[1]), 0);
    assert.deepEqual(await ask(a.address, `connect ${b.address} 7000`), { result: 'connected' });
    const afterConnect = await filters(nsA);
    assert.ok(sent(afterConnect) > sent(before), 'the connection took the direct path');
    // A member of another group acts as a compromised instance (root in its namespace):
    const [spoofer] = await runGroup({ function: 'member', size: 1, name: 'spoofer' });
    await infos([spoofer]);
    const nsS = await netnsWithAddress(directTag, spoofer.address);
    // routed, it is refused as before;
    assert.deepEqual(await ask(spoofer.address, `connect ${b.address} 7000`), {
      result: 'ECONNREFUSED',
    });
    // with b's MAC learnt, its frames meet an isolated bridge port and go nowhere;
    await run('ip', [
      '-n',
      nsS,
      'neigh',
      'replace',
      b.address,
      'lladdr',
      await macOf(nsB),
      'dev',
      'eth0',
      'nud',
      'permanent',
    ]);
    assert.equal(await nodeIn(nsS, SPOOF_CONNECT, [b.address, '7000']), 'timeout');
    // with a's address as its source too (the filter on a's port is not on its port);
    await run('ip', ['-n', nsS, 'addr', 'add', `${a.address}/32`, 'dev', 'eth0']);
    assert.equal(await nodeIn(nsS, SPOOF_CONNECT, [b.address, '7000', a.address]), 'timeout');
    // routed with a's source, b's answer goes to the real a: no connection either.
    await run('ip', ['-n', nsS, 'neigh', 'del', b.address, 'dev', 'eth0']);
    assert.notEqual(await nodeIn(nsS, SPOOF_CONNECT, [b.address, '7000', a.address]), 'connected');
    // The spoofer's own port has no filter: nothing of it is on the direct path.
    const spooferFilters = await filters(nsS);
    assert.doesNotMatch(spooferFilters, /Redirect/);
    assert.equal((await call('DELETE', '/v1/groups/spoofer')).status, 200);
    // a and b still talk.
    assert.deepEqual(await ask(a.address, `connect ${b.address} 7001`), { result: 'connected' });
  });

  it('keeps other groups, port-listed members and plain instances apart on it', async (t) => {
    if (!requireRoot(t)) return;
    const trio = (await call('GET', '/v1/groups/trio')).body.members as Member[];
    const [other] = await runGroup({ function: 'member', size: 1, name: 'other' });
    const ported = await runGroup({ function: 'ported', size: 2, name: 'ported' });
    await infos([other, ...ported, ...trio]);
    const loner = (await call('POST', '/v1/functions/probe/invoke', { probe: 'listen' })).body;
    const refused = { result: 'ECONNREFUSED' };
    for (const member of trio.slice(1)) {
      assert.deepEqual(await ask(trio[0].address, `connect ${member.address} 7001`), {
        result: 'connected',
      });
    }
    assert.deepEqual(await ask(other.address, `connect ${trio[0].address} 7000`), refused);
    assert.deepEqual(await ask(trio[0].address, `connect ${other.address} 7000`), refused);
    assert.deepEqual(await ask(trio[0].address, `connect ${ported[0].address} 7000`), refused);
    assert.deepEqual(await ask(trio[0].address, `connect ${loner.address} 7000`), refused);
    const fromLoner = await call('POST', '/v1/functions/probe/invoke', {
      host: trio[1].address,
      port: 7000,
    });
    assert.equal(fromLoner.body, 'ECONNREFUSED');
    // A port list keeps its members routed: the group chain still opens only that port.
    assert.deepEqual(await ask(ported[0].address, `connect ${ported[1].address} 7000`), {
      result: 'connected',
    });
    assert.deepEqual(await ask(ported[0].address, `connect ${ported[1].address} 7001`), refused);
    // Scaling takes leavers off the path and puts joiners on it.
    const up = await call('POST', '/v1/groups/trio/scale', { size: 4 });
    const four = up.body.members as Member[];
    await infos(four);
    assert.deepEqual(await ask(four[3].address, `connect ${four[0].address} 7000`), {
      result: 'connected',
    });
    const down = await call('POST', '/v1/groups/trio/scale', { size: 2 });
    assert.equal(down.status, 200);
    const [first, second] = down.body.members as Member[];
    const ns0 = await netnsWithAddress(directTag, first.address);
    const neigh = await run('ip', ['-n', ns0, 'neigh', 'show', 'nud', 'permanent']);
    assert.deepEqual(
      neigh
        .split('\n')
        .filter(Boolean)
        .map((line) => line.split(' ')[0]),
      [second.address],
      'only the peer still in the group is resolved directly',
    );
    for (const name of ['other', 'ported', 'trio']) {
      assert.equal((await call('DELETE', `/v1/groups/${name}`)).status, 200);
    }
  });
});
