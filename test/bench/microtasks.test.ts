import assert from 'node:assert/strict';
import { test } from 'node:test';
import { overlaps } from '../../src/bench/microtasks.ts';

test('overlaps: the share of each span another one covers, overlapping covers counted once', () => {
  const spans: [number, number][] = [
    [0, 10],
    [5, 15],
    [20, 30],
    [22, 24],
    [23, 26],
  ];
  assert.deepEqual(overlaps(spans), [0.5, 0.5, 0.4, 1, 1]);
  assert.deepEqual(overlaps([[0, 10]]), [0]);
  assert.ok(Number.isNaN(overlaps([[5, 5]])[0]));
});
