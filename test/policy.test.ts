import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  AlwaysSpread,
  FixedKeepAlive,
  GreedyDualKeepAlive,
  HybridHistogramKeepAlive,
  KEEP_ALIVE_POLICY_NAMES,
  KeepAliveByFunction,
  makeKeepAlivePolicy,
  type PolicyEvent,
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

/** The same, with the indexes the pool's view has (idle ones least recently used first). */
const plainNodeView = nodeView;

function indexedNodeView(instances: InstanceView[]): NodeView {
  const idle = instances
    .filter((i) => i.state === 'idle' || i.state === 'paused')
    .sort((a, b) => a.lastUsedAt - b.lastUsedAt);
  return {
    ...nodeView(instances),
    idleInstances: idle,
    idleInstance: (id) => idle.find((i) => i.id === id),
    instancesOf: (name) => instances.filter((i) => i.functionName === name),
  };
}

/** What every keep-alive policy must do, whatever its rule. */
function keepAliveConformance(
  name: string,
  make: () => KeepAlivePolicy,
  nodeView: (instances: InstanceView[]) => NodeView = plainNodeView,
): void {
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
    it('names only idle instances of the view as victims, each once', () => {
      const policy = make();
      feed(policy, busyHistory());
      const view = nodeView([
        instance('a', { functionName: 'f' }),
        instance('b', { functionName: 'g', lastUsedAt: 500 }),
        instance('c', { functionName: 'g', state: 'busy' }),
      ]);
      const victims = policy.victims(10_000, view);
      assert.deepEqual([...new Set(victims)].sort(), ['a', 'b']);
      assert.equal(victims.length, 2);
    });
    it('decides the same for the same history', () => {
      const run = (): unknown[] => {
        const policy = make();
        feed(policy, busyHistory());
        const view = nodeView([instance('a', { invocations: 3 }), instance('b')]);
        return [
          policy.keepAliveMs(instance('a', { invocations: 3 }), view),
          policy.prewarmAt?.('f', view),
          policy.victims(128, view),
        ];
      };
      assert.deepEqual(run(), run());
    });
    it('pre-warms, if at all, no earlier than now', () => {
      const policy = make();
      feed(policy, busyHistory());
      const at = policy.prewarmAt?.('f', nodeView([]));
      assert.ok(at === undefined || at >= 1000);
    });
  });
}

/** Events of function f: invocations ending every `idleMs` apart, started once. */
function history(idleMs: number[], functionName = 'f'): PolicyEvent[] {
  const events: PolicyEvent[] = [
    { kind: 'arrival', functionName, at: 0 },
    { kind: 'started', functionName, instanceId: 'a', at: 100, startMs: 100 },
    { kind: 'finished', functionName, instanceId: 'a', memoryMb: 128, at: 150 },
  ];
  let t = 150;
  for (const idle of idleMs) {
    t += idle;
    events.push({ kind: 'arrival', functionName, at: t });
    t += 50;
    events.push({ kind: 'finished', functionName, instanceId: 'a', memoryMb: 128, at: t });
  }
  return events;
}

function busyHistory(): PolicyEvent[] {
  return [...history(Array(30).fill(90_000)), ...history([5, 5, 5], 'g')];
}

function feed(policy: KeepAlivePolicy, events: PolicyEvent[]): void {
  for (const event of events) policy.observe?.(event);
}

for (const name of KEEP_ALIVE_POLICY_NAMES) {
  const make = () => makeKeepAlivePolicy(name, { keepAliveMs: 600_000 });
  keepAliveConformance(name, make);
  keepAliveConformance(`${name}, on the pool's indexed view`, make, indexedNodeView);
}

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

for (const indexed of [false, true])
  describe(`GreedyDualKeepAlive${indexed ? ", on the pool's indexed view (its priority heap)" : ''}`, () => {
    const nodeView = indexed ? indexedNodeView : plainNodeView;
    function used(
      policy: GreedyDualKeepAlive,
      fn: string,
      id: string,
      opts: { times?: number; memoryMb?: number } = {},
    ) {
      for (let k = 0; k < (opts.times ?? 1); k++) {
        policy.observe({ kind: 'arrival', functionName: fn, at: 0 });
        policy.observe({
          kind: 'finished',
          functionName: fn,
          instanceId: id,
          memoryMb: opts.memoryMb ?? 128,
          at: 0,
        });
      }
    }

    it('keeps instances while memory allows (no timer)', () => {
      assert.equal(new GreedyDualKeepAlive().keepAliveMs(), Infinity);
    });

    it('prices an instance at clock + frequency × measured start cost / size', () => {
      const policy = new GreedyDualKeepAlive();
      policy.observe({ kind: 'started', functionName: 'f', instanceId: 'a', at: 0, startMs: 256 });
      used(policy, 'f', 'a', { times: 3 });
      assert.equal(policy.cost('f'), 256);
      assert.equal(policy.priorityNow('f', 128), (3 * 256) / 128);
      assert.equal(policy.cost('unmeasured'), 100);
    });

    it('evicts the lowest priority first and moves the clock to it', () => {
      const policy = new GreedyDualKeepAlive();
      for (const fn of ['often', 'rare', 'big'])
        policy.observe({ kind: 'started', functionName: fn, instanceId: fn, at: 0, startMs: 100 });
      used(policy, 'often', 'often', { times: 4 }); // 4 × 100 / 128 = 3.125
      used(policy, 'rare', 'rare'); //                  1 × 100 / 128 = 0.78
      used(policy, 'big', 'big', { times: 4, memoryMb: 1024 }); // 4 × 100 / 1024 = 0.39
      const view = nodeView([
        instance('often', { functionName: 'often' }),
        instance('rare', { functionName: 'rare' }),
        instance('big', { functionName: 'big', memoryMb: 1024 }),
      ]);
      assert.deepEqual(policy.victims(1024, view), ['big']);
      assert.equal(policy.clock, 400 / 1024);
      const left = nodeView(view.instances.filter((i) => i.id !== 'big'));
      assert.deepEqual(policy.victims(200, left), ['rare', 'often']);
      assert.equal(policy.clock, 400 / 128);
    });

    it('ages: a use after an eviction starts from the raised clock', () => {
      const policy = new GreedyDualKeepAlive({ defaultCostMs: 128 });
      used(policy, 'old', 'old', { times: 5 }); // 5
      used(policy, 'x', 'x', { times: 2 }); // 2
      policy.victims(
        1,
        nodeView([instance('old', { functionName: 'old' }), instance('x', { functionName: 'x' })]),
      );
      assert.equal(policy.clock, 2);
      used(policy, 'new', 'new'); // 2 + 1 = 3 < 5, yet a later use of it would pass "old"
      const view = nodeView([
        instance('old', { functionName: 'old' }),
        instance('new', { functionName: 'new' }),
      ]);
      assert.deepEqual(policy.victims(1, view), ['new']);
      used(policy, 'new2', 'new2', { times: 4 }); // 3 + 4 = 7 > 5
      const later = nodeView([
        instance('old', { functionName: 'old' }),
        instance('new2', { functionName: 'new2' }),
      ]);
      assert.deepEqual(policy.victims(1, later), ['old']);
    });

    it("forgets a function's frequency once its last instance is evicted", () => {
      const policy = new GreedyDualKeepAlive({ defaultCostMs: 128 });
      used(policy, 'f', 'a', { times: 3 });
      policy.victims(1, nodeView([instance('a')]));
      assert.equal(policy.priorityNow('f', 128), policy.clock);
    });
  });

describe('HybridHistogramKeepAlive', () => {
  const MIN = 60_000;
  const make = () => new HybridHistogramKeepAlive({ fallbackMs: 600_000 });
  const used = instance('a', { invocations: 2 });
  const ahead = instance('a', { invocations: 0 });
  const now = nodeView([]);

  it('falls back to the fixed keep-alive with too few idle times', () => {
    const policy = make();
    feed(policy, history(Array(9).fill(10.5 * MIN)));
    assert.deepEqual(policy.windowsOf('f', undefined), {
      mode: 'fallback',
      prewarmMs: 0,
      keepAliveMs: 600_000,
    });
    assert.equal(policy.keepAliveMs(used), 600_000);
    assert.equal(policy.keepAliveMs(instance('a', { keepAliveMs: 7 })), 7);
    assert.equal(policy.prewarmAt('f', now), undefined);
  });

  it('pre-warms at the 5th percentile − 10 % and keeps until the 99th + 10 %', () => {
    const policy = make();
    feed(policy, history(Array(10).fill(10.5 * MIN)));
    // All in bin 10 (10–11 min): pre-warm at 10 min × 0.9, keep until 11 min × 1.1.
    const w = policy.windowsOf('f', undefined);
    assert.equal(w.mode, 'histogram');
    assert.equal(w.prewarmMs, 9 * MIN);
    assert.equal(w.keepAliveMs, Math.round(12.1 * MIN) - 9 * MIN);
    assert.equal(policy.keepAliveMs(used), 0, 'unloaded at once: the pre-warm brings it back');
    assert.equal(policy.prewarmAt('f', now), 1000 + 9 * MIN);
    assert.equal(policy.keepAliveMs(ahead), w.keepAliveMs);
  });

  it('takes the head and tail from the percentiles, not the extremes', () => {
    const policy = make();
    // 100 idle times: 1 in bin 2, 98 in bin 20, 1 in bin 100.
    feed(policy, history([2.5 * MIN, ...Array(98).fill(20.5 * MIN), 100.5 * MIN]));
    const w = policy.windowsOf('f', undefined);
    assert.equal(w.prewarmMs, 20 * MIN * 0.9);
    assert.equal(w.prewarmMs + w.keepAliveMs, Math.round(21 * MIN * 1.1));
  });

  it('keeps alive from the end without unloading when idle times start in the first bin', () => {
    const policy = make();
    feed(policy, history([...Array(12).fill(20_000), 3.5 * MIN]));
    const w = policy.windowsOf('f', undefined);
    assert.equal(w.prewarmMs, 0);
    assert.equal(w.keepAliveMs, Math.round(4 * MIN * 1.1));
    assert.equal(policy.keepAliveMs(used), w.keepAliveMs);
    assert.equal(policy.prewarmAt('f', now), undefined);
  });

  it('falls back when the histogram is flat (coefficient of variation at or below 2)', () => {
    const policy = make();
    feed(policy, history(Array.from({ length: 240 }, (_, i) => (i + 0.5) * MIN)));
    assert.equal(policy.windowsOf('f', undefined).mode, 'fallback');
  });

  it('forecasts when most idle times lie beyond the 4-hour range', () => {
    const policy = make();
    feed(policy, history([...Array(11).fill(300 * MIN), 2 * MIN]));
    const w = policy.windowsOf('f', undefined);
    assert.equal(w.mode, 'forecast');
    assert.equal(w.prewarmMs, 300 * MIN * 0.85);
    assert.equal(w.keepAliveMs, 300 * MIN * 0.3);
  });

  it('counts an idle time only from an end to the next arrival', () => {
    const policy = make();
    // Two arrivals after one end: the second is not an idle time of its own.
    policy.observe({ kind: 'finished', functionName: 'f', instanceId: 'a', memoryMb: 128, at: 0 });
    for (let k = 0; k < 20; k++)
      policy.observe({ kind: 'arrival', functionName: 'f', at: 10.5 * MIN * (k + 1) });
    assert.equal(policy.windowsOf('f', undefined).mode, 'fallback');
  });
});

describe('KeepAliveByFunction', () => {
  const make = (name: (typeof KEEP_ALIVE_POLICY_NAMES)[number]) =>
    makeKeepAlivePolicy(name, { keepAliveMs: 1000 });

  it('lets a function choose its policy and gives the rest the node default', () => {
    const policy = new KeepAliveByFunction('fixed', make, (fn) =>
      fn === 'gd' ? 'greedy-dual' : undefined,
    );
    assert.equal(policy.keepAliveMs(instance('a', { functionName: 'plain' }), nodeView([])), 1000);
    assert.equal(policy.keepAliveMs(instance('b', { functionName: 'gd' }), nodeView([])), Infinity);
    assert.equal(policy.of('gd').name, 'greedy-dual');
    assert.equal(policy.of('plain').name, 'fixed');
  });

  it("takes room from the default policy's functions first", () => {
    const policy = new KeepAliveByFunction('fixed', make, (fn) =>
      fn === 'gd' ? 'greedy-dual' : undefined,
    );
    const view = nodeView([
      instance('gd1', { functionName: 'gd', lastUsedAt: 0 }),
      instance('p1', { functionName: 'plain', lastUsedAt: 900 }),
    ]);
    policy.of('gd');
    policy.of('plain');
    assert.deepEqual(policy.victims(100, view), ['p1']);
    assert.deepEqual(policy.victims(200, view), ['p1', 'gd1']);
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
