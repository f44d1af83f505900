import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type Clock, ConnectionGate, dispatch, preciseClock } from '../../src/workload/index.ts';

/**
 * A fake clock: time moves only when the dispatcher sleeps or yields. Sleeps
 * overshoot by `oversleepMs` (a slow timer), and each send costs `sendCostMs`.
 */
function fakeClock(
  oversleepMs: number,
  yieldMs = 0.05,
): Clock & { t: number; sleeps: number[]; yields: number } {
  const clock = {
    t: 1000,
    sleeps: [] as number[],
    yields: 0,
    now: () => clock.t,
    sleep: async (ms: number) => {
      clock.sleeps.push(ms);
      clock.t += ms + oversleepMs;
    },
    yieldToIo: async () => {
      clock.yields++;
      clock.t += yieldMs;
    },
  };
  return clock;
}

const close = (actual: number, expected: number, eps = 1e-9) =>
  assert.ok(Math.abs(actual - expected) <= eps, `${actual} ≠ ${expected}`);

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

  it('sleeps on timers and never polls by default', async () => {
    const clock = fakeClock(0);
    const atMs = Float64Array.from({ length: 500 }, (_, i) => i * 0.2);
    await dispatch(atMs, () => undefined, { clock, timerLatenessMs: 0 });
    assert.equal(clock.yields, 0);
    assert.ok(clock.sleeps.length > 0);
  });

  it('with spinBelowMs, sleeps short of the target and finishes with short yields', async () => {
    const clock = fakeClock(0);
    await dispatch(Float64Array.of(50), () => undefined, {
      clock,
      spinBelowMs: 0.3,
      timerLatenessMs: 0,
    });
    assert.deepEqual(clock.sleeps, [49.7]);
    assert.ok(clock.yields >= 1 && clock.yields <= 7, `yields ${clock.yields}`);
  });

  it('learns how late timers fire and arms them early (drift correction)', async () => {
    // Every timer fires 1 ms late; sends are 10 ms apart.
    const clock = fakeClock(1);
    const atMs = Float64Array.from({ length: 200 }, (_, i) => i * 10);
    const { sentMs, timerLatenessMs } = await dispatch(atMs, () => undefined, {
      clock,
      timerLatenessMs: 0,
    });
    const lateness = Array.from(sentMs, (t, i) => t - atMs[i]);
    close(lateness[1], 1);
    assert.ok(Math.max(...lateness.slice(100)) < 0.01, `late ${Math.max(...lateness.slice(100))}`);
    assert.ok(Math.abs(timerLatenessMs - 1) < 0.01);
  });

  it('does not accumulate drift when timers oversleep', async () => {
    // Every sleep overshoots by 5 ms (beyond what it corrects for); sends 20 ms apart.
    const clock = fakeClock(5);
    const atMs = Float64Array.from({ length: 200 }, (_, i) => i * 20);
    const { sentMs } = await dispatch(atMs, () => undefined, { clock });
    const lateness = Array.from(sentMs, (t, i) => t - atMs[i]);
    // Each send is at most one oversleep late, and the last is no later than the first.
    assert.ok(Math.max(...lateness) <= 5 + 1e-9, `max lateness ${Math.max(...lateness)}`);
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
    // It slept only before the stall (to reach sends 1 and 2), never after it.
    assert.ok(clock.sleeps.reduce((a, b) => a + b, 0) <= 2 + 1e-9, String(clock.sleeps));
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

describe('ConnectionGate', () => {
  it('lets requests through up to the limit, then queues them first in first out', () => {
    const left: number[] = [];
    const gate = new ConnectionGate(2, (i) => left.push(i));
    for (let i = 0; i < 5; i++) gate.submit(i);
    assert.deepEqual(left, [0, 1]);
    assert.equal(gate.queued, 3);
    gate.release();
    assert.deepEqual(left, [0, 1, 2]);
    gate.release();
    gate.release();
    assert.deepEqual(left, [0, 1, 2, 3, 4]);
    assert.equal(gate.delayed, 3);
    assert.equal(gate.maxWaiting, 3);
    // Connections free again: the next one leaves at once.
    gate.release();
    gate.release();
    gate.submit(5);
    assert.deepEqual(left.at(-1), 5);
    assert.equal(gate.delayed, 3);
  });
});

describe('dispatch with a wake-up quantum', () => {
  it('wakes at most once per quantum and sends what fell due in one batch', async () => {
    const clock = fakeClock(0);
    const atMs = Float64Array.from({ length: 100 }, (_, i) => i * 0.2);
    const { sentMs } = await dispatch(atMs, () => undefined, {
      clock,
      quantumMs: 1,
      timerLatenessMs: 0,
    });
    // 20 ms of schedule: about one sleep per ms, not one per 0.2 ms gap.
    assert.ok(clock.sleeps.length <= 21, `${clock.sleeps.length} sleeps`);
    sentMs.forEach((t, i) => assert.ok(t - atMs[i] >= 0 && t - atMs[i] <= 1 + 1e-9));
  });
});

describe('preciseClock', () => {
  it('ends a sleep at or after its deadline, lets a newer sleep replace an older one, and closes', async () => {
    const clock = preciseClock();
    try {
      for (const ms of [0.2, 0.5, 3]) {
        const start = clock.now();
        await clock.sleep(ms);
        const slept = clock.now() - start;
        assert.ok(slept >= ms - 0.02, `slept ${slept} ms of ${ms}`);
      }
      // A second sleep before the first ended: the first resolves at once, the second on time.
      const start = clock.now();
      const first = clock.sleep(50);
      await clock.sleep(1);
      await first;
      assert.ok(clock.now() - start < 40, 'the replaced sleep did not wait its 50 ms');
    } finally {
      await clock.close();
    }
  });
});
