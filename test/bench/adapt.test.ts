import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { settleTime, throughput, type Result } from '../../src/bench/net/adapt.ts';

/** A run of 100 ms buckets: `before` req/s until `stepMs`, halfway for `rampMs`, then `after`. */
function run(before: number, after: number, stepMs: number, rampMs: number, endMs: number): Result {
  const buckets = [];
  for (let t = 0; t < endMs; t += 100) {
    const level = t < stepMs ? before : t < stepMs + rampMs ? (before + after) / 2 : after;
    buckets.push({ ok: level / 10, shed: 0, failed: 0 });
  }
  return { event: 'result', t: endMs, bucketMs: 100, sent: 0, mark: stepMs, buckets, firstOk: {} };
}

const RULE = { band: 0.05, holdMs: 2000 };
const EMPTY = { ok: 0, shed: 0, failed: 0 };

describe('bench net --f2f --adapt analysis', () => {
  it('measures throughput over whole buckets, clamped at the run’s start', () => {
    const result = run(200, 300, 5000, 0, 10_000);
    assert.equal(throughput(result, 0, 5000), 200);
    assert.equal(throughput(result, 5000, 10_000), 300);
    assert.equal(throughput(result, -5000, 5000), 200);
  });

  it('settles at the end of the first 1 s window that stays in the band for the hold', () => {
    // Halfway (250) for 2 s after the mark, then 300: a window is in the band (285..315) once at
    // most 30 % of it is at 250, so the first one starts 1.7 s after the mark and ends 2.7 s after.
    assert.equal(settleTime(run(200, 300, 5000, 2000, 15_000), 15_000, RULE), 2700);
    // A step with no ramp: the first window after the mark is already at the final level.
    assert.equal(settleTime(run(200, 300, 5000, 0, 15_000), 15_000, RULE), 1000);
  });

  it('starts again after a dip inside the hold, not after one later', () => {
    const dipInHold = run(200, 300, 5000, 0, 15_000);
    // An empty bucket at 6.5 s puts the windows starting 5.6..6.5 s out of the band (270 req/s).
    dipInHold.buckets[65] = EMPTY;
    assert.equal(settleTime(dipInHold, 15_000, RULE), 2600);
    const dipLater = run(200, 300, 5000, 0, 15_000);
    dipLater.buckets[130] = EMPTY;
    assert.equal(settleTime(dipLater, 15_000, RULE), 1000);
    // A run whose final level is zero never settles.
    assert.equal(settleTime(run(200, 0, 5000, 0, 15_000), 15_000, RULE), null);
  });
});
