import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ReferenceDistribution, Rng, wasserstein1 } from '../../src/workload/index.ts';

const close = (actual: number, expected: number, eps = 1e-9) =>
  assert.ok(Math.abs(actual - expected) <= eps, `${actual} ≠ ${expected}`);

describe('wasserstein1', () => {
  it('is zero for identical samples and symmetric', () => {
    close(wasserstein1([3, 1, 2], [1, 2, 3]), 0);
    close(wasserstein1([0, 5], [1, 2]), wasserstein1([1, 2], [0, 5]));
  });

  it('matches hand-computed cases', () => {
    // Moving all mass from 0 to 1 costs 1.
    close(wasserstein1([0], [1]), 1);
    // {0,0,1} vs {0,1,1}: a third of the mass moves by 1.
    close(wasserstein1([0, 0, 1], [0, 1, 1]), 1 / 3);
    // {0,1} vs {0.5}: each half moves 0.5.
    close(wasserstein1([0, 1], [0.5]), 0.5);
    // {0,2,4} vs {1,3}: |F−G| is 1/3, 1/6, 1/6, 1/3 on the unit intervals [0,1]…[3,4].
    close(wasserstein1([0, 2, 4], [1, 3]), 1);
    // A shift by c costs c.
    close(wasserstein1([1, 4, 9], [3.5, 6.5, 11.5]), 2.5);
  });
});

describe('ReferenceDistribution.distanceFromSubset', () => {
  it('agrees with the sort-merge W1 on random subsets, ties included', () => {
    const rng = new Rng(42);
    for (let trial = 0; trial < 40; trial++) {
      const n = 5 + rng.int(60);
      const values = Array.from({ length: n }, () =>
        trial % 2 ? rng.int(4) : rng.logNormal(0, 2),
      );
      const reference = new ReferenceDistribution(values);
      const k = 1 + rng.int(n);
      const subset = rng.sample(
        Int32Array.from({ length: n }, (_, i) => i),
        k,
      );
      const ranks = Int32Array.from(subset, (i) => reference.rank[i]).sort();
      close(
        reference.distanceFromSubset(ranks),
        wasserstein1(
          Array.from(subset, (i) => values[i]),
          values,
        ),
        1e-9 * n * 100,
      );
    }
  });

  it('is zero for the whole set', () => {
    const reference = new ReferenceDistribution([5, 1, 1, 7]);
    close(reference.distanceFromSubset(Int32Array.of(0, 1, 2, 3)), 0);
  });
});
