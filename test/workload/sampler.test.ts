import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Rng, sampleTrace, synthesize, totalInvocations } from '../../src/workload/index.ts';

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
