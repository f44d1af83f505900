import type { CpuLimit, MechanismStatus, SandboxRootReport, SandboxSpec, Usage } from './types.ts';

/**
 * One isolation mechanism of the process driver (cgroups, network namespace,
 * bubblewrap). The driver prepares every active layer for an instance, lets
 * each wrap the launch command, and tears them down in reverse order.
 *
 * Layers wrap innermost first: the driver applies them in the order given, so
 * with [bwrap, network, cgroup] the command becomes
 * `cgroup-join … nsenter … bwrap … node host.js`.
 */
export interface IsolationLayer {
  /** Mechanisms this layer provides and whether each is active on this node. */
  mechanisms(): MechanismStatus[];
  /** Makes what one instance needs (a cgroup, a namespace). Undo with `destroy`. */
  prepare(spec: SandboxSpec): Promise<LayerInstance>;
  /** Removes leftovers of an earlier crashed run. */
  reconcile(): Promise<void>;
  /** Releases node-wide resources (bridge, namespace pool). */
  close(): Promise<void>;
  /** What instances' filesystems hold, for the layer that builds them. */
  sandboxRoot?(): SandboxRootReport | undefined;
  /** CPU time (ms) all of this node's instances used, the ended ones included, if measured. */
  instancesCpuMs?(): Promise<number | undefined>;
}

/** An open file the wrapped command inherits as descriptor `fd`. */
export interface InheritedDescriptor {
  /** 4 or above: 0–2 are stdio, 3 the protocol pipe. Layers must not pick the same one. */
  fd: number;
  /** The driver's descriptor; the driver closes it once the process is spawned. */
  source: number;
}

/** What every layer instance of one sandbox offers the others when it wraps the command. */
export interface WrapContext {
  /** Every layer instance's `ownPaths`: a layer that builds the filesystem shows them read-only. */
  ownPaths: string[];
}

export interface LayerInstance {
  /** Returns the command that runs `command` inside this layer. */
  wrap(command: string[], context?: WrapContext): string[];
  /**
   * Host paths that belong to this instance alone (its cgroup folders), to
   * be shown read-only inside: runtimes size themselves from them (Node's
   * heap from memory.limit_in_bytes / memory.max, Go and the JVM their
   * threads from the CPU quota).
   */
  ownPaths?: string[];
  /** Called once the instance's process exists (its pid is the wrapped command's). */
  attach?(pid: number): void;
  /**
   * Extra environment for the instance, from Petri itself (never the
   * function's own env: the launch chain must not see that).
   */
  env?: Record<string, string>;
  /** Opens what the wrapped command reads from inherited descriptors; called just before spawn. */
  descriptors?(): InheritedDescriptor[];
  /** The instance's address on the bridge, if this layer gives it one. */
  address?: string;
  setCpu?(limit: CpuLimit): Promise<void>;
  usage?(): Promise<Partial<Usage>>;
  /** Starts a new peak-memory window (after each invocation's usage is read). */
  resetPeak?(): Promise<boolean>;
  /** True when the kernel killed the instance for its memory limit. */
  oomKilled?(): Promise<boolean>;
  /** Freezes every process of the instance (memory kept, no CPU); present only where it works. */
  freeze?(): Promise<void>;
  /** Undoes `freeze`; harmless when not frozen. */
  thaw?(): Promise<void>;
  /** Kills what is left in the layer and removes it. Idempotent. */
  destroy(): Promise<void>;
}
