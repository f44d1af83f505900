import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { NewFirst, START_PATH_POLICIES, WarmFirst } from '../../src/policy/index.ts';
import { everyOffer, startPathConformance } from './start-path.case.ts';

for (const [name, make] of Object.entries(START_PATH_POLICIES)) startPathConformance(name, make);

const pick = (
  offer: ReturnType<typeof everyOffer>[number],
  policy: WarmFirst | NewFirst,
): string => {
  const decision = policy.choose(offer);
  return 'instanceId' in decision ? `${decision.path} ${decision.instanceId}` : decision.path;
};

describe('WarmFirst', () => {
  it('goes warm → paused → prewarm → restore → cold → queue, most recently used first', () => {
    const policy = new WarmFirst();
    const find = (w: number, p: number, prewarms: number, snap: boolean, cap: boolean) =>
      everyOffer().find(
        (o) =>
          o.warm.length === w &&
          o.paused.length === p &&
          o.prewarms === prewarms &&
          o.snapshotReady === snap &&
          o.belowCap === cap,
      )!;
    assert.equal(pick(find(2, 2, 1, true, true), policy), 'warm w1');
    assert.equal(pick(find(0, 2, 1, true, true), policy), 'paused p1');
    assert.equal(pick(find(0, 0, 1, true, true), policy), 'prewarm');
    assert.equal(pick(find(0, 0, 0, true, true), policy), 'restore');
    assert.equal(pick(find(0, 0, 0, false, true), policy), 'cold');
    assert.equal(pick(find(0, 0, 1, true, false), policy), 'queue');
  });
});

describe('NewFirst', () => {
  it('starts a new instance below the cap, and reuses warm then paused ones at it', () => {
    const policy = new NewFirst();
    const at = (w: number, p: number, cap: boolean) =>
      everyOffer().find(
        (o) =>
          o.warm.length === w &&
          o.paused.length === p &&
          o.prewarms === 0 &&
          !o.snapshotReady &&
          o.belowCap === cap,
      )!;
    assert.equal(pick(at(2, 2, true), policy), 'cold');
    assert.equal(pick(at(2, 2, false), policy), 'warm w1');
    assert.equal(pick(at(0, 2, false), policy), 'paused p1');
    assert.equal(pick(at(0, 0, false), policy), 'queue');
  });
});
