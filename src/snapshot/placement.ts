import type { TierPlacement } from './types.ts';

/** The first tier (the config lists the fastest first) with room for the blob. */
export const fastestWithRoom: TierPlacement = (tiers, bytes) =>
  tiers.find((tier) => tier.capacityBytes - tier.usedBytes >= bytes)?.name;
