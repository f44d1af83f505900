/**
 * Snapshot tier policies: where a new restore snapshot lives among the
 * node's storage tiers (fastest first, each with a capacity), and which
 * stored snapshots move to a slower tier or are evicted to make room. A
 * policy sees frozen views and returns a plan; the SnapshotManager checks
 * the plan (`invalidTierPlan`) and carries it out.
 */

/** One storage tier as a policy sees it. */
export interface TierView {
  readonly name: string;
  readonly capacityBytes: number;
  readonly usedBytes: number;
}

/** One stored (ready) snapshot as a policy sees it. */
export interface StoredSnapshotView {
  /** `name/version`. */
  readonly key: string;
  readonly tier: string;
  readonly bytes: number;
  readonly restores: number;
  /** The last restore from it, or when it was placed if none yet (node clock, ms). */
  readonly lastUsedAt: number;
}

/** A snapshot to place: the newest, used now. */
export interface IncomingSnapshot {
  readonly key: string;
  readonly bytes: number;
  readonly now: number;
}

/** One stored snapshot moved to a slower tier (`to`), or evicted (`to` undefined). */
export interface TierMove {
  readonly key: string;
  readonly to?: string;
}

export interface TierPlan {
  /** The tier the new snapshot goes to. */
  readonly tier: string;
  /** Carried out in order, before the new snapshot is placed. */
  readonly moves: readonly TierMove[];
}

export interface SnapshotTierPolicy {
  readonly name: string;
  /** A plan for the incoming snapshot; undefined: it cannot be kept. */
  plan(
    tiers: readonly TierView[],
    stored: readonly StoredSnapshotView[],
    incoming: IncomingSnapshot,
  ): TierPlan | undefined;
}

/** Why a plan cannot be carried out, or undefined when it can. */
export function invalidTierPlan(
  plan: TierPlan,
  tiers: readonly TierView[],
  stored: readonly StoredSnapshotView[],
  incoming: IncomingSnapshot,
): string | undefined {
  const rank = new Map(tiers.map((tier, i) => [tier.name, i]));
  const where = new Map(stored.map((s) => [s.key, s]));
  const used = new Map(tiers.map((tier) => [tier.name, tier.usedBytes]));
  for (const move of plan.moves) {
    const snapshot = where.get(move.key);
    if (!snapshot) return `it moves "${move.key}", which is not stored`;
    const from = rank.get(snapshot.tier)!;
    const to = move.to === undefined ? undefined : rank.get(move.to);
    if (move.to !== undefined && to === undefined) return `it names no tier "${move.to}"`;
    if (to !== undefined && to <= from) return `it moves "${move.key}" to a tier no slower`;
    used.set(snapshot.tier, used.get(snapshot.tier)! - snapshot.bytes);
    if (move.to === undefined) {
      where.delete(move.key);
      continue;
    }
    used.set(move.to, used.get(move.to)! + snapshot.bytes);
    where.set(move.key, { ...snapshot, tier: move.to });
  }
  if (!rank.has(plan.tier)) return `it names no tier "${plan.tier}"`;
  used.set(plan.tier, used.get(plan.tier)! + incoming.bytes);
  for (const tier of tiers) {
    if (used.get(tier.name)! > tier.capacityBytes)
      return `tier "${tier.name}" would be over capacity`;
  }
  return undefined;
}

/** The first tier with room, no moves: a snapshot that fits no tier is not kept. */
export class FastestWithRoom implements SnapshotTierPolicy {
  readonly name = 'no-eviction';

  plan(tiers: readonly TierView[], _stored: unknown, incoming: IncomingSnapshot) {
    const tier = tiers.find((t) => t.capacityBytes - t.usedBytes >= incoming.bytes);
    return tier && { tier: tier.name, moves: [] };
  }
}

interface Placed {
  key: string;
  bytes: number;
  lastUsedAt: number;
}

/**
 * A multi-tier LRU: the newcomer goes to the fastest tier it fits; to make
 * room there, snapshots used less recently than it are demoted to the next
 * tier (making room there the same way), and those no tier keeps are
 * evicted. A snapshot only ever moves to a slower tier.
 */
export class LruDemote implements SnapshotTierPolicy {
  readonly name = 'lru-demote';

  plan(
    tiers: readonly TierView[],
    stored: readonly StoredSnapshotView[],
    incoming: IncomingSnapshot,
  ): TierPlan | undefined {
    const contents = tiers.map((tier) =>
      stored
        .filter((s) => s.tier === tier.name)
        .map((s) => ({ key: s.key, bytes: s.bytes, lastUsedAt: s.lastUsedAt })),
    );
    const moves: TierMove[] = [];
    const newcomer = { key: incoming.key, bytes: incoming.bytes, lastUsedAt: incoming.now };
    const tier = insert(tiers, contents, newcomer, 0, moves);
    return tier === undefined ? undefined : { tier: tiers[tier]!.name, moves };
  }
}

/** Puts `item` on tier `from` or a slower one; returns the tier index, undefined: evicted. */
function insert(
  tiers: readonly TierView[],
  contents: Placed[][],
  item: Placed,
  from: number,
  moves: TierMove[],
): number | undefined {
  for (let i = from; i < tiers.length; i++) {
    const list = contents[i]!;
    const free = tiers[i]!.capacityBytes - sum(list);
    // Less recently used first; the key breaks ties, so a plan is the same for the same input.
    const older = list
      .filter((p) => p.lastUsedAt < item.lastUsedAt)
      .sort((a, b) => a.lastUsedAt - b.lastUsedAt || a.key.localeCompare(b.key));
    if (free + sum(older) < item.bytes) continue;
    let room = free;
    for (const victim of older) {
      if (room >= item.bytes) break;
      list.splice(list.indexOf(victim), 1);
      room += victim.bytes;
      const to = insert(tiers, contents, victim, i + 1, moves);
      moves.push(to === undefined ? { key: victim.key } : { key: victim.key, to: tiers[to]!.name });
    }
    list.push(item);
    return i;
  }
  return undefined;
}

function sum(list: readonly Placed[]): number {
  return list.reduce((total, p) => total + p.bytes, 0);
}

export const SNAPSHOT_TIER_POLICIES = {
  'lru-demote': () => new LruDemote(),
  'no-eviction': () => new FastestWithRoom(),
} as const satisfies Record<string, () => SnapshotTierPolicy>;

export type SnapshotTierPolicyName = keyof typeof SNAPSHOT_TIER_POLICIES;

export const SNAPSHOT_TIER_POLICY_NAMES = Object.keys(SNAPSHOT_TIER_POLICIES) as [
  SnapshotTierPolicyName,
  ...SnapshotTierPolicyName[],
];
