/**
 * Prewarmed generic runtimes against a real daemon (root: bwrap, cgroups,
 * network, mounts): the node keeps ready sandboxes running the instance
 * host with no function (node config `prewarm`); a cold path of a matching
 * function binds one (`x-petri-start: prewarm`). A bound runtime sees only
 * its own function's code, read-only, runs under the function's limits, is
 * destroyed when its instance stops, and a reactive set grows after binds
 * and shrinks after its ttl. Stop and a crash leave no runtime, mount,
 * cgroup or folder behind.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { spawnDaemon, type Daemon } from '../../src/harness/index.ts';
import { requireRoot } from '../helpers/root.ts';

const codeRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'petri-prewarm-code-'));
const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'petri-prewarm-'));
const prewarmDir = path.join(stateDir, 'prewarms');
const configFile = path.join(stateDir, 'config.json');
let daemon: Daemon | undefined;
/** Network namespaces (`ip netns`) as this file found them, its daemons' not yet among them. */
const namespacesAtStart = new Set(netnsNames());
/** The first daemon, whose test namespace the restarted one shares. */
let first: Daemon | undefined;

/** What a bound runtime sees of itself: its folder, its limits, other code, its env. */
const LOOK = `
import fs from 'node:fs';
import path from 'node:path';
function own(controller, file) {
  const line = fs.readFileSync('/proc/self/cgroup', 'utf8').split('\\n')
    .find((l) => l.split(':')[1]?.split(',').includes(controller)) ?? '';
  const rel = line.split(':')[2] ?? '';
  const dir = fs.readdirSync('/sys/fs/cgroup').find((d) => d.split(',').includes(controller));
  return fs.readFileSync(path.join('/sys/fs/cgroup', dir ?? '', rel, file), 'utf8').trim();
}
function attempt(fn) {
  try { fn(); return 'ok'; } catch (err) { return err.code ?? String(err); }
}
export async function handler(event) {
  return {
    instance: process.env.PETRI_INSTANCE_ID,
    fn: process.env.PETRI_FUNCTION,
    greeting: process.env.GREETING ?? null,
    cwd: process.cwd(),
    files: fs.readdirSync(process.cwd()).sort(),
    uid: process.getuid(),
    memoryLimit: Number(own('memory', 'memory.limit_in_bytes')),
    cpuQuota: Number(own('cpu', 'cpu.cfs_quota_us')),
    cpuPeriod: Number(own('cpu', 'cpu.cfs_period_us')),
    writeCode: attempt(() => fs.writeFileSync(path.join(process.cwd(), 'x'), 'x')),
    otherCode: event.other ? fs.existsSync(event.other) : null,
    // The folder that holds every runtime's slot on the host, as this sandbox sees it.
    slots: fs.readdirSync(path.dirname(path.dirname(path.dirname(process.cwd())))),
  };
}
`;

interface SetView {
  memoryMb: number;
  mode: string;
  ready: number;
  starting: number;
  target: number;
  bound: number;
}
interface NodeView {
  memoryInUseMb: number;
  prewarm: { sets: SetView[]; memoryMb: number };
}

async function call(method: 'GET' | 'PUT' | 'POST' | 'DELETE', url: string, body?: unknown) {
  const response = await request(daemon!.url + url, {
    method,
    body: body === undefined ? undefined : JSON.stringify(body),
    headers: { ...daemon!.headers, 'content-type': 'application/json' },
  });
  const text = await response.body.text();
  return { status: response.statusCode, headers: response.headers, json: JSON.parse(text) };
}

async function deploy(name: string, extra: object = {}): Promise<void> {
  const dir = path.join(codeRoot, name);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'index.mjs'), LOOK);
  fs.writeFileSync(path.join(dir, `only-${name}.txt`), name);
  const reply = await call('PUT', `/v1/functions/${name}`, {
    runtime: 'node',
    memoryMb: 128,
    source: { path: dir },
    ...extra,
  });
  assert.ok(reply.status < 300, JSON.stringify(reply.json));
}

async function invoke(name: string, event: unknown = {}) {
  const reply = await call('POST', `/v1/functions/${name}/invoke`, event);
  assert.equal(reply.status, 200, JSON.stringify(reply.json));
  const id = String(reply.headers['x-petri-invocation-id']);
  return { start: String(reply.headers['x-petri-start']), body: reply.json, id };
}

async function nodeView(): Promise<NodeView> {
  return (await call('GET', '/v1/node')).json as NodeView;
}

/** Polls GET /v1/node until the 128 MB set satisfies `ok`. */
async function setUntil(
  ok: (set: SetView) => boolean,
  what: string,
  ms = 30_000,
): Promise<SetView> {
  const deadline = Date.now() + ms;
  for (;;) {
    const set = (await nodeView()).prewarm.sets.find((s) => s.memoryMb === 128)!;
    if (ok(set)) return set;
    if (Date.now() >= deadline) console.error(daemon!.output().slice(-4000));
    assert.ok(Date.now() < deadline, `${what} within ${ms} ms (now ${JSON.stringify(set)})`);
    await sleep(100);
  }
}

/** Host pids of the daemon's unbound runtimes' hosts (bwrap's processes, run as root, are not counted). */
function prewarmPids(): number[] {
  const pids: number[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const environ = fs.readFileSync(`/proc/${name}/environ`, 'utf8').split('\0');
      const uid = /^Uid:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${name}/status`, 'utf8'))?.[1];
      const inSlot = fs.readlinkSync(`/proc/${name}/cwd`).startsWith(prewarmDir);
      if (environ.includes('PETRI_RUNTIME=prewarm') && inSlot && uid !== '0')
        pids.push(Number(name));
    } catch {
      // Gone, or not ours to read.
    }
  }
  return pids;
}

function netnsNames(): string[] {
  return fs.existsSync('/run/netns') ? fs.readdirSync('/run/netns') : [];
}

function mountsUnder(dir: string): string[] {
  return fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((point): point is string => point !== undefined && point.startsWith(dir));
}

/** The `petri` cgroup folders under `dir` (the node's own cgroup may be nested a few levels down). */
function petriDirs(dir: string, depth = 0): string[] {
  const found: string[] = [];
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return found;
  }
  for (const entry of entries) {
    if (!entry.isDirectory()) continue;
    const child = path.join(dir, entry.name);
    if (entry.name === 'petri') found.push(child);
    else if (depth < 4) found.push(...petriDirs(child, depth + 1));
  }
  return found;
}

/** cgroup folders of prewarmed runtimes (any node's), under any controller. */
function prewarmCgroups(): string[] {
  const found: string[] = [];
  for (const petri of petriDirs('/sys/fs/cgroup')) {
    for (const tag of fs.readdirSync(petri)) {
      const dir = path.join(petri, tag);
      if (!fs.statSync(dir).isDirectory()) continue;
      for (const id of fs.readdirSync(dir))
        if (id.startsWith('prewarm-')) found.push(path.join(dir, id));
    }
  }
  return found;
}

function writeConfig(): void {
  fs.writeFileSync(
    configFile,
    JSON.stringify({
      // Idle instances stop at once: each invocation needs a new instance.
      keepAliveMs: 0,
      startPaths: { pause: false },
      memoryBudgetMb: 2048,
      prewarm: [
        { runtime: 'node', memoryMb: 128, count: 1, reactive: { min: 1, max: 2, ttlMs: 3000 } },
      ],
    }),
  );
}

after(async () => {
  await daemon?.close().catch(() => undefined);
  if (first !== daemon) await first?.close().catch(() => undefined);
  for (const dir of [stateDir, codeRoot]) fs.rmSync(dir, { recursive: true, force: true });
});

describe('prewarmed runtimes on a real node', () => {
  before(async () => {
    if (process.geteuid?.() !== 0) return;
    writeConfig();
    daemon = await spawnDaemon({ stateDir, configFile });
    first = daemon;
  });

  it('keeps a ready runtime with no function, counted in the memory budget, its code folder empty', async (t) => {
    if (!requireRoot(t)) return;
    const set = await setUntil((s) => s.ready === 1, 'one runtime ready');
    assert.equal(set.mode, 'reactive');
    const view = await nodeView();
    assert.equal(view.prewarm.memoryMb, 128);
    assert.ok(view.memoryInUseMb >= 128, `memory in use ${view.memoryInUseMb} counts the runtime`);
    const metrics = await request(daemon!.url + '/metrics', { headers: daemon!.headers });
    assert.match(
      await metrics.body.text(),
      /petri_prewarm_runtimes\{memory_mb="128",egress="false",state="ready"\} 1/,
    );
    const pids = prewarmPids();
    assert.equal(pids.length, 1, `one unbound host (${pids})`);
    const slot = fs.readdirSync(prewarmDir);
    assert.ok(
      prewarmCgroups().some((dir) => dir.endsWith('/' + slot[0])),
      'its cgroups are found',
    );
    // What the runtime itself sees where a function's code will appear: nothing.
    const cwd = fs.readlinkSync(`/proc/${pids[0]}/cwd`);
    assert.deepEqual(fs.readdirSync(`/proc/${pids[0]}/root${cwd}`), []);
  });

  it('binds it on a cold path: start path prewarm, the function env, its own code read-only, its limits', async (t) => {
    if (!requireRoot(t)) return;
    await deploy('alpha', { env: { GREETING: 'hi' } });
    await deploy('beta', { memoryMb: 256 });
    const otherCode = path.join(stateDir, 'functions', 'beta');
    const { start, body, id } = await invoke('alpha', { other: otherCode });
    assert.equal(start, 'prewarm');
    const record = await call('GET', `/v1/invocations/${id}`);
    assert.equal(record.json.startPath, 'prewarm');
    assert.equal(body.fn, 'alpha');
    assert.match(body.instance, /^prewarm-128-/);
    assert.equal(body.greeting, 'hi');
    assert.ok(body.files.includes('only-alpha.txt'), JSON.stringify(body.files));
    assert.ok(!body.files.includes('only-beta.txt'));
    assert.equal(body.writeCode, 'EROFS');
    assert.equal(body.otherCode, false);
    // The folder around its slot shows its own slot only (the sandbox binds nothing else there).
    assert.deepEqual(body.slots, [body.instance]);
    assert.ok(body.uid >= 1000 && body.uid !== 0);
    assert.equal(body.memoryLimit, 128 * 1024 * 1024);
    // The start boost is over: the function's own share (0.072 vCPU per 128 MB by default).
    assert.ok(body.cpuQuota > 0 && body.cpuQuota / body.cpuPeriod < 0.2, JSON.stringify(body));
    // A 256 MB function has no matching runtime: cold.
    assert.equal((await invoke('beta')).start, 'cold');
  });

  it('destroys a bound runtime when its instance stops and binds a new one next time; a reactive set grows', async (t) => {
    if (!requireRoot(t)) return;
    await setUntil((s) => s.ready >= 1, 'a runtime ready again');
    const { start: firstStart, body: firstBody } = await invoke('alpha');
    assert.equal(firstStart, 'prewarm');
    const firstSlot = path.join(prewarmDir, firstBody.instance);
    // keepAliveMs 0: the instance stops after its invocation, and its slot goes with it.
    const deadline = Date.now() + 15_000;
    while (fs.existsSync(firstSlot) && Date.now() < deadline) await sleep(50);
    assert.equal(fs.existsSync(firstSlot), false, `${firstSlot} removed`);
    const grown = await setUntil((s) => s.ready === 2, 'the reactive set refilled to its max');
    assert.equal(grown.target, 2);
    assert.ok(grown.bound >= 2);
    const { start, body } = await invoke('alpha');
    assert.equal(start, 'prewarm');
    assert.notEqual(body.instance, firstBody.instance);
  });

  it('a runtime bound to beta sees beta only, never alpha, and shrinks back to min after its ttl', async (t) => {
    if (!requireRoot(t)) return;
    await call('PUT', '/v1/functions/beta', {
      runtime: 'node',
      memoryMb: 128,
      source: { path: path.join(codeRoot, 'beta') },
    });
    await setUntil((s) => s.ready >= 1, 'a runtime ready');
    const { start, body } = await invoke('beta', {
      other: path.join(stateDir, 'functions', 'alpha'),
    });
    assert.equal(start, 'prewarm');
    assert.equal(body.fn, 'beta');
    assert.ok(body.files.includes('only-beta.txt'));
    assert.ok(!body.files.includes('only-alpha.txt'));
    assert.equal(body.otherCode, false);
    await setUntil((s) => s.ready === 2, 'refilled');
    // ttlMs 3000: unbound for that long, runtimes stop down to min.
    const shrunk = await setUntil((s) => s.ready === 1 && s.target === 1, 'back to min', 20_000);
    assert.equal(shrunk.starting, 0);
  });

  it('a crash (SIGKILL) leaves nothing that the next start does not remove', async (t) => {
    if (!requireRoot(t)) return;
    await setUntil((s) => s.ready >= 1, 'ready before the crash');
    const before = fs.readdirSync(prewarmDir);
    await daemon!.stop('SIGKILL');
    daemon = await spawnDaemon({
      stateDir,
      configFile,
      testbed: first!.testbed,
      token: first!.token,
    });
    await setUntil((s) => s.ready === 1, 'ready after the restart');
    const now = fs.readdirSync(prewarmDir);
    for (const id of before) assert.ok(!now.includes(id), `${id} of the crashed run removed`);
    for (const mount of mountsUnder(prewarmDir)) {
      assert.ok(
        now.some((id) => mount.startsWith(path.join(prewarmDir, id))),
        `${mount} is the new run's`,
      );
    }
    for (const cgroup of prewarmCgroups()) {
      assert.ok(!before.some((id) => cgroup.endsWith(id)), `${cgroup} of the crashed run removed`);
    }
    assert.equal(prewarmPids().length, 1);
  });

  it('a graceful stop stops every runtime and removes its mounts, cgroups and folders', async (t) => {
    if (!requireRoot(t)) return;
    // A bind in this daemon, so its stop also ends the mount shell binds use.
    await setUntil((s) => s.ready >= 1, 'ready before the bind');
    assert.equal((await invoke('alpha')).start, 'prewarm');
    const ids = fs.readdirSync(prewarmDir);
    assert.ok(ids.length >= 1);
    await daemon!.stop('SIGTERM');
    // The whole clean-up ran: no instance's or runtime's namespace is left.
    const left = netnsNames().filter(
      (n) => !namespacesAtStart.has(n) && !n.startsWith('petri-tb-'),
    );
    assert.deepEqual(left, []);
    assert.deepEqual(mountsUnder(prewarmDir), []);
    assert.deepEqual(fs.existsSync(prewarmDir) ? fs.readdirSync(prewarmDir) : [], []);
    assert.deepEqual(prewarmPids(), []);
    for (const cgroup of prewarmCgroups())
      assert.ok(!ids.some((id) => cgroup.endsWith(id)), cgroup);
  });
});
