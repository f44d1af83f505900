/**
 * The autoscale driver over a real Pool, the FakeDriver and a ManualClock:
 * sampling, deciding and scaling move only when the test advances time.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { parseConfig } from '../../src/config.ts';
import { AutoscaleDriver, autoscaleSettings } from '../../src/node/autoscaler.ts';
import { Instance, ManualClock, Pool, type Slot } from '../../src/node/index.ts';
import { FixedKeepAlive } from '../../src/policy/index.ts';
import type { SandboxSpec } from '../../src/sandbox/index.ts';
import { parseSpec } from '../../src/spec/index.ts';
import { Store, type AutoscaleDecisionRecord, type FunctionRecord } from '../../src/store/index.ts';
import { FakeDriver } from '../helpers/fake-driver.ts';
import { fakeRecord, fakeSandboxSpec, flush } from '../helpers/pool-fixtures.ts';

let ids = 0;
const record = fakeRecord;
const sandboxSpec = (fn: FunctionRecord): SandboxSpec => fakeSandboxSpec(fn, `${fn.name}-${ids++}`);
/** A pool, its driver and an autoscale driver recording into `decisions`, all on `clock`. */
function scaledPool(clock: ManualClock, nodeAutoscaling: Record<string, unknown> = {}) {
  const driver = new FakeDriver(clock);
  // A start takes a moment, so its ready timer is never due inside the advance that began it.
  driver.startDelayMs = 10;
  const pool: Pool = new Pool(
    {
      memoryBudgetMb: 4096,
      maxInstancesPerFunction: 16,
      queueMaxSize: 100,
      queueMaxWaitMs: 60_000,
    },
    new FixedKeepAlive(600_000),
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
  const config = parseConfig({ autoscaling: { tickMs: 1000, sampleMs: 250, ...nodeAutoscaling } });
  const decisions: AutoscaleDecisionRecord[] = [];
  const scaler = new AutoscaleDriver({
    pool,
    clock,
    config: config.autoscaling,
    record: (rows) => decisions.push(...rows),
  });
  return { pool, driver, scaler, decisions, config };
}

/** Advances in small steps, letting instance starts and replies settle between them. */
async function advance(clock: ManualClock, ms: number, step = 50): Promise<void> {
  for (let t = 0; t < ms; t += step) {
    clock.advance(Math.min(step, ms - t));
    await flush();
  }
}

const FAST = {
  policy: 'concurrency',
  stableWindowMs: 10_000,
  panicWindowMs: 2_000,
  scaleToZeroGraceMs: 4_000,
};

describe('autoscale driver', () => {
  it('scales a burst up in panic, queues instead of cold-starting past one, and scales to zero', async () => {
    const clock = new ManualClock(0);
    const { pool, scaler, decisions, driver } = scaledPool(clock);
    pool.setFunction(record('f', { autoscaling: FAST }));
    scaler.start();
    await advance(clock, 250);
    const entry = pool.entry('f')!;
    assert.equal(entry.demandStartLimit, 1);

    const runs: Promise<unknown>[] = [];
    const slots: Slot[] = [];
    for (let i = 0; i < 6; i++) {
      runs.push(
        pool.acquire(entry).then(async (slot) => {
          slots.push(slot);
          await slot.instance.invoke(`i${i}`, { sleepMs: 20_000 });
          pool.release(slot.instance);
        }),
      );
    }
    await flush();
    await advance(clock, 100);
    assert.equal(pool.liveInstances('f'), 1, 'an arrival cold-starts only from zero');
    assert.equal(entry.queue.length, 5);

    await advance(clock, 1000);
    const burst = decisions.find((d) => d.panic)!;
    assert.ok(burst, 'six in flight on one instance is over 200 %');
    assert.equal(burst.desired, Math.ceil(6 / 0.7));
    assert.equal(burst.observedPanic, 6, 'the one waiting on its cold start counts too');
    assert.equal(pool.liveInstances('f'), 9);
    await advance(clock, 100);
    assert.equal(entry.queue.length, 0, 'the scaler’s instances took the queue');
    assert.equal(slots.filter((s) => s.startPath === 'cold').length, 1);

    await advance(clock, 20_000);
    await Promise.all(runs);
    await advance(clock, 40_000, 250);
    const last = decisions.filter((d) => d.functionName === 'f').at(-1)!;
    assert.equal(last.desired, 0);
    assert.equal(last.panic, false);
    assert.equal(pool.liveInstances('f'), 0);
    assert.equal(driver.live().length, 0, 'every instance was stopped');
    // Down by at most half per decision after panic.
    const afterPanic = decisions.filter((d) => !d.panic && d.at > burst.at);
    for (let i = 1; i < afterPanic.length; i++)
      assert.ok(afterPanic[i].desired >= Math.floor(afterPanic[i - 1].desired / 2));
    scaler.stop();
    assert.equal(clock.pending(), 0, 'no autoscale timers left after stop');
  });

  it('leaves on-demand functions to the pool and records nothing for them', async () => {
    const clock = new ManualClock(0);
    const { pool, scaler, decisions } = scaledPool(clock);
    pool.setFunction(record('plain'));
    scaler.start();
    await advance(clock, 3000);
    assert.equal(pool.entry('plain')!.demandStartLimit, undefined);
    assert.equal(decisions.length, 0);
    assert.equal(scaler.decisions().size, 0);
    scaler.stop();
  });

  it('follows the node default policy and a redeploy that changes it', async () => {
    const clock = new ManualClock(0);
    const { pool, scaler, decisions } = scaledPool(clock, { policy: 'rps', rpsTarget: 5 });
    pool.setFunction(record('g'));
    scaler.start();
    await advance(clock, 2000);
    assert.equal(decisions.at(-1)!.policy, 'rps');
    pool.setFunction({ ...record('g', { autoscaling: { policy: 'on-demand' } }), version: 2 });
    await advance(clock, 2000);
    const count = decisions.length;
    await advance(clock, 2000);
    assert.equal(decisions.length, count, 'on-demand again: no more decisions');
    assert.equal(pool.entry('g')!.demandStartLimit, undefined);
    scaler.stop();
  });
});

describe('autoscale settings', () => {
  const node = parseConfig({}).autoscaling;
  it('takes the spec over the node defaults; concurrency targets the function’s concurrency', () => {
    const s = autoscaleSettings(
      parseSpec({
        name: 'a',
        runtime: 'node',
        concurrency: 4,
        autoscaling: { policy: 'concurrency' },
      }),
      node,
    );
    assert.deepEqual(s, {
      policy: 'concurrency',
      target: 4,
      targetUtilization: 0.7,
      stableWindowMs: 60_000,
      panicWindowMs: 6_000,
      panicThreshold: 2,
      scaleToZeroGraceMs: 30_000,
      maxScaleUpRate: 1000,
      maxScaleDownRate: 2,
    });
    const rps = autoscaleSettings(
      parseSpec({
        name: 'a',
        runtime: 'node',
        autoscaling: { policy: 'rps', stableWindowMs: 3000 },
      }),
      node,
    );
    assert.equal(rps.target, 200);
    assert.equal(rps.panicWindowMs, 3000, 'a panic window is at most the stable window');
  });
});

describe('autoscale decisions in the store', () => {
  it('keeps only the newest decisions', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'petri-autoscale-'));
    const store = Store.open(path.join(dir, 'petri.db'));
    try {
      const row = (at: number): AutoscaleDecisionRecord => ({
        functionName: at % 2 ? 'odd' : 'even',
        policy: 'concurrency',
        at,
        observedStable: 1.5,
        observedPanic: 3,
        desired: 3,
        actual: 1,
        panic: at % 3 === 0,
      });
      for (let round = 0; round < 25; round++)
        store.recordAutoscaleDecisions(
          Array.from({ length: 10 }, (_, i) => row(round * 10 + i)),
          100,
        );
      const all = store.listAutoscaleDecisions({ limit: 1000 });
      assert.equal(all.length, 100);
      assert.equal(all[0].at, 249);
      assert.equal(all.at(-1)!.at, 150);
      assert.deepEqual(
        store.listAutoscaleDecisions({ functionName: 'even', limit: 1 })[0],
        row(248),
      );
      assert.equal(store.listAutoscaleDecisions({ limit: 1000, since: 240 }).length, 10);
    } finally {
      store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('autoscaling in the spec and the node config', () => {
  const spec = (autoscaling: unknown) => ({ name: 'a', runtime: 'node', autoscaling });
  it('accepts each policy and rejects unknown fields, bad values and on-demand parameters', () => {
    for (const policy of ['on-demand', 'concurrency', 'rps'])
      assert.equal(parseSpec(spec({ policy })).autoscaling?.policy, policy);
    const refused = [
      { policy: 'hpa' },
      { policy: 'rps', burst: 3 },
      { policy: 'rps', target: 0 },
      { policy: 'concurrency', targetUtilization: 1.5 },
      { policy: 'concurrency', stableWindowMs: 10_000, panicWindowMs: 20_000 },
      { policy: 'on-demand', target: 5 },
      { policy: 'rps', maxScaleDownRate: 1 },
    ];
    for (const autoscaling of refused)
      assert.throws(
        () => parseSpec(spec(autoscaling)),
        (err: { code?: string }) => err.code === 'InvalidSpec',
        JSON.stringify(autoscaling),
      );
  });

  it('has Knative’s defaults in the node config and refuses a panic window over the stable one', () => {
    const a = parseConfig({}).autoscaling;
    assert.equal(a.policy, 'on-demand');
    assert.equal(a.stableWindowMs, 60_000);
    assert.equal(a.panicWindowMs, 6_000);
    assert.equal(a.panicThreshold, 2);
    assert.equal(a.targetUtilization, 0.7);
    assert.throws(
      () => parseConfig({ autoscaling: { stableWindowMs: 5000 } }),
      (err: { code?: string }) => err.code === 'InvalidConfig',
    );
    assert.throws(
      () => parseConfig({ autoscaling: { policy: 'kpa' } }),
      (err: { code?: string }) => err.code === 'InvalidConfig',
    );
  });
});
