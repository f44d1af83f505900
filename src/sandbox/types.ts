import type { FromInstance, LogStream, ToInstance } from '../runtime/index.ts';

/** Resources one instance gets, computed from its memoryMb by `resourcesFor`. */
export interface ResourceLimits {
  memoryMb: number;
  /** vCPUs, e.g. 0.072 for 128 MB. */
  cpu: number;
  /** vCPUs while the instance initialises (until `ready`), then `cpu` applies. */
  initCpu: number;
  /** Shaped bandwidth, both directions, in Mbit/s. */
  bandwidthMbit: number;
  burstBytes: number;
  pidsMax: number;
  tmpSizeMb: number;
  /** The cores the instance starts on (a cpuset such as "1"); absent: any core. */
  cpus?: string;
}

/** What the instance host runs: a node handler, a command per request, or an HTTP server. */
export type InstanceEntry =
  | { runtime: 'node'; bundle: string; exportName: string }
  | { runtime: 'exec'; command: string[] }
  | { runtime: 'http'; command: string[] }
  | { runtime: 'service'; command: string[] };

/**
 * An instance's place in a function group (DESIGN §10): the network layer
 * lets the group's members reach each other and the coordinator, and the
 * instance host asks the coordinator for its rank and peers.
 */
export interface GroupMembership {
  name: string;
  /** A number the node gave the group, unique among its live groups (names its firewall chain). */
  id: number;
  rank: number;
  /** The coordination service's URL on the gateway, e.g. http://10.213.0.1:7946. */
  coordinator: string;
}

/**
 * The runtime part of a sandbox: what a generic runtime has before it knows
 * its function (a prewarmed runtime is made from this part alone).
 */
export interface RuntimePart {
  instanceId: string;
  resources: ResourceLimits;
  /** `inbound`: false, true (any port) or the TCP ports the node and group peers may connect to. */
  network: { inbound: boolean | readonly number[]; egress: boolean };
  /**
   * What Node runs instead of the instance host script, e.g. a snapshot
   * restore (`--snapshot-blob F`) or build. Made by the daemon, never by the
   * function; absolute files named here are shown read-only inside.
   */
  nodeArgs?: string[];
  /** One folder the sandbox may write (a snapshot build's output), owned by its user. */
  writableDir?: string;
}

/**
 * The function part: its code, entry and env. A cold start has it from the
 * first step; a prewarmed runtime gets it with `bind` (PrewarmSandbox).
 */
export interface FunctionPart {
  functionName: string;
  version: number;
  /** The function version's folder (read-only inside the sandbox): code and bundle. */
  codeDir: string;
  /** Where the instance runs (inside codeDir): the function's own files. */
  cwd: string;
  entry: InstanceEntry;
  env: Record<string, string>;
  /** Set for members of a function group. */
  group?: GroupMembership;
}

export interface SandboxSpec extends RuntimePart, FunctionPart {}

/** A prewarmed runtime: the runtime part of a node instance, no function. */
export interface PrewarmSpec extends RuntimePart {
  runtime: 'node';
}

/**
 * A sandbox running the instance host with no function (it waits for a
 * `bind` frame). Its code folder is empty until `bindCode`.
 */
export interface PrewarmSandbox extends Sandbox {
  /** Where a bound version folder appears inside the sandbox. */
  readonly codeMount: string;
  /** Shows one version folder read-only at `codeMount`; once per sandbox. */
  bindCode(codeDir: string): Promise<void>;
}

/** One isolation mechanism and whether this node uses it. */
export interface MechanismStatus {
  name: string;
  active: boolean;
  /** Why it is off, when it is. */
  reason?: string;
}

export interface IsolationReport {
  driver: string;
  mechanisms: MechanismStatus[];
  /** The programs the launch chain runs as root, by absolute path, and where they were found. */
  launch?: LaunchReport;
  /** What an instance's filesystem holds; absent when bwrap is inactive. */
  sandboxRoot?: SandboxRootReport;
}

export interface LaunchReport {
  /** The only folders searched for the tools, once at start. */
  trustedPath: string;
  /** Each tool's path, or null when it is not there. */
  tools: Record<string, string | null>;
  /** PATH inside instances (also the launch chain's, which names every program absolutely). */
  instancePath: string;
}

/** An instance's filesystem (`sandbox.*` in the node config). */
export interface SandboxRootReport {
  /** Host uids instances run as (gid = uid), one per live instance, all named `user`. */
  uids: { first: number; count: number; user: string };
  /** Host paths shown read-only at the same place, or recreated as the host's symlink. */
  paths: { path: string; symlink?: string }[];
  /** Entries of the curated /etc. */
  etc: { copied: string[]; generated: string[] };
  /** The Node binary instances run, shown read-only at its host path. */
  node: string;
  /** Private tmpfs mounts, each capped at the function's tmpSizeMb. */
  tmpfs: string[];
  /** HOME and the user's home in passwd. */
  home: string;
  /** True when a seccomp filter stops instances from making user namespaces. */
  userNamespacesBlocked: boolean;
}

export interface CpuLimit {
  /** vCPUs (quota ÷ period). */
  cpu: number;
  /** Optional cpuset, e.g. "0" or "0-1", for schedulers that pin classes to cores. */
  cpus?: string;
}

/** Resources an instance has used since it started. */
export interface Usage {
  cpuMs: number;
  peakMemoryBytes: number;
  netRxBytes: number;
  netTxBytes: number;
}

/** How a sandbox ended. `oomKilled` is true when its memory limit killed it. */
export interface SandboxExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  oomKilled: boolean;
  /** The last few KB the instance wrote to stderr. */
  stderrTail: string;
  /** Set when the driver killed the instance for a bad frame: what was wrong with it. */
  protocolError?: string;
}

/** Bounds on what an instance sends the daemon (node config: responseLimitBytes, logs.lineBytes). */
export interface InstanceLimits {
  /** The largest result, as serialised JSON; frames may exceed it only by their envelope. */
  responseBytes: number;
  /** The longest stdout/stderr/log line kept; longer ones are cut with a marker. */
  logLineBytes: number;
}

export interface SandboxEvents {
  message: (message: FromInstance) => void;
  output: (stream: LogStream, line: string) => void;
  exit: (exit: SandboxExit) => void;
}

export interface Sandbox {
  readonly id: string;
  /** Its IP on the Petri bridge, when it has its own network namespace. */
  readonly address?: string;
  readonly pid: number | undefined;
  send(message: ToInstance): void;
  on<E extends keyof SandboxEvents>(event: E, listener: SandboxEvents[E]): void;
  /** Moves the instance to another CPU limit (schedulers use it). */
  setCpu(limit: CpuLimit): Promise<void>;
  /** Resources used since start; `resetPeak` then starts a new peak-memory window. */
  usage(options?: { resetPeak?: boolean }): Promise<Usage>;
  /**
   * Whether `freeze` works for this sandbox (the node has a cgroup freezer).
   * Absent or false: the sandbox cannot be paused.
   */
  readonly freezable?: boolean;
  /** Stops every process of the sandbox, keeping its memory; resolves once all are frozen. */
  freeze?(): Promise<void>;
  /** Lets a frozen sandbox run again. */
  thaw?(): Promise<void>;
  /** Kills the instance and removes everything made for it. Idempotent. Works while frozen. */
  destroy(): Promise<void>;
}

export interface SandboxDriver {
  readonly name: string;
  capabilities(): IsolationReport;
  /** Resolves once the process is started (not yet `ready`). */
  create(spec: SandboxSpec): Promise<Sandbox>;
  /**
   * Starts a prewarmed runtime (resolves before its `ready`); absent or
   * `prewarmUnsupported()` set: this driver cannot.
   */
  createPrewarm?(spec: PrewarmSpec): Promise<PrewarmSandbox>;
  /** Why `createPrewarm` cannot work on this node, if it cannot. */
  prewarmUnsupported?(): string | undefined;
  /** Removes leftovers of a crashed earlier run (cgroups, namespaces, interfaces). */
  reconcile(): Promise<void>;
  /** Stops everything the driver made. */
  close(): Promise<void>;
  /** CPU time (ms) of all this node's instances so far, ended ones included, if measured. */
  instancesCpuMs?(): Promise<number | undefined>;
}
