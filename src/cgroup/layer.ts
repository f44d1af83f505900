import path from 'node:path';
import type { NodeConfig } from '../config.ts';
import type { IsolationLayer, LayerInstance } from '../sandbox/index.ts';
import type { MechanismStatus, SandboxSpec } from '../sandbox/index.ts';
import { detectCgroups } from './detect.ts';
import { joinCgroupCommand } from './join.ts';
import { ThawGuard } from './thaw-guard.ts';
import type { Cgroup, CgroupSystem, Controller } from './types.ts';

/** Top directory of every Petri cgroup, under the node's own cgroup in each hierarchy. */
export const CGROUP_PREFIX = 'petri';

/** Relative cgroup name of one instance: `petri/<nodeTag>/<instanceId>`. */
export function instanceCgroupName(nodeTag: string, instanceId: string): string {
  return `${CGROUP_PREFIX}/${nodeTag}/${instanceId}`;
}

export interface CgroupLayerOptions {
  /** Receives one message per missing mechanism, once. */
  warn?: (message: string) => void;
  /** The cgroup system to use; detected at `root` when absent. */
  system?: CgroupSystem;
  root?: string;
  /** Absolute path of the shell that joins the cgroup (default /bin/sh). */
  shell?: string;
}

/** A cgroup layer instance; `resetPeak` starts a per-invocation peak-memory window. */
export interface CgroupLayerInstance extends LayerInstance {
  resetPeak(): Promise<boolean>;
  readonly cgroup?: Cgroup;
}

/** Each mechanism Petri reports and the controllers it needs. */
const MECHANISMS: Record<string, Controller[]> = {
  'cgroup-cpu': ['cpu', 'cpuacct'],
  'cgroup-memory': ['memory'],
  'cgroup-pids': ['pids'],
  // Paused instances (idle ones frozen after a grace); without it idle instances stay running.
  'cgroup-freezer': ['freezer'],
};

/**
 * The cgroup isolation layer: per instance a cgroup with the CPU quota, the
 * memory limit (no swap) and the pids limit of its resources, joined by the
 * launch command before the instance runs. Where cgroups are off or missing it
 * still works: its instances wrap nothing, and `mechanisms()` says why.
 *
 * @example
 * const layer = cgroupLayer(config, nodeTag, { warn: (m) => log.warn(m) });
 * await layer.reconcile(); // removes cgroups of a crashed earlier run
 */
export function cgroupLayer(
  config: Pick<NodeConfig, 'isolation'>,
  nodeTag: string,
  options: CgroupLayerOptions = {},
): IsolationLayer {
  const disabled = config.isolation.cgroups === 'off';
  const system = disabled ? undefined : (options.system ?? detectCgroups(options.root));
  const statuses = mechanismStatuses(system);
  for (const status of statuses) {
    if (!status.active && !disabled)
      options.warn?.(`${status.name} isolation inactive: ${status.reason}`);
  }
  const active = system && statuses.some((status) => status.active) ? system : undefined;
  const prefix = `${CGROUP_PREFIX}/${nodeTag}`;
  let guard: ThawGuard | undefined;
  /** Started with the first instance that can be frozen, so a crash never leaves one frozen. */
  const guardFreezable = (): void => {
    const control = active?.freezeControl?.(prefix);
    if (!guard && control) guard = ThawGuard.start(options.shell ?? '/bin/sh', control);
  };

  return {
    mechanisms: () => statuses.map((status) => ({ ...status })),
    prepare: async (spec) => {
      if (!active) return noCgroup();
      const instance = await prepareCgroup(active, nodeTag, spec, options.shell);
      if (instance.freeze) guardFreezable();
      return instance;
    },
    reconcile: async () => {
      if (!active) return;
      await active.cleanup(prefix);
      // Crashed daemons' cpusets, this node's and those of nodes that will never start again.
      await active.removeStaleDaemonCpusets();
    },
    close: async () => {
      if (active) await active.cleanup(prefix);
      await guard?.close();
      guard = undefined;
    },
    instancesCpuMs: async () => active?.cpuUsageMs?.(prefix),
  };
}

function mechanismStatuses(system: CgroupSystem | undefined): MechanismStatus[] {
  return Object.entries(MECHANISMS).map(([name, needs]) => {
    if (!system)
      return { name, active: false, reason: 'disabled by config (isolation.cgroups=off)' };
    const missing = system.controllers().find((c) => needs.includes(c.name) && !c.usable);
    return missing ? { name, active: false, reason: missing.reason } : { name, active: true };
  });
}

async function prepareCgroup(
  system: CgroupSystem,
  nodeTag: string,
  spec: SandboxSpec,
  shell: string | undefined,
): Promise<CgroupLayerInstance> {
  const { initCpu, memoryMb, pidsMax, cpus } = spec.resources;
  // Start with the init share; the node applies the instance's own share once it is ready.
  const cgroup = await system.create(instanceCgroupName(nodeTag, spec.instanceId), {
    cpu: initCpu,
    cpus,
    memoryBytes: memoryMb * 1024 * 1024,
    pidsMax,
  });
  return {
    cgroup,
    wrap: (command) => joinCgroupCommand(cgroup.procsFiles(), command, shell),
    // Its own cgroup folders (not the cpuset one placement adds later), read-only inside.
    ownPaths: cgroup.procsFiles().map((file) => path.dirname(file)),
    setCpu: (limit) => cgroup.setCpu(limit),
    usage: () => cgroup.usage(),
    resetPeak: () => cgroup.resetPeak(),
    oomKilled: () => cgroup.oomKilled(),
    ...(cgroup.canFreeze ? { freeze: () => cgroup.freeze(), thaw: () => cgroup.thaw() } : {}),
    destroy: () => cgroup.destroy(),
  };
}

function noCgroup(): CgroupLayerInstance {
  return {
    wrap: (command) => command,
    resetPeak: async () => false,
    destroy: async () => undefined,
  };
}
