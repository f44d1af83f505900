import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Instance, ManualClock, Pool } from '../../src/node/index.ts';
import { FixedKeepAlive } from '../../src/policy/index.ts';
import type { SandboxSpec } from '../../src/sandbox/index.ts';
import { parseSpec } from '../../src/spec/index.ts';
import type { FunctionRecord } from '../../src/store/index.ts';
import { FakeDriver } from '../helpers/fake-driver.ts';
import { fakeSandboxSpec, flush } from '../helpers/pool-fixtures.ts';

// The pool offers `restore` exactly when its hook says the version's
// snapshot is ready, and starts the instance through the restore path.

const fn: FunctionRecord = {
  name: 'f',
  version: 1,
  spec: parseSpec({ name: 'f', runtime: 'node', snapshot: true }),
  codeDir: '/nonexistent',
  createdAt: 0,
  updatedAt: 0,
};

const spec = (id: string): SandboxSpec => fakeSandboxSpec(fn, id);

describe('restore start path in the pool', () => {
  it('restores while the snapshot is ready and starts cold once it is not', async () => {
    const clock = new ManualClock(1000);
    const driver = new FakeDriver(clock);
    let ready = true;
    const asked: string[] = [];
    const events: unknown[] = [];
    let n = 0;
    const pool: Pool = new Pool(
      { memoryBudgetMb: 1024, maxInstancesPerFunction: 4, queueMaxSize: 1, queueMaxWaitMs: 1000 },
      new FixedKeepAlive(10_000),
      {
        startInstance: (record, path = 'cold') => {
          asked.push(path);
          const hooks = {
            onState: (_: Instance, state: string, details?: unknown) => {
              if (state === 'starting') events.push(details);
            },
            onLog: () => {},
          };
          return Instance.start(driver, record, spec(`f-1-${++n}`), hooks, 10_000, clock, path);
        },
        snapshotReady: () => ready,
      },
      clock,
    );
    pool.setFunction(fn);
    const start = async () => {
      const acquiring = pool.acquire(pool.entry('f')!);
      await flush();
      clock.advance(0);
      return acquiring;
    };
    const restored = await start();
    assert.equal(restored.startPath, 'restore');
    ready = false;
    // The first instance is busy: the next needs a new one, cold now.
    const cold = await start();
    assert.equal(cold.startPath, 'cold');
    assert.deepEqual(asked, ['restore', 'cold']);
    assert.deepEqual(
      events.map((e) => (e as { startPath: string }).startPath),
      ['restore', 'cold'],
    );
  });

  it('a restore that fell back to a cold start is handed out as cold, and the caller heard it was a restore attempt', async () => {
    const clock = new ManualClock(1000);
    const driver = new FakeDriver(clock);
    const hooks = { onState: () => {}, onLog: () => {} };
    const pool: Pool = new Pool(
      { memoryBudgetMb: 1024, maxInstancesPerFunction: 4, queueMaxSize: 1, queueMaxWaitMs: 1000 },
      new FixedKeepAlive(10_000),
      {
        // As the launcher does when the snapshot does not restore: a cold instance instead.
        startInstance: (record) =>
          Instance.start(driver, record, spec('f-1-x'), hooks, 10_000, clock, 'cold', 'bad blob'),
        snapshotReady: () => true,
      },
      clock,
    );
    pool.setFunction(fn);
    const heard: unknown[] = [];
    const acquiring = pool.acquire(pool.entry('f')!, (path) => heard.push(path));
    await flush();
    clock.advance(0);
    const slot = await acquiring;
    assert.deepEqual(heard, ['restore']);
    assert.equal(slot.startPath, 'cold');
    assert.equal(slot.instance.startPath, 'cold');
  });
});
