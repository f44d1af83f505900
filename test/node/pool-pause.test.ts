import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { PetriError } from '../../src/errors.ts';
import { Instance, ManualClock, Pool, type PoolLimits } from '../../src/node/index.ts';
import {
  FixedKeepAlive,
  NewFirst,
  type StartOptions,
  type StartPathPolicy,
} from '../../src/policy/index.ts';
import type { SandboxSpec } from '../../src/sandbox/index.ts';
import type { FunctionRecord } from '../../src/store/index.ts';
import { FakeDriver, type FakeSandbox } from '../helpers/fake-driver.ts';
import { fakeRecord, fakeSandboxSpec, flush } from '../helpers/pool-fixtures.ts';

// Paused instances and the start-path policy, on a ManualClock: the pause
// grace, keep-alive and evictions move only when the test advances time.

const LIMITS: PoolLimits = {
  memoryBudgetMb: 1024,
  maxInstancesPerFunction: 4,
  queueMaxSize: 10,
  queueMaxWaitMs: 30_000,
  pauseGraceMs: 50,
};

let ids = 0;
const record = fakeRecord;
const sandboxSpec = (fn: FunctionRecord): SandboxSpec =>
  fakeSandboxSpec(fn, `${fn.name}-1-${++ids}`);
interface Setup {
  limits?: PoolLimits;
  keepAliveMs?: number;
  freezable?: boolean;
  startPolicy?: StartPathPolicy;
}

function pausingPool(clock: ManualClock, setup: Setup = {}) {
  const driver = new FakeDriver(clock);
  driver.freezable = setup.freezable ?? true;
  const states: string[] = [];
  const pool: Pool = new Pool(
    setup.limits ?? LIMITS,
    new FixedKeepAlive(setup.keepAliveMs ?? 10_000),
    {
      startInstance: (fn) =>
        Instance.start(
          driver,
          fn,
          sandboxSpec(fn),
          {
            onState: (instance, state, details) => {
              states.push(details === undefined ? state : `${state} ${JSON.stringify(details)}`);
              if (state === 'dead') pool.forget(instance);
            },
            onLog: () => {},
          },
          10_000,
          clock,
        ),
    },
    clock,
    setup.startPolicy,
  );
  return { pool, driver, states };
}

async function invokeOnce(pool: Pool, fn: FunctionRecord, clock: ManualClock) {
  const acquiring = pool.acquire(pool.entry(fn.name)!);
  await flush();
  clock.advance(0); // a new fake sandbox says ready
  const slot = await acquiring;
  const running = slot.instance.invoke('id', { n: 1 });
  clock.advance(0);
  await flush();
  await running.finally(() => pool.release(slot.instance));
  return slot;
}

const sandboxOf = (driver: FakeDriver, instance: Instance) =>
  driver.created.find((s) => s.id === instance.id) as FakeSandbox;

describe('paused instances', () => {
  it('freezes an idle instance once the pause grace has passed, and thaws it for the next invocation', async () => {
    const clock = new ManualClock(1000);
    const { pool, driver, states } = pausingPool(clock);
    const fn = record();
    pool.setFunction(fn);
    const first = await invokeOnce(pool, fn, clock);
    const sandbox = sandboxOf(driver, first.instance);
    clock.advance(49);
    assert.equal(first.instance.state, 'idle');
    assert.equal(sandbox.frozen, false);
    const warm = await invokeOnce(pool, fn, clock);
    assert.equal(warm.startPath, 'warm');
    clock.advance(50);
    await flush();
    assert.equal(first.instance.state, 'paused');
    assert.equal(sandbox.frozen, true);
    assert.equal(pool.instanceCounts().paused, 1);
    assert.equal(pool.memoryInUseMb(), 128, 'a paused instance keeps its memory');
    const thawed = await invokeOnce(pool, fn, clock);
    assert.equal(thawed.startPath, 'paused');
    assert.equal(thawed.instance, first.instance);
    assert.equal(sandbox.frozen, false);
    assert.equal(sandbox.freezes, 1);
    assert.deepEqual(states.slice(-3), ['paused', 'busy {"startPath":"paused"}', 'idle']);
  });

  it('never pauses an instance its sandbox cannot freeze', async () => {
    const clock = new ManualClock();
    const { pool } = pausingPool(clock, { freezable: false });
    const fn = record();
    pool.setFunction(fn);
    const first = await invokeOnce(pool, fn, clock);
    clock.advance(5000);
    await flush();
    assert.equal(first.instance.state, 'idle');
    assert.equal((await invokeOnce(pool, fn, clock)).startPath, 'warm');
  });

  it('a thawed instance takes queued work once it is done', async () => {
    const clock = new ManualClock();
    const limits = { ...LIMITS, maxInstancesPerFunction: 1 };
    const { pool } = pausingPool(clock, { limits });
    const fn = record();
    pool.setFunction(fn);
    const first = await invokeOnce(pool, fn, clock);
    clock.advance(50);
    await flush();
    assert.equal(first.instance.state, 'paused');
    const slot = await pool.acquire(pool.entry('f')!);
    assert.equal(slot.startPath, 'paused');
    const queued = pool.acquire(pool.entry('f')!);
    assert.equal(pool.entry('f')!.queue.length, 1);
    pool.release(slot.instance);
    const next = await queued;
    assert.equal(next.startPath, 'warm');
    pool.release(next.instance);
  });

  it('stops a paused instance when its keep-alive ends', async () => {
    const clock = new ManualClock();
    const { pool, driver } = pausingPool(clock, { keepAliveMs: 1000 });
    const fn = record();
    pool.setFunction(fn);
    const first = await invokeOnce(pool, fn, clock);
    clock.advance(50);
    await flush();
    assert.equal(first.instance.state, 'paused');
    clock.advance(950);
    await flush();
    assert.equal(first.instance.state, 'dead');
    assert.equal(driver.live().length, 0);
  });

  it('evicts a paused instance when another function needs its memory', async () => {
    const clock = new ManualClock();
    const limits = { ...LIMITS, memoryBudgetMb: 256 };
    const { pool, driver } = pausingPool(clock, { limits });
    const a = record('a', { memoryMb: 256 });
    const b = record('b', { memoryMb: 128 });
    pool.setFunction(a);
    pool.setFunction(b);
    const first = await invokeOnce(pool, a, clock);
    clock.advance(50);
    await flush();
    assert.equal(first.instance.state, 'paused');
    const other = await invokeOnce(pool, b, clock);
    assert.equal(other.startPath, 'cold');
    await flush();
    assert.equal(first.instance.state, 'dead');
    assert.equal(sandboxOf(driver, first.instance).dead, true);
    assert.equal(pool.memoryInUseMb(), 128);
  });
});

describe('the start-path policy in the pool', () => {
  it('sees frozen views of the warm and paused instances, and its choice is followed', async () => {
    const clock = new ManualClock();
    const seen: StartOptions[] = [];
    const spy: StartPathPolicy = {
      name: 'spy',
      choose(options) {
        seen.push(options);
        const paused = options.paused[0];
        if (paused) return { path: 'paused', instanceId: paused.id };
        return options.belowCap ? { path: 'cold' } : { path: 'queue' };
      },
    };
    const { pool } = pausingPool(clock, { startPolicy: spy });
    const fn = record();
    pool.setFunction(fn);
    await invokeOnce(pool, fn, clock);
    // Idle but not yet paused: this policy starts a new instance instead of reusing it.
    const second = await invokeOnce(pool, fn, clock);
    assert.equal(second.startPath, 'cold');
    clock.advance(50);
    await flush();
    const third = await invokeOnce(pool, fn, clock);
    assert.equal(third.startPath, 'paused');
    const options = seen.at(-1)!;
    assert.ok(Object.isFrozen(options) && Object.isFrozen(options.paused));
    assert.equal(options.paused.length, 2);
    assert.ok(options.paused.every((view) => Object.isFrozen(view) && view.state === 'paused'));
    assert.equal(Object.getPrototypeOf(options.paused[0]), Object.prototype);
  });

  it('refuses a decision the node does not offer with Internal, naming the policy', async () => {
    const clock = new ManualClock();
    const liar: StartPathPolicy = {
      name: 'liar',
      choose: () => ({ path: 'warm', instanceId: 'made-up' }),
    };
    const { pool } = pausingPool(clock, { startPolicy: liar });
    pool.setFunction(record());
    await assert.rejects(
      pool.acquire(pool.entry('f')!),
      (err: PetriError) => err.code === 'Internal' && /liar.*made-up/.test(err.message),
    );
  });

  it('new-first starts instances up to the cap before reusing one', async () => {
    const clock = new ManualClock();
    const limits = { ...LIMITS, maxInstancesPerFunction: 2 };
    const { pool } = pausingPool(clock, { limits, startPolicy: new NewFirst() });
    const fn = record();
    pool.setFunction(fn);
    const paths = [];
    for (let i = 0; i < 3; i++) paths.push((await invokeOnce(pool, fn, clock)).startPath);
    assert.deepEqual(paths, ['cold', 'cold', 'warm']);
  });
});
