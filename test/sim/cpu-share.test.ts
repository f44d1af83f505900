import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '../../src/node/index.ts';
import { CpuShare, simulate } from '../../src/sim/index.ts';
import type { Trace } from '../../src/workload/index.ts';
import { flatFunction } from '../workload/helpers.ts';

describe('CpuShare', () => {
  it('runs alone at full speed and shares the cores among more invocations than cores', () => {
    const clock = new ManualClock(0);
    const share = new CpuShare(clock, 2);
    const done: [string, number][] = [];
    share.run(100, () => done.push(['a', clock.now()]));
    clock.advance(50);
    // Two running on two cores: no slowdown.
    share.run(100, () => done.push(['b', clock.now()]));
    clock.advance(25);
    // Three on two cores: each at 2/3 until one ends. a has 25 left: 37.5 ms at 2/3.
    share.run(10, () => done.push(['c', clock.now()]));
    clock.advance(1000);
    assert.equal(done.length, 3);
    const at = Object.fromEntries(done);
    // c: 10 ms at 2/3 → 15 ms, done at 90; a: 25 left at 75, 10 served by 90, 15 at full speed → 105.
    assert.ok(Math.abs(at.c - 90) < 1e-6, `c at ${at.c}`);
    assert.ok(Math.abs(at.a - 105) < 1e-6, `a at ${at.a}`);
    // b: 25 by 75, 10 more by 90, 15 more by 105, 50 left alone → 155.
    assert.ok(Math.abs(at.b - 155) < 1e-6, `b at ${at.b}`);
    assert.equal(share.running, 0);
    assert.equal(clock.pending(), 0, 'no timer left');
  });

  it('refuses a core count that is not positive', () => {
    assert.throws(() => new CpuShare(new ManualClock(0), 0), RangeError);
  });

  it('makes a simulated invocation take longer when others run with it (and is deterministic)', async () => {
    // One function invoked often with long runs, on one shared core.
    const trace: Trace = { minutes: 2, functions: [flatFunction(0, [240, 240], 200)] };
    const options = {
      policies: ['fixed'] as const,
      memoryBudgetMb: 1_000_000,
      minutes: 2,
      seed: 1,
      startMs: () => 50,
      maxInstancesPerFunction: 1000,
    };
    const [alone] = await simulate(trace, options);
    const shared = async () =>
      (
        await simulate(trace, {
          ...options,
          cpu: { cores: 1, demandMs: (_f, requested) => requested },
        })
      )[0];
    const [a, b] = [await shared(), await shared()];
    assert.equal(a.coldStarts, b.coldStarts, 'same figures for the same seed');
    assert.deepEqual([...a.data.doneMs], [...b.data.doneMs]);
    const mean = (d: Float64Array) => d.reduce((s, x) => s + x, 0) / d.length;
    // 4 arrivals/s × 200 ms keep one core 80 % busy: runs overlap and stretch, and more instances start.
    assert.ok(mean(a.data.actualDurationMs) > 1.5 * mean(alone.data.actualDurationMs));
    assert.ok(a.coldStarts > alone.coldStarts);
  });
});
