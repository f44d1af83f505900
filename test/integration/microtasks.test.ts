import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { spawnDaemon, type Daemon } from '../../src/harness/index.ts';
import { nodeTagFrom } from '../../src/net/index.ts';
import { requireRoot } from '../helpers/root.ts';
import { tempDir } from '../helpers/tmp.ts';

/**
 * Microtask scheduling on a real daemon (as root, in its own namespace):
 * phases announced by node, exec and http functions are recorded, and under
 * the microtask scheduler each phase runs with its class's quota and cpuset,
 * read back by the function from its own cgroup while the phase runs.
 */
const EXAMPLES = path.resolve(import.meta.dirname, '../../examples');
const dir = tempDir('petri-microtasks-');
const MAP = { read: 'io', sort: 'cpu', write: 'io' };
let micro: Daemon | undefined;
let task: Daemon | undefined;

interface Reply {
  status: number;
  body: unknown;
}

async function call(daemon: Daemon, method: 'GET' | 'PUT' | 'POST', url: string, body?: unknown) {
  const response = await request(daemon.url + url, {
    method,
    body: body === undefined ? undefined : JSON.stringify(body),
    headers: { ...daemon.headers, 'content-type': 'application/json' },
  });
  const text = await response.body.text();
  // A string result of an invoke comes back as text/plain, everything else as JSON.
  const isText = String(response.headers['content-type'] ?? '').startsWith('text/plain');
  const parsed: unknown = isText ? text : text ? JSON.parse(text) : undefined;
  const reply: Reply = { status: response.statusCode, body: parsed };
  return { ...reply, id: response.headers['x-petri-invocation-id'] as string | undefined };
}

function write(name: string, files: Record<string, string>): string {
  const code = path.join(dir, name);
  fs.mkdirSync(code, { recursive: true });
  for (const [file, text] of Object.entries(files)) fs.writeFileSync(path.join(code, file), text);
  return code;
}

async function deploy(daemon: Daemon, name: string, code: string, spec: Record<string, unknown>) {
  const reply = await call(daemon, 'PUT', `/v1/functions/${name}`, {
    ...spec,
    source: { path: code },
  });
  assert.ok(reply.status === 201 || reply.status === 200, JSON.stringify(reply.body));
}

interface Phase {
  name: string;
  class: string;
  startMs: number;
  durationMs: number;
  waitedMs: number;
}

/** The invocation's record once the node has stored it. */
async function record(daemon: Daemon, id: string): Promise<{ microtasks?: Phase[] }> {
  for (let i = 0; i < 100; i++) {
    const reply = await call(daemon, 'GET', `/v1/invocations/${id}`);
    if (reply.status === 200 && (reply.body as { status: string }).status !== 'running')
      return reply.body as { microtasks?: Phase[] };
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`invocation ${id} never finished`);
}

/** Reads the instance's own CPU limits: quota from its cpu cgroup, cores from its affinity. */
const PROBE = `
import fs from 'node:fs';
export function limits() {
  const line = fs.readFileSync('/proc/self/cgroup', 'utf8').split('\\n').find((l) => /^\\d+:cpu(,[^:]*)?:/.test(l));
  const rel = line.split(':')[2];
  const quota = Number(fs.readFileSync('/sys/fs/cgroup/cpu' + rel + '/cpu.cfs_quota_us', 'utf8'));
  const cpus = fs.readFileSync('/proc/self/status', 'utf8').match(/Cpus_allowed_list:\\s*(\\S+)/)[1];
  return { quota, cpus };
}
`;

const PHASES_HANDLER = `
import { limits } from './probe.mjs';
export async function handler(event, context) {
  if (event.outside) return [limits()];
  const seen = [];
  await context.microtask('read', async () => seen.push(limits()));
  const sorted = await context.microtask('sort', () => { seen.push(limits()); return 42; });
  context.microtaskSync('write', () => seen.push('sync'));
  await context.microtask('unmapped');
  seen.push(limits());
  return { seen, sorted };
}
`;

/** Alternates classes; after each admission, the cores the kernel lets this thread run on. */
const ALTERNATE_HANDLER = `
import fs from 'node:fs';
export async function handler(event, context) {
  const seen = [];
  for (let i = 0; i < event.n; i++) {
    const name = i % 2 === 0 ? 'sort' : 'read';
    await context.microtask(name);
    seen.push(name + ' ' + fs.readFileSync('/proc/thread-self/status', 'utf8').match(/Cpus_allowed_list:\\s*(\\S+)/)[1]);
  }
  return seen;
}
`;

const HOLD_HANDLER = `
export async function handler(event, context) {
  await context.microtask('sort', () => new Promise((r) => setTimeout(r, event.ms)));
  return 'held';
}
`;

/** An http server that announces phases on fd 3 with the invocation id from the request. */
const HTTP_SERVER = `
import http from 'node:http';
import net from 'node:net';
const channel = new net.Socket({ fd: Number(process.env.PETRI_MICROTASK_FD), readable: true, writable: true });
let buffered = '';
const waiting = [];
channel.setEncoding('utf8');
channel.on('data', (chunk) => {
  buffered += chunk;
  let at;
  while ((at = buffered.indexOf('\\n')) >= 0) { waiting.shift()(buffered.slice(0, at)); buffered = buffered.slice(at + 1); }
});
const announce = (line) => new Promise((resolve) => { waiting.push(resolve); channel.write(line + '\\n'); });
http.createServer(async (req, res) => {
  const id = req.headers['x-petri-invocation-id'];
  const answers = [await announce(id + ' read'), await announce(id + ' sort'), await announce('nobody sort')];
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify(answers));
}).listen(Number(process.env.PORT), '127.0.0.1');
`;

function spawnWith(name: string, scheduler: Record<string, unknown>): Promise<Daemon> {
  const configFile = path.join(dir, `${name}.json`);
  fs.writeFileSync(configFile, JSON.stringify({ scheduler }));
  return spawnDaemon({
    stateDir: path.join(dir, `${name}-state`),
    configFile,
    allowSourcePaths: [os.tmpdir(), EXAMPLES],
  });
}

before(async () => {
  if (process.geteuid?.() !== 0) return;
  micro = await spawnWith('micro', { policy: 'microtask', allocation: 'static' });
  write('phases', { 'index.mjs': PHASES_HANDLER, 'probe.mjs': PROBE });
  write('hold', { 'index.mjs': HOLD_HANDLER });
  write('alternate', { 'index.mjs': ALTERNATE_HANDLER });
  write('http-phases', { 'server.mjs': HTTP_SERVER });
});

after(async () => {
  await micro?.close();
  await task?.close();
});

describe('the microtask scheduler on a real daemon', () => {
  it('runs each phase with its class quota and cores, read back from the cgroup', async (t) => {
    if (!requireRoot(t) || !micro) return;
    await deploy(micro, 'phases', path.join(dir, 'phases'), { runtime: 'node', microtasks: MAP });
    const reply = await call(micro, 'POST', '/v1/functions/phases/invoke', {});
    assert.equal(reply.status, 200, JSON.stringify(reply.body));
    const { seen, sorted } = reply.body as { seen: unknown[]; sorted: number };
    assert.equal(sorted, 42, 'microtask returns what its function returns');
    const outside = await call(micro, 'POST', '/v1/functions/phases/invoke', { outside: true });
    const [own] = outside.body as { quota: number; cpus: string }[];
    assert.deepEqual(seen, [
      { quota: 25_000, cpus: '0' }, // io: 0.25 vCPU of a 100 ms period, on core 0
      { quota: 100_000, cpus: '1' }, // cpu: 1 vCPU on core 1
      'sync',
      own, // an unmapped phase runs at the function's own share
    ]);
    assert.ok(own.quota > 0 && own.quota < 25_000, `own share of 128 MB: ${own.quota}`);
    assert.equal(own.cpus, '0-1');

    const { microtasks } = await record(micro, reply.id!);
    assert.deepEqual(
      microtasks?.map((m) => [m.name, m.class]),
      [
        ['read', 'io'],
        ['sort', 'cpu'],
        ['write', 'io'],
        ['unmapped', 'default'],
      ],
    );
    for (let i = 1; i < microtasks!.length; i++) {
      assert.ok(microtasks![i].startMs >= microtasks![i - 1].startMs, 'phases in order');
      assert.ok(microtasks![i - 1].durationMs >= 0);
    }
    const outsideRecord = await record(micro, outside.id!);
    assert.equal(outsideRecord.microtasks, undefined, 'no annotations, no phases');
  });

  it("never admits a phase before its class's cores are in place (200 class changes)", async (t) => {
    if (!requireRoot(t) || !micro) return;
    await deploy(micro, 'alternate', path.join(dir, 'alternate'), {
      runtime: 'node',
      microtasks: MAP,
    });
    const reply = await call(micro, 'POST', '/v1/functions/alternate/invoke', { n: 200 });
    assert.equal(reply.status, 200, JSON.stringify(reply.body));
    const seen = reply.body as string[];
    assert.equal(seen.length, 200);
    const early = seen.filter((line) => line !== 'sort 1' && line !== 'read 0');
    assert.deepEqual(early, [], 'every phase began on its class cores');
  });

  it('admits no more to a class than its cores hold: the second waits', async (t) => {
    if (!requireRoot(t) || !micro) return;
    await deploy(micro, 'hold', path.join(dir, 'hold'), { runtime: 'node', microtasks: MAP });
    // Two instances (concurrency 1), warmed first so both announce at once; the
    // cpu class (1 vCPU on one core) runs one at a time.
    const both = (ms: number) =>
      Promise.all([0, 1].map(() => call(micro!, 'POST', '/v1/functions/hold/invoke', { ms })));
    await both(0);
    const replies = await both(300);
    for (const reply of replies) assert.equal(reply.status, 200, JSON.stringify(reply.body));
    const runs = [];
    for (const reply of replies) {
      const rec = (await record(micro, reply.id!)) as {
        microtasks: Phase[];
        timings: { startedAt: number };
      };
      const phase = rec.microtasks[0];
      const runFrom = rec.timings.startedAt + phase.startMs + phase.waitedMs;
      runs.push({
        waited: phase.waitedMs,
        from: runFrom,
        to: runFrom + phase.durationMs - phase.waitedMs,
      });
    }
    runs.sort((x, y) => x.from - y.from);
    assert.ok(runs[0].to <= runs[1].from + 1, `runs overlap: ${JSON.stringify(runs)}`);
    assert.ok(runs[1].waited >= 200, `the second waited for the first: ${JSON.stringify(runs)}`);
    const node = await call(micro, 'GET', '/v1/node');
    const status = (
      node.body as { scheduler: { policy: string; classes: Record<string, unknown> } }
    ).scheduler;
    assert.equal(status.policy, 'microtask');
    assert.deepEqual(status.classes.cpu, { vcpu: 1, cores: [1], running: 0, queued: 0 });
  });

  it('exec functions announce phases on the fd channel (the Python helper)', async (t) => {
    if (!requireRoot(t) || !micro) return;
    const spec = JSON.parse(
      fs.readFileSync(path.join(EXAMPLES, 'microtask-python', 'petri.json'), 'utf8'),
    );
    await deploy(micro, 'microtask-python', path.join(EXAMPLES, 'microtask-python'), spec);
    const reply = await call(micro, 'POST', '/v1/functions/microtask-python/invoke', { n: 1000 });
    assert.equal(reply.status, 200, JSON.stringify(reply.body));
    assert.equal((reply.body as { n: number }).n, 1000);
    const { microtasks } = await record(micro, reply.id!);
    assert.deepEqual(
      microtasks?.map((m) => [m.name, m.class]),
      [
        ['read', 'io'],
        ['sort', 'cpu'],
        ['write', 'io'],
      ],
    );
  });

  it('http functions announce phases with their invocation id; a wrong id is refused', async (t) => {
    if (!requireRoot(t) || !micro) return;
    await deploy(micro, 'http-phases', path.join(dir, 'http-phases'), {
      runtime: 'http',
      command: ['node', 'server.mjs'],
      microtasks: MAP,
    });
    const reply = await call(micro, 'POST', '/v1/functions/http-phases/invoke', {});
    assert.equal(reply.status, 200, JSON.stringify(reply.body));
    const [read, sort, wrong] = reply.body as string[];
    assert.equal(read, `ok ${reply.id} read`);
    assert.equal(sort, `ok ${reply.id} sort`);
    assert.match(wrong, /^error no invocation nobody in flight/);
    const { microtasks } = await record(micro, reply.id!);
    assert.deepEqual(
      microtasks?.map((m) => m.class),
      ['io', 'cpu'],
    );
  });

  it('refuses specs naming a class the node lacks, or microtasks with concurrency > 1', async (t) => {
    if (!requireRoot(t) || !micro) return;
    const code = path.join(dir, 'hold');
    const unknown = await call(micro, 'PUT', '/v1/functions/bad-class', {
      runtime: 'node',
      microtasks: { sort: 'gpu' },
      source: { path: code },
    });
    assert.equal(unknown.status, 400);
    assert.match(
      JSON.stringify(unknown.body),
      /InvalidSpec.*microtasks\.sort names class \\"gpu\\"/,
    );
    const shared = await call(micro, 'PUT', '/v1/functions/bad-concurrency', {
      runtime: 'node',
      concurrency: 4,
      microtasks: { sort: 'cpu' },
      source: { path: code },
    });
    assert.equal(shared.status, 400);
    assert.match(JSON.stringify(shared.body), /needs concurrency 1/);
  });
});

describe('the task scheduler (the default) on a real daemon', () => {
  it('records phases but leaves the invocation at its own share throughout', async (t) => {
    if (!requireRoot(t)) return;
    task = await spawnWith('task', {});
    await deploy(task, 'phases', path.join(dir, 'phases'), { runtime: 'node', microtasks: MAP });
    const reply = await call(task, 'POST', '/v1/functions/phases/invoke', {});
    assert.equal(reply.status, 200, JSON.stringify(reply.body));
    const { seen } = reply.body as { seen: ({ quota: number } | string)[] };
    const quotas = new Set(
      seen.filter((s) => s !== 'sync').map((s) => (s as { quota: number }).quota),
    );
    assert.equal(quotas.size, 1, `one quota in every phase: ${JSON.stringify(seen)}`);
    const { microtasks } = await record(task, reply.id!);
    assert.deepEqual(
      microtasks?.map((m) => [m.name, m.class, m.waitedMs]),
      [
        ['read', 'io', 0],
        ['sort', 'cpu', 0],
        ['write', 'io', 0],
        ['unmapped', 'default', 0],
      ],
    );
  });
});

/** The cpuset cgroup dirs named `name` under the v1 cpuset hierarchy (none on v2 or without it). */
function cpusetDirs(name: string): string[] {
  const found: string[] = [];
  const walk = (dir: string, depth: number) => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (!e.isDirectory()) continue;
      const sub = path.join(dir, e.name);
      if (e.name === name) found.push(sub);
      else if (depth < 3) walk(sub, depth + 1);
    }
  };
  walk('/sys/fs/cgroup/cpuset', 0);
  return found;
}

describe('scheduler.daemonCore on a real daemon', () => {
  it('pins every daemon thread to the core, starts instances on every core, and unpins at stop', async (t) => {
    if (!requireRoot(t)) return;
    const pinned = await spawnWith('pinned', {
      policy: 'microtask',
      allocation: 'static',
      daemonCore: 1,
    });
    const name = `petri-daemon-${nodeTagFrom(path.join(dir, 'pinned-state'))}`;
    try {
      const node = await call(pinned, 'GET', '/v1/node');
      const placement = (node.body as { placement: { active: boolean; daemonCpu?: number } })
        .placement;
      // A skip would hide a node that cannot pin: this machine kind has the v1 cpuset controller.
      assert.ok(placement.active, 'the daemon joins a cpuset of its own (v1 cpuset controller)');
      assert.equal(placement.daemonCpu, 1);
      const [cpuset] = cpusetDirs(name);
      assert.ok(cpuset, `the daemon's cpuset ${name}`);
      assert.equal(fs.readFileSync(path.join(cpuset, 'cpuset.cpus'), 'utf8').trim(), '1');
      const tids = fs.readFileSync(path.join(cpuset, 'tasks'), 'utf8').trim().split('\n');
      assert.ok(tids.length > 1, 'every thread of the daemon');
      for (const tid of tids) {
        const status = fs.readFileSync(`/proc/${tid}/status`, 'utf8');
        assert.equal(/Cpus_allowed_list:\s*(\S+)/.exec(status)?.[1], '1', `thread ${tid}`);
      }
      await deploy(pinned, 'phases', path.join(dir, 'phases'), {
        runtime: 'node',
        microtasks: MAP,
      });
      // Forked by the pinned daemon, the instance still starts on every core.
      const outside = await call(pinned, 'POST', '/v1/functions/phases/invoke', { outside: true });
      assert.equal(outside.status, 200, JSON.stringify(outside.body));
      const [own] = outside.body as { quota: number; cpus: string }[];
      assert.equal(own.cpus, '0-1');
      const reply = await call(pinned, 'POST', '/v1/functions/phases/invoke', {});
      const { seen } = reply.body as { seen: unknown[] };
      assert.deepEqual(seen, [
        { quota: 25_000, cpus: '0' },
        { quota: 100_000, cpus: '1' },
        'sync',
        own,
      ]);
    } finally {
      await pinned.close();
    }
    assert.deepEqual(cpusetDirs(name), [], 'the daemon cpuset is removed at stop');
  });

  it("by default under dynamic allocation the daemon is pinned to the cpu class's core and follows it", async (t) => {
    if (!requireRoot(t)) return;
    const daemon = await spawnWith('follow', { policy: 'microtask', allocation: 'dynamic' });
    const name = `petri-daemon-${nodeTagFrom(path.join(dir, 'follow-state'))}`;
    /** The daemon cpuset's cores, and every daemon thread's allowed cores as the kernel has them. */
    const pinned = () => {
      const [cpuset] = cpusetDirs(name);
      assert.ok(cpuset, `the daemon's cpuset ${name}`);
      const tids = fs.readFileSync(path.join(cpuset, 'tasks'), 'utf8').trim().split('\n');
      const allowed = new Set(
        tids.map((tid) => {
          const status = fs.readFileSync(`/proc/${tid}/status`, 'utf8');
          return /Cpus_allowed_list:\s*(\S+)/.exec(status)?.[1];
        }),
      );
      return {
        cpus: fs.readFileSync(path.join(cpuset, 'cpuset.cpus'), 'utf8').trim(),
        allowed: [...allowed],
      };
    };
    const node = async () =>
      (await call(daemon, 'GET', '/v1/node')).body as {
        placement: {
          active: boolean;
          daemonCpu?: number;
          daemonFollows?: string;
          daemonRepins?: number;
        };
        scheduler: { classes: Record<string, { cores: number[] }>; moves: number };
      };
    try {
      const start = await node();
      assert.ok(
        start.placement.active,
        'the daemon joins a cpuset of its own (v1 cpuset controller)',
      );
      assert.equal(start.placement.daemonFollows, 'cpu');
      assert.deepEqual(pinned(), { cpus: '1', allowed: ['1'] });
      const code = write('shift', {
        'index.mjs': `export async function handler(event, context) {
          await context.microtask(event.phase, () => new Promise((r) => setTimeout(r, event.ms)));
          return event.phase;
        }`,
      });
      await deploy(daemon, 'shift', code, { runtime: 'node', maxInstances: 2, microtasks: MAP });
      // Warm two instances first, so the sorts below overlap.
      const hold = (phase: string, ms: number) =>
        call(daemon, 'POST', '/v1/functions/shift/invoke', { phase, ms });
      await Promise.all([hold('other', 200), hold('other', 200)]);
      // Two sorts: the second waits, idle io's core 0 goes to cpu; the daemon's core is still cpu's.
      const sorts = Promise.all([hold('sort', 800), hold('sort', 800)]);
      await new Promise((r) => setTimeout(r, 400));
      const during = await node();
      assert.deepEqual(during.scheduler.classes.cpu.cores, [0, 1]);
      assert.deepEqual(during.scheduler.classes.io.cores, []);
      assert.deepEqual(pinned(), { cpus: '1', allowed: ['1'] });
      await sorts;
      // A read with io coreless: cpu gives it its last core (1), and the daemon follows cpu to 0.
      assert.equal((await hold('read', 300)).status, 200);
      const after = await node();
      assert.deepEqual(after.scheduler.classes.io.cores, [1]);
      assert.deepEqual(after.scheduler.classes.cpu.cores, [0]);
      assert.equal(after.placement.daemonCpu, 0);
      assert.equal(after.placement.daemonRepins, 1);
      assert.deepEqual(pinned(), { cpus: '0', allowed: ['0'] });
    } finally {
      await daemon.close();
    }
    assert.deepEqual(cpusetDirs(name), [], 'the daemon cpuset is removed at stop');
  });
});
