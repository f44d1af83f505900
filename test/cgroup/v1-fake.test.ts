import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { detectCgroups, type CgroupSystem } from '../../src/cgroup/index.ts';
import { exists, fakeRoot, files, read, removeFakeDir } from './fake.ts';

const MB = 1024 * 1024;
const limits128 = { cpu: 0.072, memoryBytes: 128 * MB, pidsMax: 256 };
const NAME = 'petri/tag/i1';

/** A hierarchy directory as the kernel shows it; `extra` are the controller's own files. */
const hierarchy = (extra: Record<string, string> = {}) => ({ 'cgroup.procs': '', ...extra });

const CPU_LEAF = hierarchy({
  'cpu.cfs_period_us': '100000\n',
  'cpu.cfs_quota_us': '-1\n',
  'cpuacct.usage': '0\n',
});
const MEMORY_LEAF = hierarchy({
  'memory.limit_in_bytes': '9223372036854771712\n',
  'memory.memsw.limit_in_bytes': '9223372036854771712\n',
  'memory.swappiness': '60\n',
  'memory.max_usage_in_bytes': '0\n',
  'memory.oom_control': 'oom_kill_disable 0\nunder_oom 0\noom_kill 0\n',
  'memory.failcnt': '0\n',
});
const PIDS_LEAF = hierarchy({ 'pids.max': 'max\n' });
const FREEZER_LEAF = hierarchy({ 'freezer.state': 'THAWED\n' });

/** Like a systemd host: a joint cpu,cpuacct mount with cpu and cpuacct symlinks to it. */
async function v1Tree(root: string, options: { pids?: boolean } = {}): Promise<void> {
  await files(path.join(root, 'cpu,cpuacct'), hierarchy());
  await fs.symlink('cpu,cpuacct', path.join(root, 'cpu'));
  await fs.symlink('cpu,cpuacct', path.join(root, 'cpuacct'));
  await files(path.join(root, 'memory'), hierarchy());
  await files(
    path.join(root, 'cpuset'),
    hierarchy({ 'cpuset.cpus': '0-1\n', 'cpuset.mems': '0\n' }),
  );
  if (options.pids !== false) await files(path.join(root, 'pids'), hierarchy());
  await files(path.join(root, 'freezer'), hierarchy());
  await files(path.join(root, 'unified'), { 'cgroup.controllers': '', 'cgroup.procs': '' });
  await files(path.join(root, 'cpu,cpuacct', NAME), CPU_LEAF);
  await files(path.join(root, 'memory', NAME), MEMORY_LEAF);
  if (options.pids !== false) await files(path.join(root, 'pids', NAME), PIDS_LEAF);
  await files(path.join(root, 'freezer', NAME), FREEZER_LEAF);
}

describe('cgroup v1 on a fake tree', () => {
  let root: string;
  let system: CgroupSystem;
  const cpuDir = () => path.join(root, 'cpu,cpuacct', NAME);
  const memDir = () => path.join(root, 'memory', NAME);

  beforeEach(async () => {
    root = await fakeRoot();
    await v1Tree(root);
    system = detectCgroups(root, { removeDir: removeFakeDir, killTimeoutMs: 1000 });
  });
  afterEach(() => fs.rm(root, { recursive: true, force: true }));

  test('detects v1 with a joint cpu,cpuacct hierarchy', () => {
    assert.equal(system.version, 'v1');
    assert.ok(system.controllers().every((c) => c.usable));
  });

  test('freezes and thaws through freezer.state in the freezer hierarchy', async () => {
    const cg = await system.create(NAME, limits128);
    const state = path.join(root, 'freezer', NAME, 'freezer.state');
    assert.equal(cg.canFreeze, true);
    assert.ok(cg.procsFiles().includes(path.join(root, 'freezer', NAME, 'cgroup.procs')));
    await cg.freeze();
    assert.equal(await read(state), 'FROZEN');
    await cg.thaw();
    assert.equal(await read(state), 'THAWED');
    // What the thaw guard writes into after a crash: every instance's freezer.state.
    assert.deepEqual(system.freezeControl?.('petri/tag'), {
      dir: path.join(root, 'freezer', 'petri/tag'),
      file: 'freezer.state',
      thawed: 'THAWED',
    });
  });

  test('destroy thaws a frozen cgroup first: v1 tasks act on SIGKILL only once thawed', async () => {
    const cg = await system.create(NAME, limits128);
    await cg.freeze();
    const state = path.join(root, 'freezer', NAME, 'freezer.state');
    const written: string[] = [];
    const sys = detectCgroups(root, {
      removeDir: async (dir) => {
        if (dir.includes('freezer')) written.push(await read(state));
        await removeFakeDir(dir);
      },
      killTimeoutMs: 1000,
    });
    const again = await sys.create(NAME, limits128);
    await again.freeze();
    await again.destroy();
    assert.deepEqual(written, ['THAWED']);
    await cg.destroy();
  });

  test('without a freezer hierarchy an instance cannot be frozen', async () => {
    await fs.rm(path.join(root, 'freezer'), { recursive: true });
    const sys = detectCgroups(root, { removeDir: removeFakeDir, killTimeoutMs: 1000 });
    assert.match(sys.controllers().find((c) => c.name === 'freezer')?.reason ?? '', /not mounted/);
    const cg = await sys.create(NAME, limits128);
    assert.equal(cg.canFreeze, false);
    await assert.rejects(cg.freeze(), /no freezer/);
  });

  test('create writes cfs period and quota, memory and memsw limits, pids.max', async () => {
    const cg = await system.create(NAME, limits128);
    assert.equal(await read(path.join(cpuDir(), 'cpu.cfs_period_us')), '100000');
    assert.equal(await read(path.join(cpuDir(), 'cpu.cfs_quota_us')), '7200');
    assert.equal(await read(path.join(memDir(), 'memory.limit_in_bytes')), String(128 * MB));
    assert.equal(await read(path.join(memDir(), 'memory.memsw.limit_in_bytes')), String(128 * MB));
    assert.equal(await read(path.join(memDir(), 'memory.swappiness')), '60\n');
    assert.equal(await read(path.join(root, 'pids', NAME, 'pids.max')), '256');
    // One procs file per hierarchy; no cpuset unless a cpuset is asked for.
    assert.deepEqual(cg.procsFiles().sort(), [
      path.join(cpuDir(), 'cgroup.procs'),
      path.join(root, 'freezer', NAME, 'cgroup.procs'),
      path.join(memDir(), 'cgroup.procs'),
      path.join(root, 'pids', NAME, 'cgroup.procs'),
    ]);
    assert.equal(await exists(path.join(root, 'cpuset/petri')), false);
  });

  test('without memsw it sets swappiness to 0 instead', async () => {
    await fs.rm(path.join(memDir(), 'memory.memsw.limit_in_bytes'));
    await system.create(NAME, limits128);
    assert.equal(await read(path.join(memDir(), 'memory.swappiness')), '0');
    assert.equal(await exists(path.join(memDir(), 'memory.memsw.limit_in_bytes')), false);
  });

  test('setCpu with a cpuset creates the cpuset cgroup, copying cpus/mems down the path', async () => {
    const cg = await system.create(NAME, limits128);
    await cg.setCpu({ cpu: 0.5, cpus: '1' });
    assert.equal(await read(path.join(cpuDir(), 'cpu.cfs_quota_us')), '50000');
    assert.equal(await read(path.join(root, 'cpuset/petri/cpuset.cpus')), '0-1');
    assert.equal(await read(path.join(root, 'cpuset/petri/tag/cpuset.mems')), '0');
    assert.equal(await read(path.join(root, 'cpuset', NAME, 'cpuset.cpus')), '1');
    assert.equal(await read(path.join(root, 'cpuset', NAME, 'cpuset.mems')), '0');
    assert.equal(cg.procsFiles().length, 5);
    await cg.setCpu({ cpu: 0 });
    assert.equal(await read(path.join(cpuDir(), 'cpu.cfs_quota_us')), '-1');
    assert.equal(await read(path.join(root, 'cpuset', NAME, 'cpuset.cpus')), '0-1');
  });

  test('setCpu writes only the files whose value changed (a phase change costs one write)', async () => {
    const cg = await system.create(NAME, limits128);
    await cg.setCpu({ cpu: 0.5, cpus: '1' });
    const quota = path.join(cpuDir(), 'cpu.cfs_quota_us');
    const period = path.join(cpuDir(), 'cpu.cfs_period_us');
    const cpuset = path.join(root, 'cpuset', NAME, 'cpuset.cpus');
    // Marks: a file that is written again loses its mark.
    for (const file of [quota, period, cpuset]) await fs.writeFile(file, 'mark');
    await cg.setCpu({ cpu: 0.5, cpus: '0' });
    assert.equal(await read(quota), 'mark');
    assert.equal(await read(period), 'mark');
    assert.equal(await read(cpuset), '0');
    await cg.setCpu({ cpu: 0.25, cpus: '0' });
    assert.equal(await read(quota), '25000');
    assert.equal(await read(cpuset), '0');
  });

  test('usage reads cpuacct.usage (ns) and memory.max_usage_in_bytes; resetPeak writes 0', async () => {
    const cg = await system.create(NAME, limits128);
    await files(cpuDir(), { 'cpuacct.usage': '2500000\n' });
    await files(memDir(), { 'memory.max_usage_in_bytes': '1048576\n' });
    assert.deepEqual(await cg.usage(), { cpuMs: 2.5, peakMemoryBytes: MB });
    assert.equal(await cg.resetPeak(), true);
    assert.equal(await read(path.join(memDir(), 'memory.max_usage_in_bytes')), '0');
  });

  test('oomKilled reads oom_kill from memory.oom_control, else failcnt', async () => {
    const cg = await system.create(NAME, limits128);
    assert.equal(await cg.oomKilled(), false);
    await files(memDir(), {
      'memory.oom_control': 'oom_kill_disable 0\nunder_oom 0\noom_kill 1\n',
    });
    assert.equal(await cg.oomKilled(), true);
    await files(memDir(), {
      'memory.oom_control': 'oom_kill_disable 0\nunder_oom 0\n',
      'memory.failcnt': '3\n',
    });
    assert.equal(await cg.oomKilled(), true);
  });

  test('destroy SIGKILLs every pid in every hierarchy and removes each directory', async () => {
    const cg = await system.create(NAME, limits128);
    const a = spawn('sleep', ['30'], { stdio: 'ignore' });
    const b = spawn('sleep', ['30'], { stdio: 'ignore' });
    const exits = [once(a, 'exit'), once(b, 'exit')];
    await files(cpuDir(), { 'cgroup.procs': `${a.pid}\n${b.pid}\n` });
    await files(memDir(), { 'cgroup.procs': `${a.pid}\n` });
    await cg.destroy();
    for (const [, signal] of await Promise.all(exits)) assert.equal(signal, 'SIGKILL');
    assert.equal(await exists(cpuDir()), false);
    assert.equal(await exists(memDir()), false);
    assert.equal(await exists(path.join(root, 'pids', NAME)), false);
    await cg.destroy();
  });

  test('cleanup removes petri/<tag> in every hierarchy, then petri when empty', async () => {
    await files(path.join(root, 'memory/petri/tag/i2'), MEMORY_LEAF);
    await files(path.join(root, 'cpuset/petri/tag/i3'), hierarchy());
    assert.equal(await system.cleanup('petri/tag'), 3);
    for (const h of ['cpu,cpuacct', 'memory', 'pids', 'cpuset']) {
      assert.equal(await exists(path.join(root, h, 'petri')), false, h);
    }
  });

  test('cleanup keeps petri while another node’s cgroups are in it', async () => {
    await files(path.join(root, 'memory/petri/other/j1'), MEMORY_LEAF);
    assert.equal(await system.cleanup('petri/tag'), 1);
    assert.equal(await exists(path.join(root, 'memory/petri/tag')), false);
    assert.equal(await exists(path.join(root, 'memory/petri/other/j1')), true);
    assert.equal(await exists(path.join(root, 'cpu,cpuacct/petri')), false);
  });

  test('a daemon cpuset is removed only after the daemon and each of its threads moved out', async () => {
    const base = path.join(root, 'cpuset');
    let atRemoval: { procs: string; tasks: string } | undefined;
    const sys = detectCgroups(root, {
      removeDir: async (dir) => {
        atRemoval = {
          procs: await read(path.join(base, 'cgroup.procs')),
          tasks: await read(path.join(base, 'tasks')),
        };
        await removeFakeDir(dir);
      },
    });
    const cpuset = await sys.daemonCpuset('petri-daemon-tag');
    assert.ok(cpuset);
    const dir = path.join(base, 'petri-daemon-tag');
    assert.deepEqual(cpuset.allCpus, [0, 1]);
    assert.equal(await read(path.join(dir, 'cgroup.procs')), String(process.pid));
    await cpuset.release();
    assert.equal(atRemoval?.procs, String(process.pid), 'the daemon moved back first');
    assert.ok((await fs.readdir('/proc/self/task')).includes(atRemoval.tasks), 'threads too');
    assert.equal(await exists(dir), false);
  });

  test('a daemon cpuset whose move back fails is kept, saying why', async () => {
    const base = path.join(root, 'cpuset');
    const removed: string[] = [];
    const sys = detectCgroups(root, {
      removeDir: async (dir) => {
        removed.push(dir);
        await removeFakeDir(dir);
      },
    });
    const cpuset = await sys.daemonCpuset('petri-daemon-tag');
    assert.ok(cpuset);
    // A procs "file" the kernel would refuse: here a directory, so the write fails.
    await fs.rm(path.join(base, 'cgroup.procs'));
    await fs.mkdir(path.join(base, 'cgroup.procs'));
    await assert.rejects(cpuset.release(), /cannot write \d+ to .*cpuset\/cgroup\.procs/);
    assert.deepEqual(removed, []);
    assert.equal(await exists(path.join(base, 'petri-daemon-tag')), true);
  });

  test('an unmounted controller is reported with its reason', async () => {
    const bare = await fakeRoot();
    await v1Tree(bare, { pids: false });
    const sys = detectCgroups(bare, { removeDir: removeFakeDir });
    assert.deepEqual(
      sys.controllers().find((c) => c.name === 'pids'),
      { name: 'pids', usable: false, reason: 'controller pids not mounted' },
    );
    const cg = await sys.create(NAME, limits128);
    assert.equal(cg.procsFiles().length, 3); // cpu,cpuacct, freezer, memory
    await fs.rm(bare, { recursive: true });
  });

  test('nests under the node’s own cgroup per hierarchy (/proc/self/cgroup)', async () => {
    await files(path.join(root, 'memory/job'), hierarchy());
    await files(path.join(root, 'memory/job', NAME), MEMORY_LEAF);
    const sys = detectCgroups(root, {
      selfCgroup: '4:memory:/job\n3:cpu,cpuacct:/\n',
      removeDir: removeFakeDir,
    });
    const cg = await sys.create(NAME, limits128);
    assert.ok(cg.procsFiles().includes(path.join(root, 'memory/job', NAME, 'cgroup.procs')));
    assert.equal(
      await read(path.join(root, 'memory/job', NAME, 'memory.limit_in_bytes')),
      String(128 * MB),
    );
  });
});
