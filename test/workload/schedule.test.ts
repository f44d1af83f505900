import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { buildSchedule } from '../../src/workload/index.ts';
import type { Trace } from '../../src/workload/index.ts';
import { flatFunction } from './helpers.ts';

const trace: Trace = {
  minutes: 3,
  functions: [flatFunction(0, [5, 0, 7]), flatFunction(1, [1, 2, 3]), flatFunction(2, [0, 0, 1])],
};

function countsPerMinute(
  atMs: Float64Array,
  fn: Int32Array,
  f: number,
  minutes: number,
  minuteMs: number,
): number[] {
  const counts = new Array<number>(minutes).fill(0);
  atMs.forEach((t, i) => {
    if (fn[i] === f) counts[Math.floor(t / minuteMs)]++;
  });
  return counts;
}

describe('buildSchedule', () => {
  for (const iat of ['exponential', 'uniform', 'equidistant'] as const)
    it(`keeps every function's per-minute count exactly (${iat})`, () => {
      const s = buildSchedule(trace, { minutes: 3, warmupMinutes: 0, iat, seed: 1 });
      for (let f = 0; f < trace.functions.length; f++)
        assert.deepEqual(
          countsPerMinute(s.atMs, s.fn, f, 3, 60_000),
          Array.from(trace.functions[f].counts),
        );
      for (let i = 1; i < s.atMs.length; i++)
        assert.ok(s.atMs[i] >= s.atMs[i - 1], 'sorted by time');
    });

  it('spaces equidistant sends evenly inside the minute', () => {
    const s = buildSchedule(
      { minutes: 1, functions: [flatFunction(0, [3])] },
      { minutes: 1, warmupMinutes: 0, iat: 'equidistant', seed: 1 },
    );
    assert.deepEqual(Array.from(s.atMs), [15_000, 30_000, 45_000]);
  });

  it('marks warm-up minutes and replays the trace from its start, wrapping around', () => {
    const s = buildSchedule(trace, {
      minutes: 3,
      warmupMinutes: 1,
      iat: 'exponential',
      seed: 1,
      minuteMs: 1000,
    });
    // Trace minutes 0, 1, 2 hold 6, 2 and 11 invocations; warm-up is minute 0, then 1, 2, 0.
    assert.deepEqual(Array.from(s.perMinute), [6, 2, 11, 6]);
    assert.equal(
      s.warmup.reduce((a, b) => a + b, 0),
      6,
    );
    assert.ok(s.atMs.every((t, i) => (s.warmup[i] === 1) === t < 1000));
  });

  it('is deterministic for a seed', () => {
    const a = buildSchedule(trace, { minutes: 3, warmupMinutes: 0, iat: 'exponential', seed: 9 });
    const b = buildSchedule(trace, { minutes: 3, warmupMinutes: 0, iat: 'exponential', seed: 9 });
    const c = buildSchedule(trace, { minutes: 3, warmupMinutes: 0, iat: 'exponential', seed: 10 });
    assert.deepEqual(a.atMs, b.atMs);
    assert.deepEqual(a.durationMs, b.durationMs);
    assert.notDeepEqual(a.atMs, c.atMs);
  });

  it('draws exponential gaps (Kolmogorov–Smirnov at α = 0.01)', () => {
    const n = 4000;
    const s = buildSchedule(
      { minutes: 1, functions: [flatFunction(0, [n])] },
      { minutes: 1, warmupMinutes: 0, iat: 'exponential', seed: 3 },
    );
    const gaps = Array.from({ length: n - 1 }, (_, i) => s.atMs[i + 1] - s.atMs[i]);
    const mean = gaps.reduce((a, b) => a + b, 0) / gaps.length;
    const sorted = gaps.map((g) => g / mean).sort((a, b) => a - b);
    let d = 0;
    sorted.forEach((x, i) => {
      const cdf = 1 - Math.exp(-x);
      d = Math.max(d, Math.abs(cdf - i / sorted.length), Math.abs(cdf - (i + 1) / sorted.length));
    });
    assert.ok(d < 1.63 / Math.sqrt(sorted.length), `KS statistic ${d}`);
    // Uniform gaps are not exponential: the same test must reject them.
    const u = buildSchedule(
      { minutes: 1, functions: [flatFunction(0, [n])] },
      { minutes: 1, warmupMinutes: 0, iat: 'uniform', seed: 3 },
    );
    const ugaps = Array.from({ length: n - 1 }, (_, i) => u.atMs[i + 1] - u.atMs[i]);
    const umean = ugaps.reduce((a, b) => a + b, 0) / ugaps.length;
    const usorted = ugaps.map((g) => g / umean).sort((a, b) => a - b);
    let ud = 0;
    usorted.forEach(
      (x, i) => (ud = Math.max(ud, Math.abs(1 - Math.exp(-x) - (i + 1) / usorted.length))),
    );
    assert.ok(ud > 1.63 / Math.sqrt(usorted.length), `uniform KS statistic ${ud}`);
  });

  it('draws runtime and memory inside the percentile brackets', () => {
    const fn = flatFunction(0, [500]);
    fn.duration = {
      ...fn.duration,
      p0: 10,
      p1: 10,
      p25: 20,
      p50: 30,
      p75: 40,
      p99: 100,
      p100: 200,
    };
    const s = buildSchedule(
      { minutes: 1, functions: [fn] },
      { minutes: 1, warmupMinutes: 0, iat: 'uniform', seed: 2 },
    );
    const d = Array.from(s.durationMs).sort((a, b) => a - b);
    assert.ok(d[0] >= 10 && d[d.length - 1] <= 200);
    const median = d[250];
    assert.ok(median > 25 && median < 35, `median ${median}`);
  });
});
