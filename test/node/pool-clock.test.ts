import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PetriError } from '../../src/errors.ts';
import { Instance, ManualClock, Pool, type PoolLimits } from '../../src/node/index.ts';
import {
  FixedKeepAlive,
  GreedyDualKeepAlive,
  HybridHistogramKeepAlive,
  type InstanceView,
  type KeepAlivePolicy,
  type NodeView,
  type PolicyEvent,
} from '../../src/policy/index.ts';
import type { SandboxSpec } from '../../src/sandbox/index.ts';
import type { FunctionRecord } from '../../src/store/index.ts';
import { FakeDriver } from '../helpers/fake-driver.ts';
import { fakeRecord, fakeSandboxSpec, flush } from '../helpers/pool-fixtures.ts';

// Every timer here (start, handler, timeout, queue wait, keep-alive) runs on a
// ManualClock: time moves only when the test advances it, never by sleeping.

const record = (spec: Record<string, unknown> = {}): FunctionRecord => fakeRecord('f', spec);
const sandboxSpec = (fn: FunctionRecord): SandboxSpec =>
  fakeSandboxSpec(fn, `f-1-${Math.random().toString(16).slice(2, 8)}`);

const LIMITS: PoolLimits = {
  memoryBudgetMb: 1024,
  maxInstancesPerFunction: 4,
  queueMaxSize: 10,
  queueMaxWaitMs: 30_000,
};

function timedPool(
  clock: ManualClock,
  policy: KeepAlivePolicy = new FixedKeepAlive(1000),
  limits = LIMITS,
) {
  const driver = new FakeDriver(clock);
  const pool: Pool = new Pool(
    limits,
    policy,
    {
      startInstance: (fn) =>
        Instance.start(
          driver,
          fn,
          sandboxSpec(fn),
          {
            onState: (instance, state) => {
              if (state === 'dead') pool.forget(instance);
            },
            onLog: () => {},
          },
          10_000,
          clock,
        ),
    },
    clock,
  );
  return { pool, driver };
}

async function invokeOnce(
  pool: Pool,
  fn: FunctionRecord,
  clock: ManualClock,
  event: unknown,
  runMs = 0,
) {
  const entry = pool.entry(fn.name)!;
  const acquiring = pool.acquire(entry);
  await flush();
  clock.advance(0); // the fake sandbox says ready
  const slot = await acquiring;
  const running = slot.instance.invoke('id', event);
  clock.advance(runMs);
  await running.finally(() => pool.release(slot.instance));
  return slot;
}

describe('pool on a manual clock', () => {
  it('keeps one keep-alive timer per instance however often it is used, and follows a shorter keep-alive at once', async () => {
    const clock = new ManualClock(0);
    let keepMs = 1000;
    const policy: KeepAlivePolicy = {
      name: 'changing',
      keepAliveMs: () => keepMs,
      victims: () => [],
    };
    const { pool } = timedPool(clock, policy);
    const fn = record();
    pool.setFunction(fn);
    const first = await invokeOnce(pool, fn, clock, { n: 0 });
    const timers = clock.pending();
    for (let n = 1; n <= 20; n++) {
      clock.advance(100);
      const slot = await invokeOnce(pool, fn, clock, { n });
      assert.equal(slot.instance, first.instance);
      // The idle instance's timer is the one set first (lazy expiry), not one per use.
      assert.equal(clock.pending(), timers, `after use ${n}`);
    }
    // Still alive 999 ms after its last use, although its first timer was due long ago.
    clock.advance(999);
    assert.equal(first.instance.state, 'idle');
    clock.advance(1);
    await flush();
    assert.equal(first.instance.state, 'dead');

    // A keep-alive shorter than the pending timer's due time takes effect at its own time.
    const again = await invokeOnce(pool, fn, clock, { n: 21 });
    keepMs = 5000;
    clock.advance(10);
    await invokeOnce(pool, fn, clock, { n: 22 });
    keepMs = 50;
    clock.advance(10);
    await invokeOnce(pool, fn, clock, { n: 23 });
    clock.advance(49);
    assert.equal(again.instance.state, 'idle');
    clock.advance(1);
    await flush();
    assert.equal(again.instance.state, 'dead');
    assert.equal(clock.pending(), 0);
  });

  it('keeps an idle instance exactly as long as the keep-alive policy says', async () => {
    const clock = new ManualClock(1_000_000);
    const { pool, driver } = timedPool(clock);
    const fn = record();
    pool.setFunction(fn);
    const first = await invokeOnce(pool, fn, clock, { n: 1 });
    assert.equal(first.startPath, 'cold');
    assert.equal(first.dispatchedAt, 1_000_000);
    clock.advance(999);
    const second = await invokeOnce(pool, fn, clock, { n: 2 });
    assert.equal(second.startPath, 'warm');
    assert.equal(second.instance, first.instance);
    clock.advance(999);
    assert.equal(first.instance.state, 'idle');
    clock.advance(1);
    await flush();
    assert.equal(first.instance.state, 'dead');
    assert.equal(driver.live().length, 0);
    assert.equal(clock.pending(), 0);
  });

  it('fails a queued invocation with QueueTimeout once its wait has passed', async () => {
    const clock = new ManualClock();
    const { pool } = timedPool(clock, new FixedKeepAlive(1000), {
      ...LIMITS,
      maxInstancesPerFunction: 1,
      queueMaxWaitMs: 100,
    });
    const fn = record();
    pool.setFunction(fn);
    const entry = pool.entry('f')!;
    const acquiring = pool.acquire(entry);
    await flush();
    clock.advance(0);
    const slot = await acquiring;
    const running = slot.instance.invoke('long', { sleepMs: 5000 });
    const queued = pool.acquire(entry);
    clock.advance(99);
    assert.equal(entry.queue.length, 1);
    clock.advance(1);
    await assert.rejects(queued, (err: PetriError) => err.code === 'QueueTimeout');
    assert.equal(entry.queue.length, 0);
    clock.advance(4900);
    assert.deepEqual(await running, { sleepMs: 5000 });
    pool.release(slot.instance);
  });

  it('times an invocation out on the clock and stops the instance', async () => {
    const clock = new ManualClock();
    const { pool, driver } = timedPool(clock);
    const fn = record({ timeoutMs: 50 });
    pool.setFunction(fn);
    const entry = pool.entry('f')!;
    const acquiring = pool.acquire(entry);
    await flush();
    clock.advance(0);
    const slot = await acquiring;
    const running = slot.instance.invoke('slow', { sleepMs: 1000 });
    clock.advance(50);
    await assert.rejects(running, (err: PetriError) => err.code === 'Timeout');
    pool.release(slot.instance);
    await flush();
    assert.equal(driver.live().length, 0);
  });

  it('hands policies frozen plain views, never live instances', async () => {
    const clock = new ManualClock(5000);
    const seen: { instance: InstanceView; node: NodeView }[] = [];
    const policy: KeepAlivePolicy = {
      name: 'spy',
      keepAliveMs(instance, node) {
        seen.push({ instance, node });
        return 10;
      },
      victims: () => [],
    };
    const { pool } = timedPool(clock, policy);
    const fn = record();
    pool.setFunction(fn);
    await invokeOnce(pool, fn, clock, {}, 7);
    assert.equal(seen.length, 1);
    const { instance, node } = seen[0];
    assert.ok(Object.isFrozen(instance));
    assert.equal(Object.getPrototypeOf(instance), Object.prototype);
    assert.equal((instance as unknown as Record<string, unknown>).stop, undefined);
    assert.equal(instance.state, 'idle');
    assert.equal(instance.lastUsedAt, 5007);
    assert.equal(node.now, 5007);
    assert.ok(node.instances.every((view) => Object.isFrozen(view)));
    assert.throws(() => {
      (instance as { state: string }).state = 'busy';
    }, TypeError);
  });
});

describe('an exchange tracked on an instance (function URLs of http functions)', () => {
  async function tracked(clock: ManualClock, spec: Record<string, unknown> = {}) {
    const { pool, driver } = timedPool(clock);
    const fn = record({ timeoutMs: 1000, ...spec });
    pool.setFunction(fn);
    const entry = pool.entry(fn.name)!;
    const acquiring = pool.acquire(entry);
    await flush();
    clock.advance(0);
    const slot = await acquiring;
    return { slot, driver, pool };
  }

  it('times out like an invocation: the signal aborts and the instance is stopped', async () => {
    const clock = new ManualClock();
    const { slot, driver } = await tracked(clock);
    let aborted = false;
    const running = slot.instance.track('x', (signal) => {
      signal.addEventListener('abort', () => (aborted = true));
      return new Promise(() => {});
    });
    clock.advance(1000);
    await assert.rejects(running, (err: PetriError) => err.code === 'Timeout');
    assert.ok(aborted);
    await flush();
    assert.equal(driver.live().length, 0);
  });

  it("ends with the instance's exit, even when the connection failed first", async () => {
    const clock = new ManualClock();
    const { slot, driver } = await tracked(clock);
    const running = slot.instance.track('x', async () => {
      throw new PetriError('HandlerError', 'socket hang up');
    });
    await flush();
    driver.live()[0].die({ code: 3, signal: null, oomKilled: false, stderrTail: '' });
    await assert.rejects(running, (err: PetriError) => err.code === 'InstanceCrashed');
  });

  it('reports a failed connection as it is when the instance lives on', async () => {
    const clock = new ManualClock();
    const { slot } = await tracked(clock, { timeoutMs: 5000 });
    const running = slot.instance.track('x', async () => {
      throw new PetriError('HandlerError', 'socket hang up');
    });
    await flush();
    clock.advance(1000); // the exit grace, well within the timeout
    await assert.rejects(running, (err: PetriError) => err.code === 'HandlerError');
  });

  it('resolves with what the exchange returned', async () => {
    const clock = new ManualClock();
    const { slot } = await tracked(clock);
    assert.equal(await slot.instance.track('x', async () => 201), 201);
  });
});

describe('pool and keep-alive policies on a manual clock', () => {
  it('keeps an instance without a timer when the policy says Infinity, until room is needed', async () => {
    const clock = new ManualClock();
    const { pool } = timedPool(clock, new GreedyDualKeepAlive(), {
      ...LIMITS,
      memoryBudgetMb: 128,
    });
    const f = record();
    const g = { ...record(), name: 'g' };
    pool.setFunction(f);
    pool.setFunction(g);
    const first = await invokeOnce(pool, f, clock, {});
    clock.advance(24 * 3600_000);
    assert.equal(first.instance.state, 'idle');
    assert.equal(clock.pending(), 0);
    const other = await invokeOnce(pool, g, clock, {});
    assert.equal(other.startPath, 'cold');
    assert.equal(first.instance.state, 'dead', 'evicted to make room');
  });

  it('tells the policy of arrivals, start times and finishes, on the clock', async () => {
    const clock = new ManualClock(100);
    const events: PolicyEvent[] = [];
    const policy: KeepAlivePolicy = {
      ...new FixedKeepAlive(1000),
      name: 'spy',
      keepAliveMs: () => 1000,
      victims: () => [],
      observe: (event) => events.push(event),
    };
    const { pool, driver } = timedPool(clock, policy);
    driver.startDelayMs = 40;
    const fn = record();
    pool.setFunction(fn);
    const entry = pool.entry('f')!;
    const acquiring = pool.acquire(entry);
    await flush();
    clock.advance(40);
    const slot = await acquiring;
    const running = slot.instance.invoke('id', { sleepMs: 10 });
    clock.advance(10);
    await running;
    pool.release(slot.instance);
    assert.deepEqual(
      events.map((e) => [e.kind, e.at, e.kind === 'started' ? e.startMs : undefined]),
      [
        ['arrival', 100, undefined],
        ['started', 140, 40],
        ['finished', 150, undefined],
      ],
    );
  });

  it('carries out a pre-warm decision at its time, and counts the hit', async () => {
    const clock = new ManualClock();
    const policy = new HybridHistogramKeepAlive({ fallbackMs: 1000, binMs: 100, minSamples: 3 });
    const { pool, driver } = timedPool(clock, policy);
    const fn = record();
    pool.setFunction(fn);
    // Idle times of 550 ms (bin 5): pre-warm at 450 ms after each end, keep until 660 ms.
    // (Starts ahead take 1 ms, so the fake sandbox's ready comes after its listener is set.)
    const idle = async (): Promise<void> => {
      for (const step of [0, 450, 1, 99]) {
        clock.advance(step);
        await flush();
      }
    };
    for (let k = 0; k < 4; k++) {
      await invokeOnce(pool, fn, clock, {});
      driver.startDelayMs = 1;
      await idle();
    }
    assert.equal(policy.windowsOf('f', undefined).mode, 'histogram');
    const last = await invokeOnce(pool, fn, clock, {});
    clock.advance(0); // a keep-alive of 0
    await flush();
    assert.equal(last.instance.state, 'dead', 'unloaded at once');
    clock.advance(449);
    await flush();
    assert.equal(driver.live().length, 0);
    clock.advance(1);
    await flush();
    clock.advance(1); // the started instance says ready
    await flush();
    assert.equal(driver.live().length, 1);
    assert.equal(pool.prewarmStats().started >= 1, true);
    const hitsBefore = pool.prewarmStats().hits;
    clock.advance(99);
    const served = await invokeOnce(pool, fn, clock, {});
    assert.equal(served.startPath, 'warm');
    assert.equal(served.instance.invocations, 1, 'served by the instance started ahead');
    assert.equal(pool.prewarmStats().hits, hitsBefore + 1);
  });

  it('starts ahead only within the cap and the memory budget, never evicting busy instances', async () => {
    const clock = new ManualClock();
    const { pool, driver } = timedPool(clock, new FixedKeepAlive(1000), {
      ...LIMITS,
      memoryBudgetMb: 256,
      maxInstancesPerFunction: 2,
    });
    const fn = record();
    pool.setFunction(fn);
    assert.equal(pool.startAhead('missing'), false);
    assert.equal(pool.startAhead('f'), true);
    assert.equal(pool.startAhead('f'), true);
    assert.equal(pool.startAhead('f'), false, 'cap of 2');
    await flush();
    clock.advance(0);
    await flush();
    assert.equal(driver.live().length, 2);
    const big = { ...record({ memoryMb: 256 }), name: 'big' };
    pool.setFunction(big);
    const entry = pool.entry('f')!;
    const acquiring = pool.acquire(entry);
    const slot = await acquiring;
    const running = slot.instance.invoke('id', { sleepMs: 10 });
    assert.equal(pool.startAhead('big'), false, 'the busy instance is not evicted');
    clock.advance(10);
    await running;
    pool.release(slot.instance);
  });
});
