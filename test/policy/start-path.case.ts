import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  invalidDecision,
  type InstanceView,
  type NodeView,
  type StartOptions,
  type StartPathPolicy,
} from '../../src/policy/index.ts';

function view(id: string, over: Partial<InstanceView> = {}): InstanceView {
  return Object.freeze({
    id,
    functionName: 'f',
    version: 1,
    state: 'idle',
    memoryMb: 128,
    inFlight: 0,
    startedAt: 0,
    lastUsedAt: 0,
    invocations: 1,
    ...over,
  });
}

const NODE: NodeView = Object.freeze({
  now: 10_000,
  memoryBudgetMb: 1024,
  memoryInUseMb: 512,
  instances: Object.freeze([]),
});

/** Every combination of what a pool may offer: 0–2 warm and paused, prewarms, snapshot, cap. */
export function everyOffer(): StartOptions[] {
  const offers: StartOptions[] = [];
  for (const warmCount of [0, 1, 2])
    for (const pausedCount of [0, 1, 2])
      for (const prewarms of [0, 1])
        for (const snapshotReady of [false, true])
          for (const belowCap of [false, true]) {
            const warm = Array.from({ length: warmCount }, (_, i) =>
              view(`w${i}`, { lastUsedAt: 100 * i, state: i === 0 ? 'idle' : 'busy' }),
            );
            const paused = Array.from({ length: pausedCount }, (_, i) =>
              view(`p${i}`, { lastUsedAt: 50 * i, state: 'paused' }),
            );
            offers.push(
              Object.freeze({
                functionName: 'f',
                version: 1,
                memoryMb: 128,
                warm: Object.freeze(warm),
                paused: Object.freeze(paused),
                prewarms,
                snapshotReady,
                belowCap,
              }),
            );
          }
  return offers;
}

/** What every start-path policy must do, whatever it prefers. */
export function startPathConformance(name: string, make: () => StartPathPolicy): void {
  describe(`start-path policy conformance: ${name}`, () => {
    it('only ever chooses a path and an instance the pool offered', () => {
      const policy = make();
      for (const offer of everyOffer()) {
        const decision = policy.choose(offer, NODE);
        assert.equal(invalidDecision(decision, offer), undefined, JSON.stringify(offer));
      }
    });

    it('queues only when no instance has room and the function is at its cap', () => {
      const policy = make();
      for (const offer of everyOffer()) {
        const canServe = offer.warm.length > 0 || offer.paused.length > 0 || offer.belowCap;
        if (canServe) assert.notEqual(policy.choose(offer, NODE).path, 'queue');
        else assert.equal(policy.choose(offer, NODE).path, 'queue');
      }
    });

    it('decides from its input alone: the same offer gets the same decision', () => {
      const offers = everyOffer();
      const first = offers.map((offer) => make().choose(offer, NODE));
      const again = make();
      assert.deepEqual(
        offers.map((offer) => again.choose(offer, NODE)),
        first,
      );
    });

    it('reads frozen views without writing to them', () => {
      // Every view is frozen and the modules run in strict mode: a write would throw.
      const policy = make();
      for (const offer of everyOffer()) assert.doesNotThrow(() => policy.choose(offer, NODE));
    });

    it('copes with many candidates', () => {
      const many = Array.from({ length: 500 }, (_, i) => view(`i${i}`, { lastUsedAt: i }));
      const offer: StartOptions = Object.freeze({
        functionName: 'f',
        version: 1,
        memoryMb: 128,
        warm: Object.freeze(many),
        paused: Object.freeze([]),
        prewarms: 0,
        snapshotReady: false,
        belowCap: false,
      });
      const decision = make().choose(offer, NODE);
      assert.equal(invalidDecision(decision, offer), undefined);
    });
  });
}
