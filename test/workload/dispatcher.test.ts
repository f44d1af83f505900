import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type Clock, dispatch } from '../../src/workload/index.ts';

/**
 * A fake clock: time moves only when the dispatcher sleeps or yields. Sleeps
 * overshoot by `oversleepMs` (a slow timer), and each send costs `sendCostMs`.
 */
function fakeClock(oversleepMs: number, yieldMs = 0.05): Clock & { t: number; sleeps: number[] } {
  const clock = {
    t: 1000,
    sleeps: [] as number[],
    now: () => clock.t,
    sleep: async (ms: number) => {
      clock.sleeps.push(ms);
      clock.t += ms + oversleepMs;
    },
    yieldToIo: async () => {
      clock.t += yieldMs;
    },
  };
  return clock;
}

describe('dispatch', () => {
  it('sends each invocation at its time on an exact clock', async () => {
    const clock = fakeClock(0);
    const atMs = Float64Array.of(0, 10, 10, 25, 100);
    const sent: [number, number][] = [];
    const { sentMs } = await dispatch(atMs, (i) => sent.push([i, clock.t - 1000]), { clock });
    assert.deepEqual(
      sent.map(([i]) => i),
      [0, 1, 2, 3, 4],
    );
    sentMs.forEach((t, i) =>
      assert.ok(t - atMs[i] >= 0 && t - atMs[i] < 0.1, `lateness ${t - atMs[i]}`),
    );
  });

  it('sleeps short of the target and finishes with short yields', async () => {
    const clock = fakeClock(0);
    await dispatch(Float64Array.of(50), () => undefined, { clock, spinBelowMs: 2 });
    assert.deepEqual(clock.sleeps, [48]);
  });

  it('does not accumulate drift when timers oversleep', async () => {
    // Every sleep overshoots by 5 ms; sends are 20 ms apart for 200 sends.
    const clock = fakeClock(5);
    const atMs = Float64Array.from({ length: 200 }, (_, i) => i * 20);
    const { sentMs } = await dispatch(atMs, () => undefined, { clock, spinBelowMs: 2 });
    const lateness = Array.from(sentMs, (t, i) => t - atMs[i]);
    // Each send is at most one oversleep late, and the last is no later than the first.
    assert.ok(Math.max(...lateness) <= 5 - 2 + 1e-9, `max lateness ${Math.max(...lateness)}`);
    assert.ok(lateness[199] <= lateness[1] + 1e-9);
  });

  it('sends overdue invocations at once, without waiting, after a stall', async () => {
    const clock = fakeClock(0);
    const atMs = Float64Array.from({ length: 10 }, (_, i) => i);
    let stalled = false;
    const { sentMs } = await dispatch(
      atMs,
      (i) => {
        // The third send blocks the loop for 50 ms (a GC pause, say).
        if (i === 2 && !stalled) {
          stalled = true;
          clock.t += 50;
        }
      },
      { clock },
    );
    // All overdue sends go out in the same burst, right after the 50 ms stall.
    const burst = Array.from(sentMs.subarray(3));
    assert.ok(
      burst.every((t) => t === burst[0] && t >= 52 && t < 52.2),
      String(burst),
    );
    assert.deepEqual(clock.sleeps, []);
  });

  it('never waits for responses (open loop)', async () => {
    const clock = fakeClock(0);
    const pending: Promise<void>[] = [];
    const atMs = Float64Array.from({ length: 100 }, (_, i) => i * 0.5);
    const { sentMs } = await dispatch(atMs, () => pending.push(new Promise(() => undefined)), {
      clock,
    });
    assert.equal(sentMs.length, 100);
    assert.equal(pending.length, 100);
  });
});
