import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { spawnDaemon, type Daemon } from '../../src/harness/index.ts';
import { DEFAULT_CGROUP_ROOT } from '../../src/cgroup/index.ts';
import { chainNames, nodeTagFrom } from '../../src/net/index.ts';
import { leftoverMatchers } from '../../src/net/naming.ts';
import { requireRoot } from '../helpers/root.ts';

/**
 * A graceful stop for real: two daemons (as root, each in a namespace made
 * for this test) share the `petri` parent cgroups; SIGTERM to one must leave
 * nothing of it while the other keeps everything it uses.
 */

interface Node {
  daemon: Daemon;
  stateDir: string;
  tag: string;
}

interface PlacementView {
  active: boolean;
  reason?: string;
  current: string;
}

const codeDir = fs.mkdtempSync(path.join(os.tmpdir(), 'petri-stop-code-'));
fs.writeFileSync(
  path.join(codeDir, 'index.mjs'),
  'export async function handler(e) { return e; }\n',
);
const nodes: Node[] = [];

async function call(node: Node, method: 'GET' | 'PUT' | 'POST', url: string, body?: unknown) {
  const response = await request(node.daemon.url + url, {
    method,
    body: body === undefined ? undefined : JSON.stringify(body),
    headers: { ...node.daemon.headers, 'content-type': 'application/json' },
  });
  return {
    status: response.statusCode,
    body: (await response.body.json()) as Record<string, unknown>,
  };
}

async function deployAndInvoke(node: Node, times: number): Promise<void> {
  const deployed = await call(node, 'PUT', '/v1/functions/echo', {
    runtime: 'node',
    memoryMb: 128,
    source: { path: codeDir },
  });
  assert.ok(deployed.status < 300, JSON.stringify(deployed.body));
  // One at a time, so the placement policy packs the daemon onto its own cpuset.
  for (let i = 0; i < times; i++) {
    const reply = await call(node, 'POST', '/v1/functions/echo/invoke', { i });
    assert.deepEqual(reply.body, { i });
  }
}

/** Waits for the node to pack (a few 50 ms windows after calm invocations). */
async function packed(node: Node): Promise<PlacementView> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const view = (await call(node, 'GET', '/v1/node')).body.placement as PlacementView;
    if (!view.active || view.current === 'pack' || Date.now() > deadline) return view;
    await sleep(50);
  }
}

/** Every cgroup directory under the cgroup root (the node's own cgroup may be nested). */
function cgroupDirs(dir = DEFAULT_CGROUP_ROOT, depth = 0): string[] {
  if (depth > 8) return [];
  const entries = fs.readdirSync(dir, { withFileTypes: true });
  return entries
    .filter((entry) => entry.isDirectory())
    .flatMap((entry) => {
      const full = path.join(dir, entry.name);
      return [full, ...cgroupDirs(full, depth + 1)];
    });
}

/** The node's cgroups: its instances' (`petri/<tag>/…`) and the daemon's own cpuset. */
function nodeCgroups(tag: string): string[] {
  return cgroupDirs().filter(
    (dir) => dir.includes(`/petri/${tag}`) || path.basename(dir) === `petri-daemon-${tag}`,
  );
}

function cpusetOf(pid: number): string {
  const text = fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8');
  return /^\d+:cpuset:(.*)$/m.exec(text)?.[1] ?? '';
}

/** Processes that belong to the node: the daemon, its instances and helpers name its state dir, tag or namespaces. */
function nodeProcesses(node: Node): string[] {
  const marks = [node.stateDir, `petri-${node.tag}-`, `/petri/${node.tag}/`];
  const found: string[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    let cmdline: string;
    try {
      cmdline = fs.readFileSync(`/proc/${name}/cmdline`, 'utf8').replaceAll('\0', ' ');
    } catch {
      continue; // exited meanwhile
    }
    if (marks.some((mark) => cmdline.includes(mark))) found.push(`${name}: ${cmdline}`);
  }
  return found;
}

function inTestbed(node: Node, command: string[]): string {
  const testbed = node.daemon.testbed!.name;
  return execFileSync('ip', ['netns', 'exec', testbed, ...command], { encoding: 'utf8' });
}

/** Asserts that nothing the stopped node made is left in the kernel or its state dir. */
function assertNothingLeft(node: Node): void {
  const { tag, daemon } = node;
  assert.deepEqual(nodeCgroups(tag), [], 'cgroups of the node');
  assert.deepEqual(nodeProcesses(node), [], 'processes of the node');
  const matchers = leftoverMatchers(tag);
  const netns = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .split('\n')
    .map((line) => line.split(' ')[0]);
  assert.deepEqual(
    netns.filter((name) => matchers.netns.test(name)),
    [],
    'network namespaces',
  );
  // Inside its namespace only loopback and the test's own veth remain: no bridge, veth or IFB.
  const links = inTestbed(node, ['ip', '-o', 'link'])
    .split('\n')
    .filter(Boolean)
    .map((line) => line.split(': ')[1].split('@')[0]);
  assert.deepEqual(
    links.filter((name) => name !== 'lo' && !name.startsWith('tb')),
    [],
    'interfaces',
  );
  // Kinds, not names: the test's own veth is tb<hex>, which may read "tbf…".
  assert.doesNotMatch(inTestbed(node, ['tc', 'qdisc', 'show']), /^qdisc (tbf|ingress) /m);
  const chains = chainNames(tag);
  const rules = inTestbed(node, ['iptables-save']);
  assert.ok(!rules.includes(chains.forward) && !rules.includes(chains.nat), 'iptables chains');
  // The store is closed cleanly (no WAL or shared-memory file) and keeps the node's functions.
  assert.deepEqual(fs.readdirSync(node.stateDir).sort(), [
    'functions',
    'petri.db',
    'runtime',
    'sandbox',
  ]);
  assert.equal(daemon.child.exitCode, 0, daemon.output());
}

/**
 * A shared `petri` parent must be gone, unless a node outside this test uses
 * it: then it holds a child cgroup. An empty one may be another node's in
 * the middle of its own removal, so give that a moment.
 */
async function assertGoneOrInUse(t: TestContext, dir: string): Promise<void> {
  const deadline = Date.now() + 2000;
  for (;;) {
    if (!fs.existsSync(dir)) return;
    const inUse = fs.readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory());
    if (inUse.length > 0) {
      t.diagnostic(`${dir} stays: another node uses it (${inUse.map((e) => e.name).join(', ')})`);
      return;
    }
    if (Date.now() > deadline) assert.fail(`${dir} is empty and still there`);
    await sleep(50);
  }
}

/**
 * SIGTERM, and SIGKILL when the node is not gone in `withinMs`; then a start
 * on the same state dir removes what the crash left (so a failing test leaves
 * nothing either). True when the node stopped in time.
 */
async function stopWithin(node: Node, withinMs: number): Promise<boolean> {
  const stopped = node.daemon.stop('SIGTERM').then(() => true);
  const timer = new AbortController();
  const late = sleep(withinMs, false, { signal: timer.signal }).catch(() => false);
  const inTime = await Promise.race([stopped, late]);
  timer.abort(); // the timer would keep the test process alive after the last test
  if (!inTime) {
    await node.daemon.stop('SIGKILL');
    const recovery = await spawnDaemon({
      stateDir: node.stateDir,
      testbed: node.daemon.testbed,
      token: node.daemon.token,
    });
    await recovery.stop('SIGTERM');
  }
  return inTime;
}

before(async () => {
  if (process.getuid?.() !== 0) return;
  const stateDirs = [1, 2, 3].map(() => fs.mkdtempSync(path.join(os.tmpdir(), 'petri-stop-')));
  const started = await Promise.allSettled(stateDirs.map((stateDir) => spawnDaemon({ stateDir })));
  for (const [i, result] of started.entries()) {
    const stateDir = stateDirs[i];
    if (result.status === 'rejected') fs.rmSync(stateDir, { recursive: true, force: true });
    else nodes.push({ daemon: result.value, stateDir, tag: nodeTagFrom(path.resolve(stateDir)) });
  }
  // `after` stops the ones that did start.
  const failed = started.find((result) => result.status === 'rejected');
  if (failed) throw failed.reason;
});

after(async () => {
  for (const node of nodes) {
    await node.daemon.close();
    fs.rmSync(node.stateDir, { recursive: true, force: true });
  }
  fs.rmSync(codeDir, { recursive: true, force: true });
});

describe('stopping a real daemon', () => {
  it('leaves nothing of the node on SIGTERM and keeps what a running node uses', async (t) => {
    const [stopped, running] = nodes;
    if (!requireRoot(t, () => (stopped.daemon.testbed ? undefined : 'no test namespace'))) return;
    await deployAndInvoke(stopped, 3);
    await deployAndInvoke(running, 1);
    const placement = await packed(stopped);
    const notPacked = placement.active
      ? placement.current === 'pack'
        ? undefined
        : 'cpu placement never packed'
      : `cpu placement: ${placement.reason}`;
    if (!requireRoot(t, () => notPacked)) return;

    // What the stop must undo is there: the daemon in its own cpuset, instance cgroups of both.
    const daemonCpuset = `petri-daemon-${stopped.tag}`;
    assert.match(cpusetOf(stopped.daemon.child.pid!), new RegExp(`/${daemonCpuset}$`));
    const stoppedCgroups = nodeCgroups(stopped.tag);
    assert.ok(stoppedCgroups.some((dir) => path.basename(dir) === daemonCpuset));
    assert.ok(stoppedCgroups.some((dir) => dir.includes(`/petri/${stopped.tag}/`)));
    const runningCgroups = nodeCgroups(running.tag);
    assert.ok(runningCgroups.length > 0, 'the running node has instance cgroups');
    const sharedParents = [
      ...new Set(
        [...stoppedCgroups, ...runningCgroups]
          .filter((dir) => path.basename(path.dirname(dir)) === 'petri')
          .map((dir) => path.dirname(dir)),
      ),
    ];
    assert.ok(sharedParents.length > 0);

    assert.ok(await stopWithin(stopped, 20_000), 'stopped in time');
    assertNothingLeft(stopped);
    for (const dir of runningCgroups) assert.ok(fs.existsSync(dir), `${dir} of the running node`);
    const again = await call(running, 'POST', '/v1/functions/echo/invoke', { again: true });
    assert.deepEqual(again.body, { again: true }, 'the running node still works');

    assert.ok(await stopWithin(running, 20_000), 'stopped in time');
    assertNothingLeft(running);
    for (const dir of sharedParents) await assertGoneOrInUse(t, dir);
  });

  it('stops at once with invocations in flight on keep-alive connections, answering them', async (t) => {
    const node = nodes[2];
    if (!requireRoot(t, () => (node.daemon.testbed ? undefined : 'no test namespace'))) return;
    const names = ['a', 'b', 'c'];
    for (const name of names) {
      const deployed = await call(node, 'PUT', `/v1/functions/${name}`, {
        runtime: 'node',
        memoryMb: 128,
        source: { path: codeDir },
      });
      assert.ok(deployed.status < 300, JSON.stringify(deployed.body));
    }
    // Cold starts take a while: each request is in flight when the signal lands.
    const replies = names.map((name) =>
      call(node, 'POST', `/v1/functions/${name}/invoke`, { name }),
    );
    const deadline = Date.now() + 10_000;
    for (;;) {
      const { instances } = (await call(node, 'GET', '/v1/node')).body as {
        instances: { starting: number };
      };
      if (instances.starting === names.length) break;
      assert.ok(Date.now() < deadline, `never ${names.length} starting at once`);
      await sleep(5);
    }
    // Well under the 72 s keep-alive timeout the answered connections would otherwise hold the stop for.
    assert.ok(
      await stopWithin(node, 20_000),
      'the node stopped without waiting for idle connections',
    );
    for (const [i, reply] of (await Promise.all(replies)).entries()) {
      assert.deepEqual(reply.body, { name: names[i] });
    }
    assertNothingLeft(node);
  });
});
