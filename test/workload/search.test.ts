import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Rng, TraceScorer, sampleTrace, synthesize } from '../../src/workload/index.ts';
import { polishChain } from '../../src/workload/chain.ts';
import { Keys } from '../../src/workload/keys.ts';
import { Subset } from '../../src/workload/subset.ts';

const trace = synthesize({ functions: 400, minutes: 6 }, new Rng(21));
const scorer = new TraceScorer(trace);
const refs = scorer.references();
const all = [...refs.invocation, ...refs.resource];
const ids = Int32Array.from({ length: trace.functions.length }, (_, i) => i);

describe('Subset (incremental swap scores)', () => {
  it('scores every swap as a full re-score would, committed or not', () => {
    const rng = new Rng(4);
    for (const size of [1, 7, 60]) {
      const members = Array.from(rng.sample(ids, size));
      const inside = new Set(members);
      const subset = new Subset(all, members);
      for (let t = 0; t < 300; t++) {
        const slot = rng.int(size);
        const joining = rng.int(ids.length);
        if (inside.has(joining)) continue;
        const swapped = members.map((f, i) => (i === slot ? joining : f));
        const exact = scorer.score(Int32Array.from(swapped)).score;
        const incremental = subset.scoreSwap(members[slot], joining);
        assert.ok(
          Math.abs(incremental - exact) <= 1e-9 * Math.max(1, exact),
          `${incremental} ≠ ${exact}`,
        );
        // Commit about half, so later swaps start from changed ranks.
        if (rng.next() < 0.5) continue;
        subset.commitSwap(members[slot], joining);
        inside.delete(members[slot]);
        inside.add(joining);
        members[slot] = joining;
        assert.ok(Math.abs(subset.score - exact) <= 1e-9 * Math.max(1, exact));
      }
    }
  });
});

describe('polishChain', () => {
  const start = sampleTrace(trace, {
    minSize: 5,
    maxSize: 120,
    step: 5,
    trials: 3,
    seed: 2,
    baseline: false,
  }).map((r) => r.functions);
  const bounds = Float64Array.from(start, (s) => scorer.score(s).score);
  const keys = new Keys(refs, ids.length);
  const load = (s: Int32Array) => Array.from(s).reduce((sum, f) => sum + keys.invocations[f], 0);
  const loadFloors = Float64Array.from(start, load);
  let steps = 0;
  const polished = polishChain(start, {
    references: all,
    keys,
    bounds,
    loadFloors,
    rng: new Rng(8),
    moves: 3000,
    steps: 10,
    onStep: () => steps++,
  });

  it('keeps exact sizes, nesting and strictly increasing load', () => {
    for (const [i, s] of polished.entries()) {
      assert.equal(new Set(s).size, start[i].length);
      if (i === 0) continue;
      const larger = new Set(s);
      assert.ok(
        Array.from(polished[i - 1]).every((f) => larger.has(f)),
        `size ${s.length}`,
      );
      assert.ok(load(s) > load(polished[i - 1]), `load at size ${s.length}`);
    }
  });

  it('never lightens a summary below its load floor', () => {
    for (const [i, s] of polished.entries())
      assert.ok(load(s) >= loadFloors[i] * (1 - 1e-12), `size ${s.length}`);
  });

  it('never scores above a bound and lowers the chain as a whole', () => {
    const scores = polished.map((s) => scorer.score(s).score);
    for (const [i, score] of scores.entries())
      assert.ok(score <= bounds[i] * (1 + 1e-9), `size ${start[i].length}`);
    const ratio = scores.reduce((sum, s, i) => sum + s / bounds[i], 0) / scores.length;
    assert.ok(ratio < 1, `mean ratio ${ratio}`);
  });

  it('reports its steps and is deterministic for a seed', () => {
    assert.equal(steps, 10);
    const again = polishChain(start, {
      references: all,
      keys,
      bounds,
      loadFloors,
      rng: new Rng(8),
      moves: 3000,
      steps: 1,
    });
    assert.deepEqual(
      again.map((s) => Array.from(s)),
      polished.map((s) => Array.from(s)),
    );
  });
});

describe('TraceScorer.floor against brute force', () => {
  it('lies at or below every subset of tiny random traces', () => {
    for (const seed of [1, 2, 3]) {
      const tiny = synthesize({ functions: 9, minutes: 3 }, new Rng(seed));
      const tinyScorer = new TraceScorer(tiny);
      for (let mask = 1; mask < 1 << 9; mask++) {
        const members = Int32Array.from({ length: 9 }, (_, f) => f).filter((f) => mask & (1 << f));
        const score = tinyScorer.score(members).score;
        assert.ok(score >= tinyScorer.floor(members.length) - 1e-12, `seed ${seed} mask ${mask}`);
      }
    }
  });
});
