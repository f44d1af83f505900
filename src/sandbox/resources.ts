import os from 'node:os';
import type { ResourceRules } from '../config.ts';
import type { ResourceLimits } from './types.ts';

/**
 * Sizes CPU and bandwidth from memory (DESIGN §9): memoryMb / mbPerVcpu vCPU,
 * at least `minVcpu`, at most the node's cores; bandwidth scales the same way.
 *
 * @example resourcesFor(1769, rules) // { cpu: 1, bandwidthMbit: 600, ... }
 */
export function resourcesFor(
  memoryMb: number,
  rules: ResourceRules,
  cores = os.availableParallelism(),
): ResourceLimits {
  const share = memoryMb / rules.mbPerVcpu;
  const cpu = Math.min(cores, Math.max(rules.minVcpu, share));
  return {
    memoryMb,
    cpu,
    initCpu: Math.min(cores, Math.max(cpu, rules.initVcpu)),
    bandwidthMbit: share * rules.mbitPerVcpu,
    burstBytes: rules.burstBytes,
    pidsMax: rules.pidsMax,
    tmpSizeMb: rules.tmpSizeMb,
  };
}
