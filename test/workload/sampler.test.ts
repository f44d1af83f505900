import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  Rng,
  TraceScorer,
  sampleTrace,
  synthesize,
  totalInvocations,
} from '../../src/workload/index.ts';
import { flatFunction } from './helpers.ts';

const trace = synthesize({ functions: 600, minutes: 5 }, new Rng(5));
const options = { minSize: 10, maxSize: 100, step: 10, trials: 4, seed: 3, baseline: true };

describe('sampleTrace', () => {
  const results = sampleTrace(trace, options);

  it('makes one summary per size, each nested in the next larger one', () => {
    assert.deepEqual(
      results.map((r) => r.size),
      [10, 20, 30, 40, 50, 60, 70, 80, 90, 100],
    );
    for (let i = 0; i + 1 < results.length; i++) {
      const larger = new Set(results[i + 1].functions);
      assert.equal(results[i].functions.length, results[i].size);
      assert.ok(
        Array.from(results[i].functions).every((f) => larger.has(f)),
        `size ${results[i].size} ⊂ ${results[i + 1].size}`,
      );
    }
  });

  it('grows offered load with size', () => {
    for (let i = 1; i < results.length; i++)
      assert.ok(results[i].invocations > results[i - 1].invocations);
    const recomputed = Array.from(results[0].functions).reduce(
      (s, f) => s + totalInvocations(trace.functions[f]),
      0,
    );
    assert.equal(results[0].invocations, recomputed);
  });

  it('is deterministic for a seed', () => {
    const again = sampleTrace(trace, options);
    assert.deepEqual(
      again.map((r) => Array.from(r.functions)),
      results.map((r) => Array.from(r.functions)),
    );
    assert.deepEqual(
      again.map((r) => r.random?.score),
      results.map((r) => r.random?.score),
    );
    const other = sampleTrace(trace, { ...options, seed: 4 });
    assert.notDeepEqual(
      other.map((r) => Array.from(r.functions)),
      results.map((r) => Array.from(r.functions)),
    );
  });

  it('scores no worse than random sampling on average', () => {
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    assert.ok(
      mean(results.map((r) => r.score)) < mean(results.map((r) => r.random?.score ?? Infinity)),
    );
  });

  it('rejects sizes beyond the trace', () => {
    assert.throws(
      () => sampleTrace(trace, { ...options, maxSize: 601 }),
      /more than the trace's 600 functions/,
    );
  });
});

const close = (actual: number, expected: number, eps = 1e-9) =>
  assert.ok(Math.abs(actual - expected) <= eps, `${actual} ≠ ${expected}`);

describe("TraceScorer on the linear scale (the paper's metric)", () => {
  // Counts per minute; every function runs 1000 ms at 100 MB, so resources = count × 0.1.
  const counts = [
    [0, 4],
    [1, 0],
    [2, 4],
    [5, 0],
  ];
  const hand = { minutes: 2, functions: counts.map((c, i) => flatFunction(i, c, 1000, 100)) };
  const scorer = new TraceScorer(hand);

  it('is the default and matches hand-computed WDs', () => {
    // Minute 0: {1,5} vs {0,1,2,5}: |Q − Q'| is 1 on [0, ¼) and 3 on [½, ¾) → 1.
    // Minute 1: {0,0} vs {4,0,4,0}: half the mass moves by 4 → 2.
    const score = scorer.score(Int32Array.from([1, 3]));
    close(score.invocationWd, (1 + 2) / 2);
    // count × 1000 ms × 100 MB ÷ 10⁶ = count ÷ 10.
    close(score.resourceWd, (0.1 + 0.2) / 2);
    close(score.score, (1.5 + 0.15) / 2);
    close(scorer.score(Int32Array.from([0, 1, 2, 3])).score, 0);
  });

  it('weighs resources as count × ms × MB ÷ 10⁶, not divided by the mean', () => {
    const heavy = { minutes: 1, functions: [flatFunction(0, [2], 500, 200), flatFunction(1, [0])] };
    // {0.2} vs {0.2, 0}: half the mass moves by 2 × 500 × 200 ÷ 10⁶ = 0.2 → 0.1.
    close(new TraceScorer(heavy, 'linear').score(Int32Array.from([0])).resourceWd, 0.1);
  });

  it('has a lower bound no subset beats', () => {
    for (const size of [1, 2, 3])
      for (let mask = 0; mask < 16; mask++) {
        const members = [0, 1, 2, 3].filter((f) => mask & (1 << f));
        if (members.length !== size) continue;
        assert.ok(scorer.score(Int32Array.from(members)).score >= scorer.floor(size) - 1e-12);
      }
  });
});

describe('sampleTrace --method search', () => {
  const searchOptions = { ...options, method: 'search' as const, baseline: false };
  const search = sampleTrace(trace, searchOptions);
  const invitro = sampleTrace(trace, { ...options, baseline: false });

  it('keeps exact sizes, nesting and strictly increasing load', () => {
    assert.deepEqual(
      search.map((r) => r.functions.length),
      search.map((r) => r.size),
    );
    for (let i = 0; i + 1 < search.length; i++) {
      const larger = new Set(search[i + 1].functions);
      assert.ok(Array.from(search[i].functions).every((f) => larger.has(f)));
      assert.ok(search[i + 1].invocations > search[i].invocations);
    }
  });

  it('scores at or above the lower bound and never above In-Vitro at any size', () => {
    const scorer = new TraceScorer(trace);
    for (const [i, r] of search.entries()) {
      assert.ok(r.score >= scorer.floor(r.size) - 1e-9);
      assert.ok(r.score <= invitro[i].score, `size ${r.size}: ${r.score} > ${invitro[i].score}`);
    }
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    assert.ok(mean(search.map((r) => r.score)) < mean(invitro.map((r) => r.score)));
  });

  it("keeps In-Vitro's summary wherever it does not beat it", () => {
    for (const [i, r] of search.entries())
      if (r.score === invitro[i].score)
        assert.deepEqual(Array.from(r.functions), Array.from(invitro[i].functions));
  });

  it('keeps its guarantees on a trace of another shape and seed', () => {
    const other = synthesize({ functions: 800, minutes: 8, startMinuteOfDay: 13 * 60 }, new Rng(9));
    const wide = { ...options, minSize: 5, maxSize: 200, step: 15, seed: 7, baseline: false };
    const mine = sampleTrace(other, { ...wide, method: 'search' });
    const theirs = sampleTrace(other, wide);
    for (const [i, r] of mine.entries()) {
      assert.equal(r.functions.length, r.size);
      assert.ok(r.score <= theirs[i].score, `size ${r.size}`);
      if (i === 0) continue;
      const larger = new Set(r.functions);
      assert.ok(Array.from(mine[i - 1].functions).every((f) => larger.has(f)));
      assert.ok(r.invocations > mine[i - 1].invocations);
    }
  });

  it('reports load as a share of the proportional load', () => {
    const whole = trace.functions.reduce((s, f) => s + totalInvocations(f), 0);
    for (const r of search)
      close(r.loadShare, r.invocations / ((whole * r.size) / trace.functions.length));
  });

  it('reports progress up to its total', () => {
    let last = [0, 0];
    sampleTrace(trace, { ...searchOptions, onProgress: (done, total) => (last = [done, total]) });
    assert.equal(last[0], last[1]);
  });

  it('is deterministic for a seed', () => {
    assert.deepEqual(
      sampleTrace(trace, searchOptions).map((r) => Array.from(r.functions)),
      search.map((r) => Array.from(r.functions)),
    );
  });
});
