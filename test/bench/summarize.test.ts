import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { summarize } from '../../src/bench/common.ts';

describe('bench summarize', () => {
  it('gives the median, p99 and mean of its samples', () => {
    const s = summarize([3, 1, 2]);
    assert.equal(s.n, 3);
    assert.equal(s.p50, 2);
    assert.ok(s.p99 > 2.9 && s.p99 <= 3);
    assert.equal(s.mean, 2);
  });

  it('reports a measurement with no samples as missing (NaN), not by throwing', () => {
    const s = summarize([]);
    assert.equal(s.n, 0);
    assert.ok(Number.isNaN(s.p50) && Number.isNaN(s.p99) && Number.isNaN(s.mean));
  });
});
