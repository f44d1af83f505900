import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, test } from 'node:test';
import { detectCgroups } from '../../src/cgroup/index.ts';
import { ManualClock } from '../../src/node/clock.ts';
import { MicrotaskScheduler } from '../../src/sched/index.ts';
import { fakeRoot, files, read, removeFakeDir } from '../cgroup/fake.ts';
import { CLASSES, MAP, settle } from './scheduler.case.ts';

/**
 * The microtask scheduler over the cgroup v2 code path (a fake tree; the
 * root test covers v1 on the real kernel): each phase boundary rewrites the
 * instance's cpu.max and cpuset.cpus.
 */
let root: string;

beforeEach(async () => {
  root = await fakeRoot();
  await files(root, {
    'cgroup.controllers': 'cpuset cpu memory pids\n',
    'cgroup.subtree_control': '',
    'cgroup.procs': '1\n',
  });
  await files(path.join(root, 'petri/tag/i1'), {
    'cgroup.procs': '',
    'cpu.max': 'max 100000\n',
    'cpuset.cpus': '',
    'memory.max': 'max\n',
    'memory.swap.max': 'max\n',
    'pids.max': 'max\n',
  });
});
afterEach(() => fs.rm(root, { recursive: true, force: true }));

test('cgroup v2: cpu.max and cpuset.cpus change at phase boundaries', async () => {
  const system = detectCgroups(root, { removeDir: removeFakeDir, killTimeoutMs: 1000 });
  assert.equal(system.version, 'v2');
  const cgroup = await system.create('petri/tag/i1', {
    cpu: 0.072,
    memoryBytes: 128 * 2 ** 20,
    pidsMax: 256,
  });
  const dir = path.join(root, 'petri/tag/i1');
  const limits = async () => [
    await read(path.join(dir, 'cpu.max')),
    await read(path.join(dir, 'cpuset.cpus')),
  ];
  const scheduler = new MicrotaskScheduler({
    clock: new ManualClock(0),
    classes: CLASSES,
    allocation: 'static',
    intervalMs: 5,
    moveIntervalMs: 20,
  });
  const subject = {
    instanceId: 'i1',
    own: () => ({ cpu: 0.072 }),
    setCpu: cgroup.setCpu.bind(cgroup),
  };
  const phases = scheduler.begin('a', subject, MAP, 0);
  await phases.enter('read');
  assert.deepEqual(await limits(), ['25000 100000', '0']);
  await phases.enter('sort');
  assert.deepEqual(await limits(), ['100000 100000', '1']);
  phases.finish();
  // The write back to its own share is fire-and-forget: wait for it (real file I/O).
  for (let i = 0; i < 100 && (await limits())[0] !== '7200 100000'; i++) {
    await settle();
    await new Promise((r) => setTimeout(r, 5));
  }
  // Back at its own share; an empty cpuset.cpus in v2 means the parent's cores.
  assert.deepEqual(await limits(), ['7200 100000', '']);
  scheduler.close();
});
