import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FakeSandbox } from '../helpers/fake-driver.ts';
import { deployBody, fakeNode, handlerDir, type FakeNode } from '../helpers/node.ts';

// The usage sink: when an invocation's resource usage is read, and which
// invocations share one read.

let current: FakeNode | undefined;
afterEach(async () => {
  await current?.close();
  current = undefined;
});

/** A node with `f` (concurrency 4) started, and a count of its sandbox's usage reads. */
async function countedNode() {
  current = await fakeNode();
  const { node, driver, store } = current;
  await node.deploy('f', deployBody(handlerDir(), { concurrency: 4 }));
  await node.invoke('f', {});
  await sleep(20);
  const sandbox: FakeSandbox = driver.created[0];
  const read = sandbox.usage.bind(sandbox);
  const counted = { reads: 0 };
  sandbox.usage = () => {
    counted.reads += 1;
    return read();
  };
  return { node, store, counted };
}

describe('usage sink', () => {
  it('reads an instance left with nothing in flight at once, for each invocation', async () => {
    const { node, store, counted } = await countedNode();
    const first = await node.invoke('f', { spinMs: 3 });
    await sleep(2);
    const second = await node.invoke('f', { spinMs: 5 });
    await sleep(2);
    assert.equal(counted.reads, 2);
    assert.equal(store.getInvocation(first.record.id)?.cpuMs, 3);
    assert.equal(store.getInvocation(second.record.id)?.cpuMs, 5);
  });

  it('makes overlapping invocations share one read once the instance drains', async () => {
    const { node, store, counted } = await countedNode();
    const [a, b] = await Promise.all([
      node.invoke('f', { spinMs: 1 }),
      node.invoke('f', { sleepMs: 2, spinMs: 1 }),
    ]);
    await sleep(10);
    assert.equal(counted.reads, 1, 'one read for both');
    // They cannot be told apart: both get the instance's use over the shared read.
    assert.equal(store.getInvocation(a.record.id)?.cpuMs, 2);
    assert.equal(store.getInvocation(b.record.id)?.cpuMs, 2);
  });

  it('does not hold a record back for long while the instance stays busy', async () => {
    const { node, store, counted } = await countedNode();
    const long = node.invoke('f', { sleepMs: 300 });
    const short = await node.invoke('f', { spinMs: 1 });
    await sleep(50);
    assert.equal(counted.reads, 1);
    assert.equal(store.getInvocation(short.record.id)?.cpuMs, 1, 'stored before the long one ends');
    await long;
  });
});
