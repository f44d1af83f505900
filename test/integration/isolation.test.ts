import assert from 'node:assert/strict';
import { execFileSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { spawnDaemon, type Daemon } from '../../src/harness/index.ts';
import { parseCpuList } from '../../src/cgroup/index.ts';
import { nodeTagFrom } from '../../src/net/index.ts';
import {
  CONNECT_SCRIPT,
  SERVE_SCRIPT,
  createOutside,
  nodeIn,
  serveIn,
} from '../helpers/outside.ts';
import { requireRoot } from '../helpers/root.ts';

/**
 * The isolation paths for real: a daemon (as root, in a namespace made for
 * this test) runs functions that try to break out of their limits.
 */
const MECHANISMS = [
  'bwrap',
  'netns',
  'shaping',
  'firewall',
  'egress-nat',
  'cgroup-cpu',
  'cgroup-memory',
  'cgroup-pids',
];
const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'petri-iso-'));
const codeRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'petri-iso-code-'));
let daemon: Daemon | undefined;
let missing = 'not started';
/** An ssh-like listener on every address of the node's (test) namespace, gateway included. */
const NODE_SERVICE_PORT = 2222;
let nodeService: ChildProcess | undefined;
/** A private address outside that the node's config allows egress to, on this port only. */
const ALLOWED = { address: '192.168.77.1', port: 7005 };

const PROBE = `
import fs from 'node:fs';
import net from 'node:net';
import { execFileSync } from 'node:child_process';

function cpus() { return fs.readFileSync('/proc/self/status', 'utf8').match(/Cpus_allowed_list:\\s*(\\S+)/)[1]; }
function attempt(fn) { try { fn(); return 'ok'; } catch (e) { return e.code ?? e.message; } }
function connect(host, port) {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port, timeout: 1500 });
    socket.once('connect', () => { socket.destroy(); resolve('connected'); });
    socket.once('timeout', () => { socket.destroy(); resolve('timeout'); });
    socket.once('error', (e) => resolve(e.code));
  });
}

let server;

export async function handler(event) {
  switch (event.probe) {
    case 'listen':
      if (!server) {
        server = net.createServer((socket) => socket.end('hello'));
        await new Promise((resolve) => server.listen(event.port, '0.0.0.0', resolve));
      }
      return { address: process.env.PETRI_ADDRESS, gateway: process.env.PETRI_GATEWAY };
    case 'spin': {
      const started = process.cpuUsage();
      const wallStart = Date.now();
      const seen = new Set();
      let next = wallStart;
      while (Date.now() - wallStart < event.ms) {
        if (Date.now() >= next) { seen.add(cpus()); next += 20; }
      }
      const used = process.cpuUsage(started);
      return { cpuMs: (used.user + used.system) / 1000, wallMs: Date.now() - wallStart, cpusSeen: [...seen] };
    }
    case 'allocate': {
      const chunks = [];
      for (let i = 0; i < event.mb; i++) chunks.push(Buffer.alloc(1024 * 1024, 1));
      return { allocated: chunks.length };
    }
    case 'look':
      return {
        pids: fs.readdirSync('/proc').filter((n) => /^\\d+$/.test(n)).length,
        otherCode: fs.existsSync(event.otherCode),
        database: fs.existsSync(event.database),
        writeCode: attempt(() => fs.writeFileSync(process.cwd() + '/x', 'x')),
        writeRoot: attempt(() => fs.writeFileSync('/etc/petri-x', 'x')),
        writeOwnLimit: attempt(() => {
          // Its own CPU limit, written back unchanged: harmless even if the write went through.
          const line = fs.readFileSync('/proc/self/cgroup', 'utf8').split('\\n')
            .find((l) => /:(cpu|cpu,cpuacct|cpuacct,cpu)?:/.test(l) && !/:cpuset:/.test(l)) ?? '';
          const rel = line.split(':')[2] ?? '';
          const v1 = '/sys/fs/cgroup/cpu' + rel + '/cpu.cfs_quota_us';
          const file = fs.existsSync(v1) ? v1 : '/sys/fs/cgroup' + rel + '/cpu.max';
          fs.writeFileSync(file, fs.readFileSync(file, 'utf8'));
        }),
        address: process.env.PETRI_ADDRESS,
      };
    case 'cpus':
      return { cpus: cpus() };
    case 'connect':
      return { result: await connect(event.host, event.port) };
    case 'unshape':
      return {
        del: attempt(() => execFileSync('tc', ['qdisc', 'del', 'dev', 'eth0', 'root'], { stdio: 'pipe' })),
        route: attempt(() => execFileSync('ip', ['route', 'add', 'default', 'dev', 'eth0'], { stdio: 'pipe' })),
      };
  }
  return null;
}
`;

async function call(method: 'GET' | 'PUT' | 'POST', url: string, body?: unknown) {
  const response = await request(daemon!.url + url, {
    method,
    body: body === undefined ? undefined : JSON.stringify(body),
    headers: { ...daemon!.headers, 'content-type': 'application/json' },
  });
  return {
    status: response.statusCode,
    body: (await response.body.json()) as Record<string, unknown>,
  };
}

async function deploy(name: string, spec: Record<string, unknown>): Promise<void> {
  const dir = path.join(codeRoot, name);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'index.mjs'), PROBE);
  const reply = await call('PUT', `/v1/functions/${name}`, {
    runtime: 'node',
    ...spec,
    source: { path: dir },
  });
  assert.ok(reply.status < 300, JSON.stringify(reply.body));
}

function invoke(name: string, event: Record<string, unknown>) {
  return call('POST', `/v1/functions/${name}/invoke`, event);
}

function leftovers(tagPattern: RegExp): string[] {
  const netns = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  const cgroups = execFileSync('find', ['/sys/fs/cgroup', '-type', 'd', '-path', '*petri*'], {
    encoding: 'utf8',
  });
  return [...netns.split('\n'), ...cgroups.split('\n')].filter((line) => tagPattern.test(line));
}

before(async () => {
  if (process.getuid?.() !== 0) return;
  const configFile = path.join(stateDir, 'config.json');
  fs.writeFileSync(configFile, JSON.stringify({ network: { egressAllow: [ALLOWED] } }));
  daemon = await spawnDaemon({ stateDir, configFile });
  nodeService = await serveIn(daemon.testbed!.name, SERVE_SCRIPT, [String(NODE_SERVICE_PORT)]);
  const node = (await call('GET', '/v1/node')).body as {
    isolation: { mechanisms: { name: string; active: boolean; reason?: string }[] };
  };
  const inactive = node.isolation.mechanisms.filter((m) => !m.active);
  const absent = MECHANISMS.filter(
    (name) => !node.isolation.mechanisms.some((m) => m.name === name),
  );
  missing = [
    ...inactive.map((m) => `${m.name}: ${m.reason}`),
    ...absent.map((n) => `${n}: not reported`),
  ].join('; ');
  await deploy('cpu', { memoryMb: 354 }); // 0.2 vCPU
  await deploy('mem', { memoryMb: 128, timeoutMs: 20_000 });
  await deploy('probe', { memoryMb: 128 });
  await deploy('other', { memoryMb: 128 });
  await deploy('egress', { memoryMb: 128, network: { egress: true } });
  await deploy('listener', { memoryMb: 128 });
});

after(async () => {
  nodeService?.kill('SIGKILL');
  await daemon?.close();
  fs.rmSync(stateDir, { recursive: true, force: true });
  fs.rmSync(codeRoot, { recursive: true, force: true });
});

/** Fails under CI=true as root when a mechanism is missing; skips when not root. */
function ready(t: Parameters<typeof requireRoot>[0]): boolean {
  return requireRoot(t, () => (missing === '' ? undefined : missing));
}

describe('isolation on a real daemon', () => {
  it('reports every isolation mechanism active', (t) => {
    if (!ready(t)) return;
    assert.equal(missing, '');
  });

  it('holds a CPU-bound function to its quota (±20 %)', async (t) => {
    if (!ready(t)) return;
    await invoke('cpu', { probe: 'spin', ms: 10 }); // start it: the init boost is over once ready
    const { body } = await invoke('cpu', { probe: 'spin', ms: 2000 });
    const share = (body.cpuMs as number) / (body.wallMs as number);
    assert.ok(Math.abs(share - 0.2) <= 0.04, `CPU share ${share.toFixed(3)} for a 0.2 vCPU quota`);
  });

  it('kills a function that exceeds its memory with OutOfMemory', async (t) => {
    if (!ready(t)) return;
    const reply = await invoke('mem', { probe: 'allocate', mb: 400 });
    assert.equal((reply.body.error as { code: string }).code, 'OutOfMemory');
    const fine = await invoke('mem', { probe: 'allocate', mb: 10 });
    assert.deepEqual(fine.body, { allocated: 10 });
  });

  it("hides other instances' processes and files, and keeps root and code read-only", async (t) => {
    if (!ready(t)) return;
    await invoke('other', { probe: 'look' });
    const { body } = await invoke('probe', {
      probe: 'look',
      otherCode: path.join(stateDir, 'functions/other/v1/code/index.mjs'),
      database: path.join(stateDir, 'petri.db'),
    });
    assert.ok((body.pids as number) <= 3, `sees ${body.pids} processes`);
    assert.equal(body.otherCode, false);
    assert.equal(body.database, false);
    assert.equal(body.writeCode, 'EROFS');
    assert.equal(body.writeRoot, 'EROFS');
    // Its own cgroup folders are shown read-only (runtimes size themselves from them).
    assert.ok(
      ['EROFS', 'EACCES'].includes(String(body.writeOwnLimit)),
      `its cgroup files are read-only: ${body.writeOwnLimit}`,
    );
    assert.match(String(body.address), /^10\.213\./);
  });

  it('cannot remove its shaping or add itself a route', async (t) => {
    if (!ready(t)) return;
    const { body } = await invoke('probe', { probe: 'unshape' });
    assert.notEqual(body.del, 'ok');
    assert.notEqual(body.route, 'ok');
  });

  it('reaches neither the node’s services nor another instance; nothing connects in', async (t) => {
    if (!ready(t)) return;
    const testbed = daemon!.testbed!;
    const api = new URL(daemon!.url);
    const { body: listening } = await invoke('listener', { probe: 'listen', port: 7070 });
    const gateway = String(listening.gateway);
    const peer = String(listening.address);
    const attempt = async (name: string, host: string, port: number | string) =>
      (await invoke(name, { probe: 'connect', host, port: Number(port) })).body.result;
    const fromNode = (host: string, port: number) =>
      nodeIn(testbed.name, CONNECT_SCRIPT, [host, String(port)]);
    // The listeners are up: the node reaches its own, the instance its own.
    assert.equal(await fromNode(gateway, NODE_SERVICE_PORT), 'connected');
    assert.equal(await attempt('listener', peer, 7070), 'connected');
    for (const name of ['probe', 'egress']) {
      // The firewall rejects at once (icmp-admin-prohibited), so the attempt fails fast.
      assert.equal(await attempt(name, gateway, NODE_SERVICE_PORT), 'EHOSTUNREACH', name);
      // The API's address is outside the subnet: no route there without egress, rejected with.
      const toApi = await attempt(name, api.hostname, api.port);
      assert.equal(toApi, name === 'egress' ? 'EHOSTUNREACH' : 'ENETUNREACH', name);
      assert.notEqual(await attempt(name, peer, 7070), 'connected', `${name} → another instance`);
    }
    // Without network.inbound not even the node connects to an instance.
    assert.equal(await fromNode(peer, 7070), 'EHOSTUNREACH');
    const other = await invoke('other', { probe: 'cpus' });
    assert.equal(other.status, 200, 'the node keeps serving');
  });

  it('egress reaches public addresses and the allow-list, never link-local or private', async (t) => {
    if (!ready(t)) return;
    const testbed = daemon!.testbed!;
    const outside = await createOutside(testbed.name, [
      '203.0.113.7',
      '169.254.169.254',
      ALLOWED.address,
      '10.77.0.1',
    ]);
    try {
      await outside.serve(8080);
      await outside.serve(ALLOWED.port);
      const attempt = async (name: string, host: string, port: number) =>
        (await invoke(name, { probe: 'connect', host, port })).body.result;
      const results = {
        public: await attempt('egress', '203.0.113.7', 8080),
        publicLink: await attempt('egress', outside.linkAddress, 8080),
        allowed: await attempt('egress', ALLOWED.address, ALLOWED.port),
        metadata: await attempt('egress', '169.254.169.254', 8080),
        privateOtherPort: await attempt('egress', ALLOWED.address, 8080),
        private10: await attempt('egress', '10.77.0.1', 8080),
        nodeOwnAddress: await attempt('egress', outside.nodeAddress, NODE_SERVICE_PORT),
        withoutEgress: await attempt('probe', '203.0.113.7', 8080),
      };
      t.diagnostic(JSON.stringify(results));
      assert.equal(results.public, 'connected');
      assert.equal(results.publicLink, 'connected');
      assert.equal(results.allowed, 'connected');
      assert.equal(results.metadata, 'EHOSTUNREACH');
      assert.equal(results.privateOtherPort, 'EHOSTUNREACH');
      assert.equal(results.private10, 'EHOSTUNREACH');
      assert.equal(results.nodeOwnAddress, 'EHOSTUNREACH');
      assert.notEqual(results.withoutEgress, 'connected');
      const { body } = await invoke('listener', { probe: 'listen', port: 7070 });
      assert.notEqual(
        await outside.connect(String(body.address), 7070),
        'connected',
        'nothing connects in from outside',
      );
      const other = await invoke('other', { probe: 'cpus' });
      assert.equal(other.status, 200, 'the node keeps serving');
    } finally {
      await outside.close();
    }
  });

  it('packs a function called one at a time onto the daemon core, and spreads on overlap', async (t) => {
    if (!ready(t)) return;
    for (let i = 0; i < 3; i++) await invoke('probe', { probe: 'cpus' });
    await sleep(300);
    const { placement, cores } = (await call('GET', '/v1/node')).body as {
      cores: number;
      placement: {
        active: boolean;
        reason?: string;
        current: string;
        daemonCpu: number;
        allCpus: string;
      };
    };
    if (
      !requireRoot(t, () => (placement.active ? undefined : `cpu placement: ${placement.reason}`))
    )
      return;
    assert.equal(placement.current, 'pack');
    assert.equal(cores, os.availableParallelism(), 'a pinned daemon still counts every core');
    const packed = await invoke('probe', { probe: 'cpus' });
    assert.equal(packed.body.cpus, String(placement.daemonCpu));
    const overlapping = await Promise.all(
      [1, 2, 3].map(() => invoke('probe', { probe: 'spin', ms: 600 })),
    );
    // Each saw every core while the three overlapped (the last to finish may be packed again).
    const all = parseCpuList(placement.allCpus).join(',');
    for (const { body } of overlapping) {
      const seen = (body.cpusSeen as string[]).map((list) => parseCpuList(list).join(','));
      assert.ok(seen.includes(all), `saw ${seen.join(' | ')}, never ${all}`);
    }
  });

  it('leaves no namespace or cgroup behind when the node stops', async (t) => {
    if (!ready(t)) return;
    const node = (await call('GET', '/v1/node')).body as { instances: Record<string, number> };
    assert.ok(node.instances.idle > 0);
    const tag = nodeTagFrom(path.resolve(stateDir));
    const listing = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
    assert.match(listing, new RegExp(`petri-${tag}-\\d+`), 'an instance namespace exists');
    await daemon!.stop('SIGTERM');
    assert.deepEqual(leftovers(new RegExp(`petri-${tag}-|petri/${tag}|petri-daemon-${tag}`)), []);
    // Inside the test namespace only loopback and the test's own veth remain: no bridge, veth or IFB.
    const links = execFileSync('ip', ['-n', daemon!.testbed!.name, '-o', 'link'], {
      encoding: 'utf8',
    })
      .split('\n')
      .filter(Boolean)
      .map((line) => line.split(': ')[1].split('@')[0]);
    assert.deepEqual(
      links.filter((name) => name !== 'lo' && !name.startsWith('tb')),
      [],
    );
    const qdiscs = execFileSync(
      'ip',
      ['netns', 'exec', daemon!.testbed!.name, 'tc', 'qdisc', 'show'],
      {
        encoding: 'utf8',
      },
    );
    assert.doesNotMatch(qdiscs, /^qdisc (tbf|ingress) /m); // kinds: the veth tb<hex> may read "tbf…"
    const rules = execFileSync('ip', ['netns', 'exec', daemon!.testbed!.name, 'iptables-save'], {
      encoding: 'utf8',
    });
    assert.doesNotMatch(rules, new RegExp(`PETRI-${tag.toUpperCase()}-`), 'no chain or jump left');
  });
});
