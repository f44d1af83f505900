import assert from 'node:assert/strict';
import path from 'node:path';
import { afterEach, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Store } from '../../src/store/index.ts';
import { deployBody, fakeNode, handlerDir, type FakeNode } from '../helpers/node.ts';

let current: FakeNode | undefined;
afterEach(async () => {
  await current?.close();
  current = undefined;
});

async function nodeWith(
  fns: Record<string, Record<string, unknown>>,
  config = {},
): Promise<FakeNode> {
  current = await fakeNode(config);
  const dir = handlerDir();
  for (const [name, spec] of Object.entries(fns))
    await current.node.deploy(name, deployBody(dir, spec));
  return current;
}

describe('pool', () => {
  it('reuses a warm instance for the next invocation', async () => {
    const { node, driver } = await nodeWith({ f: {} });
    const first = await node.invoke('f', { n: 1 });
    const second = await node.invoke('f', { n: 2 });
    assert.equal(first.record.startPath, 'cold');
    assert.equal(second.record.startPath, 'warm');
    assert.deepEqual(second.value, { n: 2 });
    assert.equal(driver.created.length, 1);
    assert.equal(second.record.instanceId, first.record.instanceId);
  });

  it('starts another instance for concurrent invocations up to the cap', async () => {
    const { node, driver } = await nodeWith({ f: { maxInstances: 2 } });
    const results = await Promise.all([1, 2, 3].map(() => node.invoke('f', { sleepMs: 40 })));
    assert.equal(driver.created.length, 2);
    assert.deepEqual(results.map((r) => r.record.startPath).sort(), ['cold', 'cold', 'warm']);
    assert.ok(results.every((r) => r.record.status === 'succeeded'));
  });

  it('runs up to `concurrency` invocations on one instance at once', async () => {
    const { node, driver } = await nodeWith({ f: { maxInstances: 1, concurrency: 3 } });
    await node.invoke('f', {});
    const started = Date.now();
    await Promise.all([1, 2, 3].map(() => node.invoke('f', { sleepMs: 60 })));
    assert.equal(driver.created.length, 1);
    assert.ok(Date.now() - started < 150, 'three 60 ms invocations overlapped');
  });

  it('queues when at capacity and fails with QueueFull past the queue size', async () => {
    const { node } = await nodeWith({ f: { maxInstances: 1, queue: { maxSize: 1 } } });
    const running = node.invoke('f', { sleepMs: 50 });
    await sleep(5);
    const queued = node.invoke('f', { n: 'queued' });
    const rejected = await node.invoke('f', {});
    assert.equal(rejected.record.error?.code, 'QueueFull');
    const queuedResult = await queued;
    assert.equal(queuedResult.record.status, 'succeeded');
    assert.equal(queuedResult.record.startPath, 'warm');
    assert.ok((queuedResult.record.queuedMs ?? 0) >= 30, 'it waited in the queue');
    await running;
  });

  it('fails a queued invocation with QueueTimeout after the maximum wait', async () => {
    const { node } = await nodeWith({ f: { maxInstances: 1, queue: { maxWaitMs: 20 } } });
    const running = node.invoke('f', { sleepMs: 100 });
    await sleep(5);
    const late = await node.invoke('f', {});
    assert.equal(late.record.error?.code, 'QueueTimeout');
    assert.equal((await running).record.status, 'succeeded');
  });

  it('evicts the least recently used idle instance when memory is short', async () => {
    const { node, driver } = await nodeWith(
      { a: { memoryMb: 128 }, b: { memoryMb: 128 }, c: { memoryMb: 128 } },
      { memoryBudgetMb: 256 },
    );
    await node.invoke('a', {});
    await node.invoke('b', {});
    await node.invoke('c', {});
    const live = driver
      .live()
      .map((s) => s.spec.functionName)
      .sort();
    assert.deepEqual(live, ['b', 'c']);
    assert.equal(node.info().memoryInUseMb, 256);
  });

  it('rejects a function larger than the whole budget with CapacityExceeded', async () => {
    const { node } = await nodeWith({ big: { memoryMb: 512 } }, { memoryBudgetMb: 256 });
    const result = await node.invoke('big', {});
    assert.equal(result.record.error?.code, 'CapacityExceeded');
  });

  it('stops an idle instance after its keep-alive', async () => {
    const { node, driver } = await nodeWith({ f: { keepAlive: { ms: 30 } } });
    await node.invoke('f', {});
    assert.equal(driver.live().length, 1);
    await sleep(80);
    assert.equal(driver.live().length, 0);
    assert.equal((await node.invoke('f', {})).record.startPath, 'cold');
  });

  it('makes no new version when spec and code are unchanged, and one when the code changes', async () => {
    const { node } = await nodeWith({});
    const first = await node.deploy('g', deployBody(handlerDir(), {}));
    const same = await node.deploy('g', deployBody(handlerDir(), {}));
    assert.equal(first.view.version, 1);
    assert.deepEqual([same.view.version, same.created], [1, false]);
    const edited = await node.deploy(
      'g',
      deployBody(handlerDir('export const handler = () => 1;\n')),
    );
    assert.equal(edited.view.version, 2);
    assert.equal((await node.invoke('g', {})).record.version, 2);
  });

  it('drains the old version when a new one is deployed', async () => {
    const { node, driver } = await nodeWith({ f: {} });
    await node.invoke('f', {});
    const busy = node.invoke('f', { sleepMs: 60 });
    const idleOld = node.invoke('f', {});
    await idleOld;
    const changed = 'export async function handler(e) { return { ...e, v: 2 }; }\n';
    await node.deploy('f', deployBody(handlerDir(changed), {}));
    const next = await node.invoke('f', {});
    assert.equal(next.record.version, 2);
    assert.equal(next.record.startPath, 'cold');
    assert.equal((await busy).record.status, 'succeeded', 'in-flight work on v1 finishes');
    await sleep(10);
    const versions = driver.live().map((s) => s.spec.version);
    assert.deepEqual(versions, [2]);
  });

  it('reports crashes, memory kills and handler errors with their codes', async () => {
    const { node } = await nodeWith({ f: {} });
    const crashed = await node.invoke('f', { crash: true });
    assert.equal(crashed.record.error?.code, 'InstanceCrashed');
    assert.match(crashed.record.error?.message ?? '', /exit code 3/);
    assert.deepEqual((crashed.record.error?.details as { stderr: string }).stderr, 'boom\n');
    const oom = await node.invoke('f', { oom: true });
    assert.equal(oom.record.error?.code, 'OutOfMemory');
    const failed = await node.invoke('f', { fail: 'nope' });
    assert.equal(failed.record.error?.code, 'HandlerError');
    assert.equal(failed.record.error?.message, 'nope');
    assert.equal((await node.invoke('f', { ok: 1 })).record.status, 'succeeded');
  });

  it('kills an instance that runs past its timeout', async () => {
    const { node, driver } = await nodeWith({ f: { timeoutMs: 30 } });
    const result = await node.invoke('f', { sleepMs: 500 });
    assert.equal(result.record.error?.code, 'Timeout');
    assert.equal(driver.live().length, 0);
  });

  it('fails queued invocations of a removed function', async () => {
    const { node } = await nodeWith({ f: { maxInstances: 1 } });
    const running = node.invoke('f', { sleepMs: 40 });
    await sleep(5);
    const queued = node.invoke('f', {});
    await node.removeFunction('f');
    assert.equal((await queued).record.error?.code, 'FunctionNotFound');
    assert.equal((await running).record.status, 'succeeded');
    await assert.rejects(node.invoke('f', {}), { code: 'FunctionNotFound' });
  });

  it('captures output lines with the invocation they belong to', async () => {
    const { node, store } = await nodeWith({ f: {} });
    const { record } = await node.invoke('f', {});
    const logs = store.listLogs({ functionName: 'f', limit: 10 });
    assert.equal(logs.length, 1);
    assert.equal(logs[0].invocationId, record.id);
    assert.equal(logs[0].line, `handling ${record.id}`);
  });

  it('breaks each invocation into queued, init, execution and total time', async () => {
    const { node, driver } = await nodeWith({ f: {} });
    driver.startDelayMs = 30;
    const { record } = await node.invoke('f', { sleepMs: 20 });
    assert.ok(record.initMs! >= 25, `init ${record.initMs}`);
    assert.ok(record.executionMs! >= 15, `execution ${record.executionMs}`);
    const sum = record.queuedMs! + record.initMs! + record.executionMs!;
    assert.ok(Math.abs(sum - record.totalMs!) < 0.01);
  });
});

describe('graceful stop', () => {
  it('fails queued and running async invocations with NodeRestarted', async () => {
    const fake = await fakeNode();
    const dir = handlerDir();
    await fake.node.deploy('f', deployBody(dir, { maxInstances: 1 }));
    const running = fake.node.invokeAsync('f', { sleepMs: 5000 });
    await sleep(20);
    const queued = fake.node.invokeAsync('f', {});
    await fake.node.close();
    const store = Store.open(path.join(fake.dir, 'petri.db'));
    try {
      for (const { id } of [running, queued]) {
        const record = store.getInvocation(id)!;
        assert.equal(record.status, 'failed', id);
        assert.equal(record.error?.code, 'NodeRestarted', id);
      }
    } finally {
      store.close();
      await fake.close();
    }
  });
});
