import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { cgroupLayer, detectCgroups, type CgroupSystem } from '../../src/cgroup/index.ts';
import type { SandboxSpec } from '../../src/sandbox/types.ts';
import { freezeV2 } from '../../src/cgroup/freezer.ts';
import { exists, fakeRoot, files, read, removeFakeDir } from './fake.ts';

const MB = 1024 * 1024;
const limits128 = { cpu: 0.072, memoryBytes: 128 * MB, pidsMax: 256 };

/** The control files the kernel would put into a new v2 cgroup. */
const LEAF_FILES = {
  'cgroup.procs': '',
  'cgroup.kill': '',
  'cpu.max': 'max 100000\n',
  'cpu.stat': 'usage_usec 0\nuser_usec 0\nsystem_usec 0\n',
  'memory.max': 'max\n',
  'memory.swap.max': 'max\n',
  'memory.oom.group': '0\n',
  'memory.peak': '0\n',
  'memory.events': 'low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n',
  'pids.max': 'max\n',
  'cgroup.freeze': '0\n',
  'cgroup.events': 'populated 0\nfrozen 0\n',
};

async function v2Tree(root: string, controllers = 'cpuset cpu io memory pids'): Promise<void> {
  await files(root, {
    'cgroup.controllers': `${controllers}\n`,
    'cgroup.subtree_control': '',
    'cgroup.procs': '1\n',
  });
}

describe('cgroup v2 on a fake tree', () => {
  let root: string;
  let system: CgroupSystem;
  const leaf = () => path.join(root, 'petri/tag/i1');

  beforeEach(async () => {
    root = await fakeRoot();
    await v2Tree(root);
    await files(leaf(), LEAF_FILES);
    system = detectCgroups(root, { removeDir: removeFakeDir, killTimeoutMs: 1000 });
  });
  afterEach(() => fs.rm(root, { recursive: true, force: true }));

  test('detects v2 and the usable controllers', () => {
    assert.equal(system.version, 'v2');
    for (const c of ['cpu', 'cpuacct', 'cpuset', 'memory', 'pids'] as const) {
      assert.equal(system.usable(c), true, c);
    }
  });

  test('freezes through cgroup.freeze and waits until cgroup.events says frozen', async () => {
    const cg = await system.create('petri/tag/i1', limits128);
    assert.equal(cg.canFreeze, true);
    const events = path.join(leaf(), 'cgroup.events');
    const freezing = cg.freeze();
    let done = false;
    void freezing.then(() => (done = true));
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(await read(path.join(leaf(), 'cgroup.freeze')), '1');
    assert.equal(done, false, 'the kernel has not said frozen yet');
    await fs.writeFile(events, 'populated 1\nfrozen 1\n');
    await freezing;
    await cg.thaw();
    assert.equal(await read(path.join(leaf(), 'cgroup.freeze')), '0');
    assert.deepEqual(system.freezeControl?.('petri/tag'), {
      dir: path.join(root, 'petri/tag'),
      file: 'cgroup.freeze',
      thawed: '0',
    });
  });

  test('a freeze the kernel never completes is undone and fails', async () => {
    await system.create('petri/tag/i1', limits128);
    await assert.rejects(freezeV2(leaf(), 30), /did not freeze within 30 ms/);
    assert.equal(await read(path.join(leaf(), 'cgroup.freeze')), '0');
  });

  test('create writes cpu.max, memory.max, memory.swap.max=0, pids.max and enables controllers', async () => {
    const cg = await system.create('petri/tag/i1', limits128);
    assert.equal(await read(path.join(leaf(), 'cpu.max')), '7200 100000');
    assert.equal(await read(path.join(leaf(), 'memory.max')), String(128 * MB));
    assert.equal(await read(path.join(leaf(), 'memory.swap.max')), '0');
    assert.equal(await read(path.join(leaf(), 'memory.oom.group')), '1');
    assert.equal(await read(path.join(leaf(), 'pids.max')), '256');
    for (const dir of [root, path.join(root, 'petri'), path.join(root, 'petri/tag')]) {
      assert.equal(await read(path.join(dir, 'cgroup.subtree_control')), '+cpu +memory +pids');
    }
    assert.deepEqual(cg.procsFiles(), [path.join(leaf(), 'cgroup.procs')]);
  });

  test("cpuUsageMs reads the node prefix's cpu.stat, which holds its ended children too", async () => {
    await files(path.join(root, 'petri/tag'), {
      'cpu.stat': 'usage_usec 2500000\nuser_usec 2000000\n',
    });
    assert.equal(await system.cpuUsageMs?.('petri/tag'), 2500);
    assert.equal(await system.cpuUsageMs?.('petri/other'), undefined);
    const isolation = {
      cgroups: 'auto',
      bwrap: 'off',
      network: 'off',
      shaping: 'off',
      fastCgroupMoves: 'off',
    } as const;
    const layer = cgroupLayer({ isolation }, 'tag', { system });
    assert.equal(await layer.instancesCpuMs?.(), 2500);
  });

  test('memory.swap.max is left alone where the kernel has no swap accounting', async () => {
    await fs.rm(path.join(leaf(), 'memory.swap.max'));
    await system.create('petri/tag/i1', limits128);
    assert.equal(await exists(path.join(leaf(), 'memory.swap.max')), false);
  });

  test('setCpu rewrites cpu.max: a quota, the 1 ms floor, unlimited', async () => {
    const cg = await system.create('petri/tag/i1', limits128);
    await cg.setCpu({ cpu: 2 });
    assert.equal(await read(path.join(leaf(), 'cpu.max')), '200000 100000');
    await cg.setCpu({ cpu: 0.001 });
    assert.equal(await read(path.join(leaf(), 'cpu.max')), '1000 100000');
    await cg.setCpu({ cpu: 0 });
    assert.equal(await read(path.join(leaf(), 'cpu.max')), 'max 100000');
    // The same setting again writes nothing (a phase change within one quota).
    await fs.writeFile(path.join(leaf(), 'cpu.max'), 'mark');
    await cg.setCpu({ cpu: 0 });
    assert.equal(await read(path.join(leaf(), 'cpu.max')), 'mark');
  });

  test('usage reads cpu.stat usage_usec and memory.peak', async () => {
    const cg = await system.create('petri/tag/i1', limits128);
    await files(leaf(), {
      'cpu.stat': 'usage_usec 1500\nuser_usec 1000\n',
      'memory.peak': '4096\n',
    });
    assert.deepEqual(await cg.usage(), { cpuMs: 1.5, peakMemoryBytes: 4096 });
  });

  test('resetPeak writes through a kept handle and later reads use it', async () => {
    const cg = await system.create('petri/tag/i1', limits128);
    assert.equal(await cg.resetPeak(), true);
    assert.match(await read(path.join(leaf(), 'memory.peak')), /^reset/);
    await fs.writeFile(path.join(leaf(), 'memory.peak'), '8192\n');
    assert.equal((await cg.usage()).peakMemoryBytes, 8192);
    await cg.destroy();
  });

  test('oomKilled follows memory.events oom_kill', async () => {
    const cg = await system.create('petri/tag/i1', limits128);
    assert.equal(await cg.oomKilled(), false);
    await files(leaf(), { 'memory.events': 'oom 1\noom_kill 1\n' });
    assert.equal(await cg.oomKilled(), true);
  });

  test('destroy writes cgroup.kill, kills what is left, removes the directory, and is idempotent', async () => {
    const cg = await system.create('petri/tag/i1', limits128);
    const child = spawn('sleep', ['30'], { stdio: 'ignore' });
    const exited = once(child, 'exit');
    await files(leaf(), { 'cgroup.procs': `${child.pid}\n` });
    await cg.destroy();
    const [, signal] = await exited;
    assert.equal(signal, 'SIGKILL');
    assert.equal(await exists(leaf()), false);
    await cg.destroy();
  });

  test('cleanup removes one node tag and keeps another node’s cgroups', async () => {
    await files(path.join(root, 'petri/tag/i2'), LEAF_FILES);
    await files(path.join(root, 'petri/other/j1'), LEAF_FILES);
    assert.equal(await system.cleanup('petri/tag'), 2);
    assert.equal(await exists(path.join(root, 'petri/tag')), false);
    assert.equal(await exists(path.join(root, 'petri/other/j1')), true);
    assert.equal(await system.cleanup('petri/other'), 1);
    assert.equal(await exists(path.join(root, 'petri')), false);
  });

  test('rejects names that would leave the node’s cgroup', async () => {
    await assert.rejects(system.create('petri/../x', limits128), /invalid cgroup name/);
  });

  test('reports missing controllers with a reason', async () => {
    const bare = await fakeRoot();
    await v2Tree(bare, 'cpu io');
    const sys = detectCgroups(bare, { removeDir: removeFakeDir });
    assert.equal(sys.usable('cpu'), true);
    assert.equal(sys.usable('memory'), false);
    assert.match(sys.controllers().find((c) => c.name === 'memory')?.reason ?? '', /not available/);
    await fs.rm(bare, { recursive: true });
  });

  test('a node cgroup with processes and no delegation is reported, not used', async () => {
    await files(path.join(root, 'svc'), {
      'cgroup.controllers': 'cpu memory pids',
      'cgroup.procs': '42\n',
      'cgroup.subtree_control': '',
    });
    const sys = detectCgroups(root, { selfCgroup: '0::/svc\n', removeDir: removeFakeDir });
    assert.equal(sys.usable('memory'), false);
    assert.match(sys.controllers().find((c) => c.name === 'memory')?.reason ?? '', /delegat/);
  });

  test('nests under the node’s own cgroup when it is delegated', async () => {
    await files(path.join(root, 'svc'), {
      'cgroup.controllers': 'cpu memory pids',
      'cgroup.procs': '',
      'cgroup.subtree_control': '',
    });
    await files(path.join(root, 'svc/petri/tag/i1'), LEAF_FILES);
    const sys = detectCgroups(root, { selfCgroup: '0::/svc\n', removeDir: removeFakeDir });
    const cg = await sys.create('petri/tag/i1', limits128);
    assert.deepEqual(cg.procsFiles(), [path.join(root, 'svc/petri/tag/i1/cgroup.procs')]);
    assert.equal(await read(path.join(root, 'svc/petri/tag/i1/cpu.max')), '7200 100000');
  });
});

describe('cgroup layer over a fake v2 tree', () => {
  let root: string;
  beforeEach(async () => {
    root = await fakeRoot();
  });
  afterEach(() => fs.rm(root, { recursive: true, force: true }));

  const spec = {
    instanceId: 'i1',
    resources: { cpu: 0.25, initCpu: 0.5, memoryMb: 256, pidsMax: 64 },
  } as SandboxSpec;

  test('reports its mechanisms, joins the cgroup in wrap, and cleans up on close', async () => {
    await v2Tree(root);
    await files(path.join(root, 'petri/tag/i1'), LEAF_FILES);
    const warnings: string[] = [];
    const system = detectCgroups(root, { removeDir: removeFakeDir });
    const layer = cgroupLayer({ isolation: isolation('auto') }, 'tag', {
      system,
      warn: (m) => warnings.push(m),
    });
    assert.deepEqual(
      layer.mechanisms().map((m) => [m.name, m.active]),
      [
        ['cgroup-cpu', true],
        ['cgroup-memory', true],
        ['cgroup-pids', true],
        ['cgroup-freezer', true],
      ],
    );
    assert.deepEqual(warnings, []);
    const instance = await layer.prepare(spec);
    const procs = path.join(root, 'petri/tag/i1/cgroup.procs');
    assert.deepEqual(instance.wrap(['node', 'host.js']), [
      '/bin/sh',
      '-c',
      `echo $$ > '${procs}' && exec "$@"`,
      'petri-join',
      'node',
      'host.js',
      // The cgroup starts at the init share; the node lowers it to `cpu` once the instance is ready.
    ]);
    assert.equal(await read(path.join(root, 'petri/tag/i1/cpu.max')), '50000 100000');
    await layer.close();
    assert.equal(await exists(path.join(root, 'petri')), false);
  });

  test('warns once per missing mechanism', async () => {
    await v2Tree(root, 'cpu');
    const warnings: string[] = [];
    const system = detectCgroups(root, { removeDir: removeFakeDir });
    const layer = cgroupLayer({ isolation: isolation('auto') }, 'tag', {
      system,
      warn: (m) => warnings.push(m),
    });
    assert.equal(warnings.length, 2);
    assert.match(warnings[0], /^cgroup-memory isolation inactive/);
    assert.match(warnings[1], /^cgroup-pids isolation inactive/);
    layer.mechanisms();
    assert.equal(warnings.length, 2);
  });

  test('off: inactive with a reason, no warnings, wrap is the identity', async () => {
    const warnings: string[] = [];
    const layer = cgroupLayer({ isolation: isolation('off') }, 'tag', {
      root,
      warn: (m) => warnings.push(m),
    });
    assert.ok(layer.mechanisms().every((m) => !m.active && /off/.test(m.reason ?? '')));
    const instance = await layer.prepare(spec);
    assert.deepEqual(instance.wrap(['node', 'x']), ['node', 'x']);
    assert.deepEqual(warnings, []);
    await instance.destroy();
  });
});

function isolation(cgroups: 'auto' | 'off') {
  return {
    cgroups,
    bwrap: 'auto',
    network: 'auto',
    shaping: 'auto',
    fastCgroupMoves: 'auto',
  } as const;
}
