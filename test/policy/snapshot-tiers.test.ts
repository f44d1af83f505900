/**
 * Snapshot tier policies: the conformance cases every SnapshotTierPolicy
 * passes (its plan is one the manager can carry out, the same input gets
 * the same plan, frozen input is never written, a snapshot bigger than every
 * tier is not kept), then each policy's own sequences.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  invalidTierPlan,
  SNAPSHOT_TIER_POLICIES,
  type IncomingSnapshot,
  type StoredSnapshotView,
  type TierView,
} from '../../src/policy/index.ts';

const MB = 1024 * 1024;

function tiers(fast: number, slow: number, stored: readonly StoredSnapshotView[]): TierView[] {
  const used = (name: string) =>
    stored.filter((s) => s.tier === name).reduce((total, s) => total + s.bytes, 0);
  return [
    Object.freeze({ name: 'tmpfs', capacityBytes: fast * MB, usedBytes: used('tmpfs') }),
    Object.freeze({ name: 'disk', capacityBytes: slow * MB, usedBytes: used('disk') }),
  ];
}

function stored(key: string, tier: string, mb: number, lastUsedAt: number): StoredSnapshotView {
  return Object.freeze({ key, tier, bytes: mb * MB, restores: 1, lastUsedAt });
}

const incoming = (mb: number, now = 1000): IncomingSnapshot =>
  Object.freeze({ key: 'new/1', bytes: mb * MB, now });

/** Tier states from empty to full, with snapshots of every age. */
function cases(): { stored: StoredSnapshotView[]; fast: number; slow: number; mb: number }[] {
  const all: { stored: StoredSnapshotView[]; fast: number; slow: number; mb: number }[] = [];
  const layouts: StoredSnapshotView[][] = [
    [],
    [stored('a/1', 'tmpfs', 6, 10)],
    [stored('a/1', 'tmpfs', 6, 10), stored('b/1', 'tmpfs', 6, 20)],
    [stored('a/1', 'tmpfs', 6, 30), stored('b/1', 'disk', 6, 20), stored('c/1', 'disk', 6, 10)],
    [stored('a/1', 'tmpfs', 12, 5), stored('b/1', 'disk', 12, 2000)],
  ];
  for (const layout of layouts)
    for (const [fast, slow] of [
      [12, 12],
      [13, 40],
      [4, 8],
    ] as const)
      for (const mb of [1, 6, 12, 50]) all.push({ stored: layout, fast, slow, mb });
  // Only states a node can be in: every tier within its capacity.
  return all.filter((c) =>
    tiers(c.fast, c.slow, c.stored).every((t) => t.usedBytes <= t.capacityBytes),
  );
}

for (const [name, make] of Object.entries(SNAPSHOT_TIER_POLICIES)) {
  describe(`snapshot tier policy ${name}: conformance`, () => {
    it('makes only plans the manager can carry out (known snapshots and tiers, moves only to slower tiers, capacities kept)', () => {
      for (const c of cases()) {
        const views = tiers(c.fast, c.slow, c.stored);
        const plan = make().plan(views, c.stored, incoming(c.mb));
        if (!plan) continue;
        assert.equal(invalidTierPlan(plan, views, c.stored, incoming(c.mb)), undefined);
      }
    });

    it('keeps a snapshot that fits an empty tier, and none bigger than every tier', () => {
      assert.ok(make().plan(tiers(12, 12, []), [], incoming(6)));
      assert.equal(make().plan(tiers(12, 12, []), [], incoming(50)), undefined);
    });

    it('gives the same plan for the same input and writes nothing it is given', () => {
      for (const c of cases()) {
        const views = Object.freeze(tiers(c.fast, c.slow, c.stored));
        const snapshots = Object.freeze(c.stored);
        const first = make().plan(views, snapshots, incoming(c.mb));
        assert.deepEqual(make().plan(views, snapshots, incoming(c.mb)), first);
      }
    });
  });
}

describe('invalidTierPlan', () => {
  const views = tiers(12, 12, [stored('a/1', 'tmpfs', 6, 10)]);
  const snapshots = [stored('a/1', 'tmpfs', 6, 10)];
  it('refuses a plan over capacity, moving up, or naming what does not exist', () => {
    const check = (plan: Parameters<typeof invalidTierPlan>[0]) =>
      invalidTierPlan(plan, views, snapshots, incoming(8));
    assert.match(check({ tier: 'tmpfs', moves: [] })!, /over capacity/);
    assert.match(check({ tier: 'tmpfs', moves: [{ key: 'z/1' }] })!, /not stored/);
    assert.match(check({ tier: 'nvme', moves: [] })!, /no tier "nvme"/);
    assert.match(
      invalidTierPlan(
        { tier: 'disk', moves: [{ key: 'b/1', to: 'tmpfs' }] },
        tiers(12, 12, []),
        [stored('b/1', 'disk', 1, 1)],
        incoming(1),
      )!,
      /no slower/,
    );
    assert.equal(check({ tier: 'tmpfs', moves: [{ key: 'a/1', to: 'disk' }] }), undefined);
  });
});

describe('lru-demote', () => {
  const policy = SNAPSHOT_TIER_POLICIES['lru-demote']();
  it('places on the fastest tier with room and moves nothing', () => {
    assert.deepEqual(policy.plan(tiers(12, 12, []), [], incoming(6)), { tier: 'tmpfs', moves: [] });
  });

  it('demotes the least recently used snapshot to make room, and evicts what the last tier cannot keep', () => {
    const snapshots = [
      stored('old/1', 'tmpfs', 6, 10),
      stored('recent/1', 'tmpfs', 6, 500),
      stored('oldest/1', 'disk', 6, 5),
      stored('disk-recent/1', 'disk', 6, 400),
    ];
    const plan = policy.plan(tiers(12, 12, snapshots), snapshots, incoming(6));
    // old/1 leaves tmpfs for disk, where the oldest one on disk makes room for it.
    assert.deepEqual(plan, {
      tier: 'tmpfs',
      moves: [{ key: 'oldest/1' }, { key: 'old/1', to: 'disk' }],
    });
  });

  it('never displaces a snapshot used more recently than the one it moves', () => {
    // On disk only a recent snapshot: the demoted tmpfs one is evicted instead of displacing it.
    const snapshots = [stored('old/1', 'tmpfs', 12, 10), stored('hot/1', 'disk', 12, 900)];
    assert.deepEqual(policy.plan(tiers(12, 12, snapshots), snapshots, incoming(12)), {
      tier: 'tmpfs',
      moves: [{ key: 'old/1' }],
    });
  });

  it('puts a snapshot too big for the fast tier on the slow one', () => {
    const snapshots = [stored('a/1', 'tmpfs', 3, 10)];
    assert.deepEqual(policy.plan(tiers(4, 40, snapshots), snapshots, incoming(12)), {
      tier: 'disk',
      moves: [],
    });
  });
});

describe('no-eviction', () => {
  const policy = SNAPSHOT_TIER_POLICIES['no-eviction']();
  it('takes the first tier with room and never moves a stored snapshot', () => {
    const snapshots = [stored('a/1', 'tmpfs', 10, 10)];
    assert.deepEqual(policy.plan(tiers(12, 12, snapshots), snapshots, incoming(6)), {
      tier: 'disk',
      moves: [],
    });
    const full = [stored('a/1', 'tmpfs', 12, 10), stored('b/1', 'disk', 12, 10)];
    assert.equal(policy.plan(tiers(12, 12, full), full, incoming(1)), undefined);
  });
});
