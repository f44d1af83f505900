import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  AlwaysSpread,
  FixedKeepAlive,
  PackWhenSequential,
  PLACEMENT_POLICIES,
  type InstanceView,
  type KeepAlivePolicy,
  type NodeView,
  type PlacementPolicy,
} from '../src/policy/index.ts';

function instance(id: string, over: Partial<InstanceView> = {}): InstanceView {
  return {
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
  };
}

function nodeView(instances: InstanceView[]): NodeView {
  return { now: 1000, memoryBudgetMb: 1024, memoryInUseMb: 0, instances };
}

/** What every keep-alive policy must do, whatever its rule. */
function keepAliveConformance(name: string, make: () => KeepAlivePolicy): void {
  describe(`keep-alive policy conformance: ${name}`, () => {
    it('never picks busy or starting instances as victims', () => {
      const view = nodeView([
        instance('busy', { state: 'busy' }),
        instance('starting', { state: 'starting' }),
      ]);
      assert.deepEqual(make().victims(128, view), []);
    });
    it('may evict paused instances: they hold memory like idle ones', () => {
      const view = nodeView([instance('p', { state: 'paused' })]);
      assert.deepEqual(make().victims(128, view), ['p']);
    });
    it('picks no victim when nothing is needed', () => {
      assert.deepEqual(make().victims(0, nodeView([instance('a')])), []);
    });
    it('frees at least what is needed when idle instances allow', () => {
      const view = nodeView([instance('a'), instance('b'), instance('c')]);
      const victims = make().victims(200, view);
      assert.ok(victims.length * 128 >= 200);
    });
    it('gives a non-negative keep-alive', () => {
      assert.ok(make().keepAliveMs(instance('a'), nodeView([])) >= 0);
    });
  });
}

keepAliveConformance('fixed', () => new FixedKeepAlive(600_000));

describe('FixedKeepAlive', () => {
  it('keeps instances for the default TTL unless the function overrides it', () => {
    const policy = new FixedKeepAlive(600_000);
    assert.equal(policy.keepAliveMs(instance('a'), nodeView([])), 600_000);
    assert.equal(policy.keepAliveMs(instance('a', { keepAliveMs: 5 }), nodeView([])), 5);
  });
  it('evicts least recently used first, and only as many as needed', () => {
    const policy = new FixedKeepAlive(1);
    const view = nodeView([
      instance('new', { lastUsedAt: 300 }),
      instance('old', { lastUsedAt: 100 }),
      instance('mid', { lastUsedAt: 200 }),
    ]);
    assert.deepEqual(policy.victims(128, view), ['old']);
    assert.deepEqual(policy.victims(129, view), ['old', 'mid']);
  });
});

/** What every placement policy must do, whatever its rule. */
function placementConformance(name: string, make: () => PlacementPolicy): void {
  describe(`placement policy conformance: ${name}`, () => {
    it('answers pack or spread for any window', () => {
      const policy = make();
      for (const peakInFlight of [0, 1, 2, 1, 0, 0, 0, 5, 1])
        assert.ok(['pack', 'spread'].includes(policy.place({ peakInFlight })));
    });
    it('spreads whenever invocations overlapped in the window', () => {
      const policy = make();
      for (let i = 0; i < 5; i++) policy.place({ peakInFlight: 1 });
      assert.equal(policy.place({ peakInFlight: 2 }), 'spread');
    });
    it('decides the same for the same sequence of windows', () => {
      const windows = [0, 1, 1, 3, 1, 1, 1, 0];
      const run = (): string[] => {
        const policy = make();
        return windows.map((peakInFlight) => policy.place({ peakInFlight }));
      };
      assert.deepEqual(run(), run());
    });
  });
}

for (const [name, make] of Object.entries(PLACEMENT_POLICIES)) placementConformance(name, make);

describe('PackWhenSequential', () => {
  it('packs only after two calm windows in a row, and spreads at once on overlap', () => {
    const policy = new PackWhenSequential();
    const decisions = [1, 0, 1, 2, 1, 1].map((peakInFlight) => policy.place({ peakInFlight }));
    assert.deepEqual(decisions, ['spread', 'pack', 'pack', 'spread', 'spread', 'pack']);
  });
});

describe('AlwaysSpread', () => {
  it('never packs', () => {
    const policy = new AlwaysSpread();
    assert.equal(policy.place(), 'spread');
  });
});
