import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { DaemonCpuset } from '../../src/cgroup/index.ts';
import type { FakeSandbox } from '../helpers/fake-driver.ts';
import { deployBody, fakeNode, handlerDir, type FakeNode } from '../helpers/node.ts';

/** A daemon cpuset that records what it was set to. */
class FakeCpuset implements DaemonCpuset {
  readonly set: string[] = [];
  released = false;
  /** Runs at release, to look at the node then. */
  onRelease: () => void = () => undefined;
  constructor(readonly allCpus: number[]) {}
  async setCpus(cpus: string): Promise<void> {
    this.set.push(cpus);
  }
  async release(): Promise<void> {
    this.released = true;
    this.onRelease();
  }
}

let current: FakeNode | undefined;
afterEach(async () => {
  await current?.close();
  current = undefined;
});

async function placedNode(cpuset: FakeCpuset | undefined) {
  current = await fakeNode({ placement: { intervalMs: 10 } }, { daemonCpuset: async () => cpuset });
  return current;
}

/** A node with one function `f` that was called one at a time for long enough to pack. */
async function calmNode(spec: Record<string, unknown>) {
  const cpuset = new FakeCpuset([0, 1]);
  const { node, driver } = await placedNode(cpuset);
  await node.deploy('f', deployBody(handlerDir(), spec));
  await node.invoke('f', {});
  await sleep(60);
  await node.invoke('f', {});
  return { node, driver, cpuset };
}

function lastCpus(sandbox: FakeSandbox): string | undefined {
  return sandbox.cpuLimits.at(-1)?.cpus;
}

describe('CPU placement', () => {
  it('packs instances onto the daemon core while invocations run one at a time', async () => {
    const { node, driver, cpuset } = await calmNode({ memoryMb: 128 });
    assert.equal(node.info().placement.current, 'pack');
    assert.equal(node.info().placement.daemonCpu, 1);
    assert.equal(cpuset.set[0], '1', 'the daemon is pinned before instances move');
    assert.equal(lastCpus(driver.created[0]), '1');
    const metrics = await node.metrics.text();
    assert.match(metrics, /petri_cpu_placement\{state="pack"\} 1/);
    assert.match(metrics, /petri_cpu_placement\{state="spread"\} 0/);
  });

  it('spreads the daemon and instances as soon as invocations overlap', async () => {
    const cpuset = new FakeCpuset([0, 1]);
    const { node, driver } = await placedNode(cpuset);
    await node.deploy('f', deployBody(handlerDir(), { memoryMb: 128, concurrency: 4 }));
    await node.invoke('f', {});
    await sleep(60);
    assert.equal(node.info().placement.current, 'pack');
    await Promise.all([1, 2, 3].map(() => node.invoke('f', { sleepMs: 60 })));
    assert.equal(node.info().placement.current, 'spread');
    assert.equal(lastCpus(driver.created[0]), '0,1');
    assert.equal(cpuset.set.at(-1), '0,1');
  });

  it('never packs an instance of more than one vCPU', async () => {
    const { node, driver } = await calmNode({ memoryMb: 3538 });
    assert.equal(node.info().placement.current, 'pack');
    assert.ok(driver.created[0].cpuLimits.every((limit) => limit.cpus === '0,1'));
  });

  it('gives the daemon back to the node cgroup on close', async () => {
    const cpuset = new FakeCpuset([0, 1]);
    const { node } = await placedNode(cpuset);
    await node.close();
    assert.equal(cpuset.released, true);
  });

  it('lets go of the daemon cpuset last on close, once every instance is gone', async () => {
    const { node, driver, cpuset } = await calmNode({ memoryMb: 128 });
    assert.equal(driver.live().length, 1);
    const setsBeforeClose = cpuset.set.length;
    let liveAtRelease: number | undefined;
    cpuset.onRelease = () => (liveAtRelease = driver.live().length);
    await node.close();
    assert.equal(liveAtRelease, 0, 'instances (children forked while pinned) stopped first');
    assert.equal(cpuset.set.length, setsBeforeClose, 'no placement change during shutdown');
  });

  it('is off, saying why, where it cannot pin', async () => {
    const failing = async (): Promise<DaemonCpuset> => {
      throw new Error('EACCES');
    };
    const cases: [() => Promise<DaemonCpuset | undefined>, RegExp][] = [
      [async () => undefined, /no cgroup cpuset/],
      [failing, /cannot give the daemon a cpuset: EACCES/],
      [async () => new FakeCpuset([0]), /one core/],
    ];
    for (const [daemonCpuset, reason] of cases) {
      current = await fakeNode({}, { daemonCpuset });
      const { node, driver } = current;
      await node.deploy('f', deployBody(handlerDir()));
      await node.invoke('f', {});
      const status = node.info().placement;
      assert.equal(status.active, false);
      assert.match(status.reason ?? '', reason);
      assert.equal(driver.created[0].spec.resources.cpus, undefined);
      await current?.close();
      current = undefined;
    }
  });

  it('is off under the spread policy', async () => {
    const cpuset = new FakeCpuset([0, 1]);
    current = await fakeNode(
      { placement: { policy: 'spread' } },
      { daemonCpuset: async () => cpuset },
    );
    assert.deepEqual(current.node.info().placement, {
      policy: 'spread',
      active: false,
      reason: 'policy is spread',
      current: 'spread',
    });
    assert.deepEqual(cpuset.set, []);
  });
});
