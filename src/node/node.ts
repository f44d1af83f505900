import os from 'node:os';
import type { Logger } from 'pino';
import type { DaemonCpuset } from '../cgroup/index.ts';
import type { NodeConfig } from '../config.ts';
import { PetriError } from '../errors.ts';
import {
  KeepAliveByFunction,
  makeKeepAlivePolicy,
  PLACEMENT_POLICIES,
  SNAPSHOT_TIER_POLICIES,
  START_PATH_POLICIES,
  type InstanceState,
  type KeepAlivePolicy,
  type PlacementPolicy,
} from '../policy/index.ts';
import type { InstanceNode } from '../runtime/index.ts';
import {
  createScheduler,
  type CpuScheduler,
  type PlacementStatus,
  type SchedulerStatus,
} from '../sched/index.ts';
import type { IsolationReport, SandboxDriver } from '../sandbox/index.ts';
import { FileSnapshotManager, type SnapshotManager } from '../snapshot/index.ts';
import type { FunctionSpec, VersionSelector } from '../spec/index.ts';
import type { FunctionRecord, InvocationRecord, Store } from '../store/index.ts';
import { FunctionCatalog, type FunctionView } from './catalog.ts';
import { AutoscaleDriver } from './autoscaler.ts';
import { systemClock, type Clock } from './clock.ts';
import { InstanceLauncher } from './launcher.ts';
import { PrewarmRuntimes, type PrewarmSetView } from './prewarm-runtimes.ts';
import {
  Invoker,
  type ExchangeContext,
  type HttpEndpoint,
  type InvokeResult,
  type UrlCall,
} from './invoker.ts';
import type { FunctionEntry } from './pool.ts';
import { LogKeeper } from './logs.ts';
import { NodeMetrics } from './metrics.ts';
import { Pool } from './pool.ts';
import { UsageSink } from './sink.ts';
import type { AliasView, ResolvedTarget, VersionView } from './versions.ts';
import { Coordinator } from './coordinator.ts';
import { GroupManager, type GroupView, type MemberState } from './groups.ts';
import type { MembershipStream } from './membership-stream.ts';
import type { Instance } from './instance.ts';

export interface NodeDeps {
  config: NodeConfig;
  store: Store;
  driver: SandboxDriver;
  log: Logger;
  policy?: KeepAlivePolicy;
  placement?: PlacementPolicy;
  /** Moves the daemon into a cpuset of its own, for CPU placement; absent: placement is off. */
  daemonCpuset?: () => Promise<DaemonCpuset | undefined>;
  /** Time and timers of the pool and its instances (default: the system's). */
  clock?: Clock;
  /** The Node binary instances run, checked at start (default: the daemon's own). */
  instanceNode?: InstanceNode;
  /** The bridge's gateway address, where the groups' coordinator listens; absent: no groups. */
  gateway?: string;
}

/** One live instance as `GET /v1/functions/{name}` lists it. */
export interface InstanceListing {
  id: string;
  version: number;
  state: InstanceState;
  /** Its address on the bridge (absent without network isolation). */
  address?: string;
  /** What the node and group peers may connect to: every port, these TCP ports, or none. */
  ports: 'all' | number[];
  group?: string;
  rank?: number;
}

/** A function version a function URL resolved to. `entry` is the node's own. */
export interface UrlTarget {
  readonly entry: FunctionEntry;
  /** The version's own record (not necessarily the current one). */
  readonly record: FunctionRecord;
  readonly spec: FunctionSpec;
  readonly version: number;
}

export interface NodeInfo {
  version: string;
  /** The daemon's own Node version. */
  nodeVersion: string;
  /** The Node binary instances run and the version it reports. */
  instanceNodeBinary: string;
  instanceNodeVersion: string;
  cores: number;
  memoryBudgetMb: number;
  memoryInUseMb: number;
  /**
   * Memory of idle (and paused) instances integrated over time since the
   * node started, MB·ms: the "wasted memory" of keep-alive studies, as the
   * simulator computes it from the same pool.
   */
  idleMemoryMbMs: number;
  sandboxDriver: string;
  isolation: IsolationReport;
  placement: PlacementStatus;
  /** How invocations get instances: the start-path policy and whether idle instances are paused. */
  startPaths: StartPathsStatus;
  /** The snapshot tiers, their use and the tier policy. */
  snapshots: ReturnType<SnapshotManager['tierStatus']>;
  scheduler: SchedulerStatus;
  /** Invocable (pool) instances by state; group members are counted in `groups`. */
  instances: Record<Exclude<InstanceState, 'dead'>, number>;
  /** Running function groups and their members (service instances) by state. */
  groups: { running: number; members: Record<MemberState, number> };
  /** Prewarmed generic runtimes (node config `prewarm`): each set and the memory they hold. */
  prewarm: { sets: PrewarmSetView[]; memoryMb: number };
  /**
   * CPU the node has used since it started, ms: its instances' (from each
   * one's cgroup, read at start, after every invocation and at stop, so
   * start-up counts and a live instance's CPU since its last read does not)
   * and the daemon's own.
   */
  /** Added by the API from `cpuUsage()` (it reads cgroups): CPU time the node used. */
  cpu?: { daemonMs: number; instancesMs: number | null };
  functions: number;
  uptimeMs: number;
}

const PETRI_VERSION = '0.1.0';

export interface StartPathsStatus {
  policy: string;
  /** True when idle instances are frozen after `pauseGraceMs`. */
  pausing: boolean;
  pauseGraceMs: number;
  /** Why idle instances are not paused, when they are not. */
  reason?: string;
}

/**
 * The orchestrator, assembled from its parts: the function catalog (deploys
 * and versions), the invoker (Source → Pool → Worker), the usage sink, the
 * instance launcher and CPU placement, with the store beside them.
 */
export class PetriNode {
  readonly metrics: NodeMetrics;
  private readonly pool: Pool;
  private readonly scheduler: CpuScheduler;
  private readonly autoscaler: AutoscaleDriver;
  private readonly catalog: FunctionCatalog;
  private readonly invoker: Invoker;
  private readonly sink: UsageSink;
  private readonly groups: GroupManager;
  private readonly coordinator: Coordinator;
  private readonly clock: Clock;
  /** The node's cores, counted before placement may pin the daemon to one of them. */
  private readonly cores = os.availableParallelism();
  private readonly started: number;
  private closing = false;
  private readonly snapshots: SnapshotManager;
  private readonly prewarms: PrewarmRuntimes;

  constructor(private readonly deps: NodeDeps) {
    const { config, store, log } = deps;
    const clock = deps.clock ?? systemClock;
    this.clock = clock;
    this.started = clock.now();
    const logs = new LogKeeper(store, config.logs, clock);
    this.scheduler = createScheduler(
      config.scheduler,
      clock,
      this.cores,
      (err) => log.debug({ err }, 'cpu class change failed'),
      {
        policy: deps.placement ?? PLACEMENT_POLICIES[config.placement.policy](),
        intervalMs: config.placement.intervalMs,
        instances: () => this.pool.allInstances(),
        takePeakInFlight: () => this.pool.takePeakInFlight(),
        log,
        daemonCpuset: deps.daemonCpuset ?? (async () => undefined),
      },
    );
    const launcher = new InstanceLauncher({
      config,
      driver: deps.driver,
      store,
      clock,
      logs,
      cores: this.cores,
      startCpus: () => this.scheduler.placement.startCpus(),
      scheduler: this.scheduler,
      onDead: (instance) => this.pool.forget(instance),
      onVersionUnused: (name, version) => this.catalog.versionUnused(name, version),
    });
    this.snapshots = new FileSnapshotManager({
      config: config.snapshots,
      stateDir: config.stateDir,
      driver: deps.driver,
      sandboxSpec: (record, nodeArgs, dir) => launcher.builderSpec(record, nodeArgs, dir),
      log,
      now: () => clock.now(),
      tierPolicy: SNAPSHOT_TIER_POLICIES[config.snapshots.tierPolicy](),
    });
    launcher.snapshots = this.snapshots;
    this.pool = new Pool(
      {
        memoryBudgetMb: config.memoryBudgetMb,
        maxInstancesPerFunction: config.maxInstancesPerFunction,
        queueMaxSize: config.queue.maxSize,
        queueMaxWaitMs: config.queue.maxWaitMs,
        pauseGraceMs: config.startPaths.pause ? config.startPaths.pauseGraceMs : undefined,
      },
      deps.policy ??
        new KeepAliveByFunction(
          config.keepAlivePolicy,
          (name) => makeKeepAlivePolicy(name, { keepAliveMs: config.keepAliveMs }),
          (fn) => this.pool.entry(fn)?.record.spec.keepAlive.policy,
        ),
      {
        startInstance: (record, path) => launcher.start(record, undefined, undefined, path),
        snapshotReady: (record) =>
          record.spec.snapshot && this.snapshots.blobFor(record.name, record.version) !== undefined,
        prewarmsFor: (record) => this.prewarms.readyFor(record),
        claimPrewarm: (record) => this.prewarms.claim(record),
      },
      clock,
      START_PATH_POLICIES[config.startPaths.policy](),
    );
    this.prewarms = new PrewarmRuntimes({
      config: config.prewarm,
      driver: deps.driver,
      clock,
      startTimeoutMs: config.startTimeoutMs,
      spec: (entry) => launcher.prewarmSpec(entry),
      bind: (record, sandbox) => launcher.bind(record, sandbox),
      reserveMemory: (mb) => this.pool.reserveFreeMemory(mb),
      releaseMemory: (mb) => this.pool.releaseMemory(mb),
      warn: (message, details) => log.warn(details ?? {}, message),
    });
    this.autoscaler = new AutoscaleDriver({
      pool: this.pool,
      clock,
      config: config.autoscaling,
      record: (decisions, keep) => store.recordAutoscaleDecisions(decisions, keep),
    });
    this.metrics = new NodeMetrics({
      queueLengths: () =>
        new Map([...this.pool.functions].map(([name, entry]) => [name, entry.queue.length])),
      instanceCounts: () => this.pool.instanceCounts(),
      memoryInUseMb: () => this.pool.memoryInUseMb(),
      placement: () => {
        const status = this.scheduler.placement.status();
        return status.active ? status.current : undefined;
      },
      autoscaleDecisions: () => this.autoscaler.decisions(),
      groupMembers: () => this.groups.memberCounts(),
      prewarms: () => this.prewarms.views(),
    });
    this.catalog = new FunctionCatalog({
      stateDir: config.stateDir,
      store,
      pool: this.pool,
      log,
      clock,
      deploy: config.deploy,
      inUse: (name, version) => launcher.inUse(name, version),
      checkSpec: (spec) => this.checkClasses(spec),
      snapshots: this.snapshots,
      onFunctionSet: (record) => this.autoscaler.limitStarts(record.name),
    });
    this.groups = new GroupManager({
      config: config.groups,
      clock,
      requireFunction: (name) => this.catalog.require(name).record,
      startMember: (record, membership, onCreated) => launcher.start(record, membership, onCreated),
      reserveMemory: (mb) => this.pool.reserveMemory(mb),
      releaseMemory: (mb) => this.pool.releaseMemory(mb),
      coordinator: () => this.startCoordinator(),
    });
    this.coordinator = new Coordinator(this.groups);
    this.sink = new UsageSink(store, log);
    this.invoker = new Invoker({
      pool: this.pool,
      store,
      metrics: this.metrics,
      sink: this.sink,
      clock,
      logs,
    });
  }

  /** Recovers after a crash: fails unfinished invocations, removes leftovers, loads functions. */
  async start(): Promise<void> {
    const failed = this.deps.store.failUnfinished(
      'NodeRestarted',
      'the node restarted while the invocation was queued or running',
      Math.round(this.clock.now()),
    );
    if (failed > 0)
      this.deps.log.warn({ failed }, 'marked unfinished invocations as NodeRestarted');
    await this.deps.driver.reconcile();
    await this.snapshots.reconcile();
    for (const record of this.deps.store.listFunctions()) {
      this.pool.setFunction(record);
      this.autoscaler.limitStarts(record.name);
      if (record.spec.snapshot) this.snapshots.build(record);
    }
    this.catalog.loadAliases();
    await this.catalog.sweepAll();
    await this.scheduler.placement.start();
    this.autoscaler.start();
    this.prewarms.start();
  }

  // ---- functions -------------------------------------------------------

  /** A spec may name only classes the node's scheduler has. */
  private checkClasses(spec: FunctionSpec): void {
    const known = Object.keys(this.deps.config.scheduler.classes);
    const issues = Object.entries(spec.microtasks ?? {})
      .filter(([, cls]) => !known.includes(cls))
      .map(([phase, cls]) => ({
        field: `microtasks.${phase}`,
        message: `names class "${cls}", which the node does not have (${known.join(', ')})`,
      }));
    if (issues.length === 0) return;
    const text = issues.map((i) => `${i.field} ${i.message}`).join('; ');
    throw new PetriError('InvalidSpec', `invalid function spec: ${text}`, { issues });
  }

  /** Deploys a new function or a new version of one. */
  async deploy(name: string, body: unknown): Promise<{ view: FunctionView; created: boolean }> {
    return this.catalog.deploy(name, body);
  }

  listFunctions(): FunctionView[] {
    return this.catalog.list();
  }

  getFunction(name: string): FunctionView & { instanceList: InstanceListing[] } {
    const view = this.catalog.get(name);
    const pooled = [...(this.pool.entry(name)?.instances ?? [])].map((i) => listing(i));
    const members = this.groups
      .list()
      .filter((group) => group.function === name)
      .flatMap((group) =>
        group.members.flatMap((member) => {
          const instance = this.groups.instanceOf(group.name, member.rank);
          return instance ? [listing(instance, group.name, member.rank)] : [];
        }),
      );
    return { ...view, instanceList: [...pooled, ...members].filter((i) => i.state !== 'dead') };
  }

  async removeFunction(name: string): Promise<void> {
    this.catalog.require(name);
    const groups = this.groups.list().filter((group) => group.function === name);
    await Promise.all(groups.map((group) => this.groups.remove(group.name)));
    await this.catalog.remove(name);
  }

  /** A new version with the current code and a merge patch of its spec (PATCH). */
  async patchFunction(name: string, patch: unknown): Promise<FunctionView> {
    return this.catalog.patch(name, patch);
  }

  // ---- versions and aliases ---------------------------------------------

  listVersions(name: string): VersionView[] {
    return this.catalog.versions(name);
  }

  /**
   * The version an invocation of `name` runs under `selector`: `{}` the
   * current one, `{version}` that one, `{alias}` the alias's (or its canary,
   * for its share of calls: each call of this with an alias counts as one).
   * Throws FunctionNotFound, VersionNotFound, AliasNotFound, InvalidRequest.
   */
  resolveTarget(name: string, selector: VersionSelector = {}): ResolvedTarget {
    return this.catalog.resolveTarget(name, selector);
  }

  listAliases(name: string): AliasView[] {
    return this.catalog.listAliases(name);
  }

  getAlias(name: string, alias: string): AliasView {
    return this.catalog.getAlias(name, alias);
  }

  setAlias(
    name: string,
    alias: string,
    body: unknown,
  ): Promise<{ view: AliasView; created: boolean }> {
    return this.catalog.setAlias(name, alias, body);
  }

  deleteAlias(name: string, alias: string): Promise<void> {
    return this.catalog.deleteAlias(name, alias);
  }

  // ---- invocations -----------------------------------------------------

  /**
   * Runs one invocation to its end; errors are in the record, never thrown.
   * `target` picks the version (a selector, or what resolveTarget returned);
   * a bad selector throws, as it is the caller's error, not the invocation's.
   */
  async invoke(
    name: string,
    event: unknown,
    target: VersionSelector | ResolvedTarget = {},
  ): Promise<InvokeResult> {
    const entry = this.invocable(name);
    return this.invoker.invoke(entry, event, this.targetRecord(name, target));
  }

  /** Accepts an invocation, records it durably as queued, and runs it in the background. */
  invokeAsync(
    name: string,
    event: unknown,
    target: VersionSelector | ResolvedTarget = {},
  ): InvocationRecord {
    const entry = this.invocable(name);
    return this.invoker.invokeAsync(entry, event, this.targetRecord(name, target));
  }

  private targetRecord(name: string, target: VersionSelector | ResolvedTarget) {
    if ('record' in target && target.name === name) return target.record;
    return this.catalog.resolveTarget(name, target as VersionSelector).record;
  }

  /**
   * Which function version a function URL request goes to: the current one,
   * or the one `selector` (a version or an alias) picks.
   */
  urlTarget(name: string, selector: VersionSelector = {}): UrlTarget {
    const entry = this.invocable(name);
    const { record } = this.catalog.resolveTarget(name, selector);
    return { entry, record, spec: record.spec, version: record.version };
  }

  /** A function URL request to a `node`/`exec` function: see Invoker.invokeUrl. */
  invokeUrl<R extends { statusCode: number }>(
    target: UrlTarget,
    event: (invocationId: string) => unknown,
    call: UrlCall<R>,
  ) {
    return this.invoker.invokeUrl(target.entry, target.record, event, call);
  }

  /** A function URL request proxied to an `http` function's server: see Invoker.proxy. */
  proxy(
    target: UrlTarget,
    call: { method: string; path: string },
    exchange: (endpoint: HttpEndpoint, context: ExchangeContext) => Promise<number>,
  ): Promise<InvocationRecord> {
    return this.invoker.proxy(target.entry, target.record, call, exchange);
  }

  private invocable(name: string): ReturnType<FunctionCatalog['require']> {
    const entry = this.catalog.require(name);
    if (entry.record.spec.runtime === 'service') {
      throw new PetriError(
        'NotInvocable',
        `function "${name}" is a service: run it as a group (POST /v1/groups)`,
      );
    }
    return entry;
  }

  // ---- groups ------------------------------------------------------------

  createGroup(body: unknown): Promise<GroupView> {
    return this.groups.create(body);
  }

  listGroups(): GroupView[] {
    return this.groups.list();
  }

  getGroup(name: string): GroupView {
    return this.groups.get(name);
  }

  scaleGroup(name: string, body: unknown): Promise<GroupView> {
    return this.groups.scale(name, body);
  }

  /**
   * The node side of a group's membership stream (the API's
   * GET /v1/groups/{name}/events): the joined members now, then each change.
   */
  watchGroup(name: string): MembershipStream {
    const first = { type: 'members', ...this.groups.members(name) };
    return {
      first,
      subscribe: (send, end) => this.groups.subscribe(name, send, end),
    };
  }

  removeGroup(name: string): Promise<void> {
    return this.groups.remove(name);
  }

  /** Where members find the coordinator; groups need the node's network boundary. */
  private async startCoordinator(): Promise<string> {
    const active = new Map(
      this.deps.driver.capabilities().mechanisms.map((m) => [m.name, m] as const),
    );
    for (const name of ['netns', 'firewall']) {
      const mechanism = active.get(name);
      if (!mechanism?.active) {
        throw new PetriError(
          'CapacityExceeded',
          `function groups need the ${name} mechanism, which is inactive on this node: ${mechanism?.reason ?? 'not provided by the driver'}`,
        );
      }
    }
    if (!this.deps.gateway) {
      throw new PetriError(
        'CapacityExceeded',
        'function groups need the node network (no gateway)',
      );
    }
    return this.coordinator.listen(this.deps.gateway, this.deps.config.groups.coordinatorPort);
  }

  getInvocation(id: string): InvocationRecord {
    const record = this.deps.store.getInvocation(id);
    if (!record) throw new PetriError('InvocationNotFound', `no invocation with id "${id}"`);
    return record;
  }

  listInvocations(query: { functionName?: string; limit: number; since?: number }) {
    return this.deps.store.listInvocations(query);
  }

  listLogs(query: { functionName: string; invocationId?: string; since?: number; limit: number }) {
    this.catalog.require(query.functionName);
    return this.deps.store.listLogs(query);
  }

  /** Recent autoscaler decisions of one function, newest first. */
  listAutoscaleDecisions(query: { functionName: string; limit: number; since?: number }) {
    this.catalog.require(query.functionName);
    return this.deps.store.listAutoscaleDecisions(query);
  }

  info(): NodeInfo {
    const { dead: _dead, ...instances } = this.pool.instanceCounts();
    return {
      version: PETRI_VERSION,
      nodeVersion: process.version,
      instanceNodeBinary: this.deps.instanceNode?.binary ?? process.execPath,
      instanceNodeVersion: this.deps.instanceNode?.version ?? process.version,
      cores: this.cores,
      memoryBudgetMb: this.deps.config.memoryBudgetMb,
      memoryInUseMb: this.pool.memoryInUseMb(),
      idleMemoryMbMs: Math.round(this.pool.idleMemoryMbMs()),
      sandboxDriver: this.deps.driver.name,
      isolation: this.deps.driver.capabilities(),
      placement: this.scheduler.placement.status(),
      startPaths: this.startPathsStatus(),
      snapshots: this.snapshots.tierStatus(),
      scheduler: this.scheduler.status(),
      instances,
      groups: this.groupCounts(),
      prewarm: { sets: this.prewarms.views(), memoryMb: this.prewarms.memoryMb() },
      functions: this.pool.functions.size,
      uptimeMs: Math.round(this.clock.now() - this.started),
    };
  }

  private groupCounts(): NodeInfo['groups'] {
    const { groups, members } = this.groups.memberCounts();
    return { running: groups, members };
  }

  private startPathsStatus(): StartPathsStatus {
    const { pause, pauseGraceMs } = this.deps.config.startPaths;
    const freezer = this.deps.driver
      .capabilities()
      .mechanisms.find((mechanism) => mechanism.name === 'cgroup-freezer');
    const reason = !pause
      ? 'disabled by config (startPaths.pause=false)'
      : !freezer
        ? 'the sandbox driver has no freezer'
        : freezer.active
          ? undefined
          : `cgroup freezer inactive: ${freezer.reason}`;
    return {
      policy: this.pool.startPolicy.name,
      pausing: reason === undefined,
      pauseGraceMs,
      ...(reason === undefined ? {} : { reason }),
    };
  }

  /**
   * CPU time the node has used: the daemon process's own (user + system) and
   * its instances' from their cgroups (null where not measured). Instances
   * run in their own cgroups, so the two do not overlap.
   */
  async cpuUsage(): Promise<{ daemonMs: number; instancesMs: number | null }> {
    const { user, system } = process.cpuUsage();
    const instancesMs = (await this.deps.driver.instancesCpuMs?.()) ?? null;
    return { daemonMs: (user + system) / 1000, instancesMs };
  }

  /** Stops accepting work, fails what is queued, stops every instance. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.invoker.stopAccepting();
    this.autoscaler.stop();
    await this.groups.close();
    await this.coordinator.close().catch(() => undefined);
    await this.catalog.close();
    await this.snapshots.close();
    await this.scheduler.placement.stop();
    this.scheduler.close();
    try {
      const shutdown = new PetriError('NodeRestarted', 'the node is shutting down');
      this.pool.rejectAll(shutdown);
      await this.prewarms.close();
      await Promise.allSettled(this.pool.allInstances().map((instance) => instance.stop(shutdown)));
      await this.invoker.drain();
      await this.sink.drain();
      await this.deps.driver.close();
    } finally {
      // Last, when no child of the daemon is left in its cpuset to keep it busy.
      await this.scheduler.placement.close();
      this.deps.store.close();
    }
  }
}

function listing(instance: Instance, group?: string, rank?: number): InstanceListing {
  const inbound = instance.fn.spec.network.inbound;
  return {
    id: instance.id,
    version: instance.version,
    state: instance.state,
    ...(instance.sandbox.address ? { address: instance.sandbox.address } : {}),
    ports: inbound === true ? 'all' : inbound === false ? [] : [...inbound],
    ...(group === undefined ? {} : { group, rank }),
  };
}

export type { FunctionView, InvokeResult, AliasView, ResolvedTarget, VersionView, GroupView };
