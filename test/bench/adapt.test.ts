import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { settleTime, throughput, type Result } from '../../src/bench/net/adapt.ts';

/** A run of 100 ms buckets: `before` req/s until `stepMs`, a ramp of `rampMs`, then `after`. */
function run(before: number, after: number, stepMs: number, rampMs: number, endMs: number): Result {
  const buckets = [];
  for (let t = 0; t < endMs; t += 100) {
    const level = t < stepMs ? before : t < stepMs + rampMs ? (before + after) / 2 : after;
    buckets.push({ ok: level / 10, shed: 0, failed: 0 });
  }
  return { event: 'result', t: endMs, bucketMs: 100, sent: 0, mark: stepMs, buckets, firstOk: {} };
}

describe('bench net --f2f --adapt analysis', () => {
  it('measures throughput over whole buckets, clamped at the run’s start', () => {
    const result = run(200, 300, 5000, 0, 10_000);
    assert.equal(throughput(result, 0, 5000), 200);
    assert.equal(throughput(result, 5000, 10_000), 300);
    assert.equal(throughput(result, -5000, 5000), 200);
  });

  it('settles when the 1 s rolling throughput stays within 5 % of the final level', () => {
    // Halfway (250) for 2 s after the mark, then 300: a window is in the band (285..315) once at
    // most 30 % of it is at 250, so the first one that stays starts 1.7 s after and ends 2.7 s after.
    assert.equal(settleTime(run(200, 300, 5000, 2000, 15_000), 15_000), 2700);
    // A step with no ramp: the first window after the mark is already at the final level.
    assert.equal(settleTime(run(200, 300, 5000, 0, 15_000), 15_000), 1000);
  });

  it('settles only after the last window that leaves the band', () => {
    const result = run(200, 300, 5000, 0, 15_000);
    // One empty bucket at 13.0 s: every window holding it (270 req/s) is out of the band, so
    // throughput settles only with the first window after it, 13.1..14.1 s, 9.1 s after the mark.
    result.buckets[130] = { ok: 0, shed: 0, failed: 0 };
    assert.equal(settleTime(result, 15_000), 9100);
    // A run whose final level is zero never settles.
    assert.equal(settleTime(run(200, 0, 5000, 0, 15_000), 15_000), null);
  });
});
