import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, describe, test } from 'node:test';
import {
  cgroupLayer,
  detectCgroups,
  joinCgroupCommand,
  type Cgroup,
  type CgroupLimits,
  type Controller,
  parseCpuList,
} from '../../src/cgroup/index.ts';
import type { SandboxSpec } from '../../src/sandbox/types.ts';
import { requireRoot } from '../helpers/root.ts';

const MB = 1024 * 1024;
const TAG = `test-${process.pid}`;
const system = detectCgroups();

/** Why one of the controllers is unusable, or undefined when all are there. */
const missing =
  (...controllers: Controller[]) =>
  () => {
    const status = system.controllers().find((c) => controllers.includes(c.name) && !c.usable);
    return status && `cgroup ${status.name}: ${status.reason}`;
  };

const children: ChildProcess[] = [];
function run(cg: Cgroup, command: string[]): ChildProcess {
  const [file, ...args] = joinCgroupCommand(cg.procsFiles(), command);
  const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  return child;
}

let counter = 0;
async function make(limits: Partial<CgroupLimits> = {}): Promise<Cgroup> {
  return system.create(`petri/${TAG}/c${++counter}`, {
    cpu: 1,
    memoryBytes: 256 * MB,
    pidsMax: 64,
    ...limits,
  });
}

async function gone(cg: Cgroup): Promise<boolean> {
  const checks = await Promise.all(
    cg.procsFiles().map((f) =>
      fs.access(path.dirname(f)).then(
        () => false,
        () => true,
      ),
    ),
  );
  return checks.every(Boolean);
}

describe('real cgroups (root)', () => {
  after(async () => {
    for (const child of children) child.kill('SIGKILL');
    // Removes every cgroup of this run and `petri` itself when no other node uses it.
    await system.cleanup(`petri/${TAG}`);
  });

  test('the join wrap puts the process into every hierarchy before it runs', async (t) => {
    if (!requireRoot(t, missing('cpu', 'cpuacct', 'memory', 'pids'))) return;
    const cg = await make();
    const child = run(cg, ['/bin/cat', '/proc/self/cgroup']);
    let out = '';
    child.stdout?.on('data', (chunk: Buffer) => (out += chunk));
    await once(child, 'exit');
    for (const c of ['cpu', 'memory', 'pids']) {
      assert.match(
        out,
        new RegExp(`^\\d+:[^:]*\\b${c}\\b[^:]*:.*/petri/${TAG}/c${counter}$`, 'm'),
        c,
      );
    }
    await cg.destroy();
    assert.ok(await gone(cg));
  });

  test('a CPU-bound process gets its quota (0.2 vCPU) within ±20 %', async (t) => {
    if (!requireRoot(t, missing('cpu', 'cpuacct'))) return;
    const cg = await make({ cpu: 0.2 });
    run(cg, [process.execPath, '-e', 'for(;;){}']);
    await sleep(300);
    const start = { cpu: (await cg.usage()).cpuMs ?? 0, wall: performance.now() };
    await sleep(1500);
    const cpuMs = ((await cg.usage()).cpuMs ?? 0) - start.cpu;
    const share = cpuMs / (performance.now() - start.wall);
    t.diagnostic(`measured CPU share ${share.toFixed(3)} for quota 0.2`);
    assert.ok(share > 0.16 && share < 0.24, `share ${share}`);
    await cg.destroy();
    assert.ok(await gone(cg));
  });

  test('allocating past the memory limit is an OOM kill (SIGKILL, oomKilled)', async (t) => {
    if (!requireRoot(t, missing('memory'))) return;
    const cg = await make({ memoryBytes: 96 * MB });
    assert.equal(await cg.oomKilled(), false);
    const alloc =
      'const a=[];for(let i=0;i<1024;i++)a.push(Buffer.alloc(1<<20,1));console.log("survived")';
    const child = run(cg, [process.execPath, '-e', alloc]);
    const [code, signal] = await once(child, 'exit');
    assert.equal(signal, 'SIGKILL', `exit code ${code}`);
    assert.equal(await cg.oomKilled(), true);
    const peak = (await cg.usage()).peakMemoryBytes ?? 0;
    assert.ok(peak > 64 * MB && peak <= 96 * MB, `peak ${peak}`);
    await cg.destroy();
    assert.ok(await gone(cg));
  });

  test('the pids limit stops a fork burst', async (t) => {
    if (!requireRoot(t, missing('pids'))) return;
    const cg = await make({ pidsMax: 8 });
    const burst = 'i=0; while [ $i -lt 30 ]; do sleep 5 & i=$((i+1)); done; wait';
    const child = run(cg, ['/bin/sh', '-c', burst]);
    let err = '';
    child.stderr?.on('data', (chunk: Buffer) => (err += chunk));
    await once(child, 'exit');
    const pids = await cg.pids();
    assert.ok(pids.length <= 8, `${pids.length} processes`);
    assert.match(err, /fork/i);
    await cg.destroy();
    assert.ok(await gone(cg));
  });

  test('destroy kills what is left (fork chains included) and removes the directories', async (t) => {
    if (!requireRoot(t, missing('cpu', 'memory', 'pids'))) return;
    const cg = await make();
    run(cg, ['/bin/sh', '-c', 'sleep 30 & sleep 30 & (sleep 30 &) ; wait']);
    await sleep(100);
    assert.ok((await cg.pids()).length >= 3);
    await cg.destroy();
    assert.ok(await gone(cg));
    await cg.destroy();
  });

  test('the layer cleans up after itself on close', async (t) => {
    if (!requireRoot(t, missing('cpu', 'memory', 'pids'))) return;
    const tag = `${TAG}-layer`;
    const isolation = {
      cgroups: 'auto',
      bwrap: 'auto',
      network: 'auto',
      shaping: 'auto',
      fastCgroupMoves: 'auto',
    } as const;
    const layer = cgroupLayer({ isolation }, tag, { system });
    assert.ok(layer.mechanisms().every((m) => m.active));
    const spec = {
      instanceId: 'i1',
      resources: { cpu: 0.5, memoryMb: 128, pidsMax: 32 },
    } as SandboxSpec;
    const instance = await layer.prepare(spec);
    const [file, ...args] = instance.wrap(['/bin/sleep', '30']);
    children.push(spawn(file, args, { stdio: 'ignore' }));
    await sleep(50);
    await layer.close();
    assert.deepEqual(await findTagDirs(tag), []);
  });

  test('nodes sharing a parent keep making cgroups while each removes it when empty', async (t) => {
    if (!requireRoot(t, missing('cpu', 'cpuacct', 'cpuset', 'memory', 'pids'))) return;
    // A parent of this test's own stands in for `petri`, which live nodes may be using.
    const top = `petri-${TAG}-shared`;
    const failures: string[] = [];
    const node = async (tag: string): Promise<void> => {
      for (let i = 0; i < 100; i++) {
        try {
          const cg = await system.create(`${top}/${tag}/i${i}`, {
            cpu: 1,
            cpus: '0',
            memoryBytes: 64 * MB,
            pidsMax: 8,
          });
          await cg.destroy();
        } catch (error) {
          failures.push((error as Error).message);
        }
        await system.cleanup(`${top}/${tag}`);
      }
    };
    await Promise.all(['a', 'b', 'c'].map(node));
    assert.deepEqual(failures, []);
    assert.deepEqual(await findTagDirs(top), []);
  });

  test('a daemon cpuset pins every thread of the process and lets go on release', async (t) => {
    if (!requireRoot(t, missing('cpuset'))) return;
    const name = `petri-daemon-${TAG}`;
    const cpuset = await system.daemonCpuset(name);
    assert.ok(cpuset, 'cgroup v1 cpuset can hold the daemon');
    const allowed = async (): Promise<string[]> => {
      const tasks = await fs.readdir('/proc/self/task');
      const lists = await Promise.all(
        tasks.map(async (task) => {
          const status = await fs.readFile(`/proc/self/task/${task}/status`, 'utf8');
          return /^Cpus_allowed_list:\s*(\S+)/m.exec(status)?.[1] ?? '';
        }),
      );
      return [...new Set(lists)];
    };
    try {
      const last = String(cpuset.allCpus.at(-1));
      await cpuset.setCpus(last);
      assert.deepEqual(await allowed(), [last]);
      await cpuset.setCpus(cpuset.allCpus.join(','));
      assert.deepEqual(parseCpuList((await allowed()).join(',')), cpuset.allCpus);
    } finally {
      await cpuset.release();
    }
    assert.deepEqual(await findTagDirs(name), []);
    assert.doesNotMatch(await fs.readFile('/proc/self/cgroup', 'utf8'), /petri-daemon/);
  });

  test('a daemon cpuset is removed on release even while a child forked inside still runs', async (t) => {
    if (!requireRoot(t, missing('cpuset'))) return;
    const name = `petri-daemon-${TAG}-child`;
    const cpusetLine = async (pid: number | 'self'): Promise<string | undefined> =>
      /^\d+:cpuset:(.*)$/m.exec(await fs.readFile(`/proc/${pid}/cgroup`, 'utf8'))?.[1];
    const home = await cpusetLine('self');
    const cpuset = await system.daemonCpuset(name);
    assert.ok(cpuset, 'cgroup v1 cpuset can hold the daemon');
    // Like an instance start or an `ip` run in flight when the node stops.
    const child = spawn('/bin/sleep', ['30'], { stdio: 'ignore' });
    const exited = once(child, 'exit');
    let released = false;
    try {
      await once(child, 'spawn');
      assert.match((await cpusetLine(child.pid!)) ?? '', new RegExp(`/${name}$`));
      await cpuset.release();
      released = true;
      assert.deepEqual(await findTagDirs(name), []);
      assert.equal(await cpusetLine('self'), home);
      assert.equal(await cpusetLine(child.pid!), home, 'the child moved back with the daemon');
    } finally {
      child.kill('SIGKILL');
      await exited;
      // Leave no cgroup behind even when the release under test failed.
      if (!released) await cpuset.release().catch(() => undefined);
    }
  });

  test('stale daemon cpusets of crashed nodes are removed, one holding a live daemon is kept', async (t) => {
    if (!requireRoot(t, missing('cpuset'))) return;
    const live = `petri-daemon-${TAG}-live`;
    const stale = `petri-daemon-${TAG}-stale`;
    const cpuset = await system.daemonCpuset(live);
    assert.ok(cpuset, 'cgroup v1 cpuset can hold the daemon');
    try {
      const [liveDir] = await findTagDirs(live);
      // What a daemon killed while pinned leaves: its cpuset, empty.
      await fs.mkdir(path.join(path.dirname(liveDir), stale));
      const removed = await system.removeStaleDaemonCpusets(0);
      assert.ok(removed.includes(stale), `removed ${removed.join(', ')}`);
      assert.ok(!removed.includes(live), 'the cpuset this process is in stays');
      assert.deepEqual(await findTagDirs(stale), []);
      assert.equal((await findTagDirs(live)).length, 1);
    } finally {
      await cpuset.release();
      for (const dir of await findTagDirs(stale)) await fs.rmdir(dir).catch(() => undefined);
    }
  });
});

/** Directories named after `tag` anywhere in the cgroup tree (the node's own cgroup may be nested). */
async function findTagDirs(tag: string): Promise<string[]> {
  const found: string[] = [];
  async function walk(dir: string, depth: number): Promise<void> {
    if (depth > 6) return;
    const entries = await fs.readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const e of entries) {
      if (!e.isDirectory()) continue;
      const full = path.join(dir, e.name);
      if (e.name === tag) found.push(full);
      else await walk(full, depth + 1);
    }
  }
  await walk(system.root, 0);
  return found;
}
