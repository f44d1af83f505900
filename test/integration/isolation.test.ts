import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { spawnDaemon, type Daemon } from '../../src/harness/index.ts';
import { parseCpuList } from '../../src/cgroup/index.ts';
import { nodeTagFrom } from '../../src/net/index.ts';
import { requireRoot } from '../helpers/root.ts';

/**
 * The isolation paths for real: a daemon (as root, in a namespace made for
 * this test) runs functions that try to break out of their limits.
 */
const MECHANISMS = [
  'bwrap',
  'netns',
  'shaping',
  'egress-nat',
  'cgroup-cpu',
  'cgroup-memory',
  'cgroup-pids',
];
const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'petri-iso-'));
const codeRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'petri-iso-code-'));
let daemon: Daemon | undefined;
let missing = 'not started';

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

export async function handler(event) {
  switch (event.probe) {
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
    headers: { 'content-type': 'application/json' },
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
  daemon = await spawnDaemon({ stateDir });
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
});

after(async () => {
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

  it('reaches outside the bridge only with egress', async (t) => {
    if (!ready(t)) return;
    // A listener on this side of the test namespace's veth: an address the test made.
    const server = net.createServer((socket) => socket.end());
    await new Promise<void>((resolve) => server.listen(0, daemon!.testbed!.outerAddress, resolve));
    const port = (server.address() as net.AddressInfo).port;
    try {
      const host = daemon!.testbed!.outerAddress;
      const blocked = await invoke('probe', { probe: 'connect', host, port });
      assert.notEqual(blocked.body.result, 'connected');
      const allowed = await invoke('egress', { probe: 'connect', host, port });
      assert.equal(allowed.body.result, 'connected');
    } finally {
      server.close();
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
    assert.doesNotMatch(qdiscs, /tbf|ingress/);
  });
});
