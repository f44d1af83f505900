import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PetriError } from '../../src/errors.ts';
import { Instance, ManualClock, Pool, type PrewarmClaim } from '../../src/node/index.ts';
import { FixedKeepAlive } from '../../src/policy/index.ts';
import type { SandboxSpec } from '../../src/sandbox/index.ts';
import { parseSpec } from '../../src/spec/index.ts';
import type { FunctionRecord } from '../../src/store/index.ts';
import { FakeDriver } from '../helpers/fake-driver.ts';
import { fakeSandboxSpec, flush } from '../helpers/pool-fixtures.ts';

// The pool offers `prewarm` while its hook says a runtime is ready, binds
// the claimed one, and moves the runtime's memory to the starting instance
// (binding needs no more room); a claim it cannot use goes back.

const fn: FunctionRecord = {
  name: 'f',
  version: 1,
  spec: parseSpec({ name: 'f', runtime: 'node', memoryMb: 128 }),
  codeDir: '/nonexistent',
  createdAt: 0,
  updatedAt: 0,
};

const hooks = { onState: () => {}, onLog: () => {} };

function setup(budgetMb: number, maxInstances = 4) {
  const clock = new ManualClock(1000);
  const driver = new FakeDriver(clock);
  /** Ready runtimes, each holding 128 MB of the pool's budget through reserveFreeMemory. */
  let ready = 0;
  const log: string[] = [];
  let n = 0;
  const pool: Pool = new Pool(
    {
      memoryBudgetMb: budgetMb,
      maxInstancesPerFunction: maxInstances,
      queueMaxSize: 4,
      queueMaxWaitMs: 1000,
    },
    new FixedKeepAlive(10_000),
    {
      startInstance: (record, path = 'cold') => {
        log.push(path);
        return Instance.start(driver, record, spec(`cold-${++n}`), hooks, 10_000, clock, path);
      },
      prewarmsFor: () => ready,
      claimPrewarm: (): PrewarmClaim | undefined => {
        if (ready === 0) return undefined;
        ready -= 1;
        return {
          memoryMb: 128,
          start: () => {
            log.push('bind');
            return Instance.start(driver, fn, spec(`prewarm-${++n}`), hooks, 10_000, clock);
          },
          cancel: () => {
            log.push('cancel');
            ready += 1;
          },
        };
      },
    },
    clock,
  );
  pool.setFunction(fn);
  const addReady = (): void => {
    assert.equal(pool.reserveFreeMemory(128), true);
    ready += 1;
  };
  const acquire = async () => {
    const acquiring = pool.acquire(pool.entry('f')!);
    await flush();
    clock.advance(0);
    return acquiring;
  };
  return { pool, log, addReady, acquire, ready: () => ready };
}

const spec = (id: string): SandboxSpec => fakeSandboxSpec(fn, id);

describe('prewarm start path in the pool', () => {
  it('binds a ready runtime, its memory moving to the instance, and starts cold once none is ready', async () => {
    const { pool, log, addReady, acquire } = setup(1024);
    addReady();
    assert.equal(pool.memoryInUseMb(), 128);
    const bound = await acquire();
    assert.equal(bound.startPath, 'prewarm');
    assert.equal(bound.instance.id, 'prewarm-1');
    // The runtime's 128 MB is now the instance's: nothing counted twice.
    assert.equal(pool.memoryInUseMb(), 128);
    const cold = await acquire();
    assert.equal(cold.startPath, 'cold');
    assert.deepEqual(log, ['bind', 'cold']);
    assert.equal(pool.memoryInUseMb(), 256);
  });

  it('binds on a full budget: the runtime brings its own memory', async () => {
    const { pool, addReady, acquire } = setup(128);
    addReady();
    const bound = await acquire();
    assert.equal(bound.startPath, 'prewarm');
    assert.equal(pool.memoryInUseMb(), 128);
  });

  it('reserveFreeMemory never evicts: an idle instance keeps its place', async () => {
    const { pool, acquire } = setup(128);
    const slot = await acquire();
    pool.release(slot.instance);
    assert.equal(slot.instance.state, 'idle');
    assert.equal(pool.reserveFreeMemory(128), false);
    assert.equal(slot.instance.state, 'idle');
  });

  it('gives the claim back when the start limit refuses the start', async () => {
    const { pool, log, addReady, ready } = setup(1024);
    addReady();
    pool.entry('f')!.demandStartLimit = 0;
    const waiting = pool.acquire(pool.entry('f')!);
    await flush();
    assert.deepEqual(log, ['cancel']);
    assert.equal(ready(), 1);
    assert.equal(pool.memoryInUseMb(), 128);
    pool.entry('f')!.demandStartLimit = undefined;
    pool.rejectAll(new PetriError('NodeRestarted', 'bye'));
    await assert.rejects(waiting);
  });
});
