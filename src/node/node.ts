import os from 'node:os';
import type { Logger } from 'pino';
import type { DaemonCpuset } from '../cgroup/index.ts';
import type { NodeConfig } from '../config.ts';
import { PetriError } from '../errors.ts';
import {
  FixedKeepAlive,
  PLACEMENT_POLICIES,
  START_PATH_POLICIES,
  type InstanceState,
  type KeepAlivePolicy,
  type PlacementPolicy,
} from '../policy/index.ts';
import type { InstanceNode } from '../runtime/index.ts';
import type { IsolationReport, SandboxDriver } from '../sandbox/index.ts';
import { FileSnapshotManager, type SnapshotManager } from '../snapshot/index.ts';
import type { InvocationRecord, Store } from '../store/index.ts';
import { FunctionCatalog, type FunctionView } from './catalog.ts';
import { systemClock, type Clock } from './clock.ts';
import { InstanceLauncher } from './launcher.ts';
import { Invoker, type InvokeResult } from './invoker.ts';
import { LogKeeper } from './logs.ts';
import { NodeMetrics } from './metrics.ts';
import { CpuPlacer, type PlacementStatus } from './placement.ts';
import { Pool } from './pool.ts';
import { UsageSink } from './sink.ts';

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
  sandboxDriver: string;
  isolation: IsolationReport;
  placement: PlacementStatus;
  /** How invocations get instances: the start-path policy and whether idle instances are paused. */
  startPaths: StartPathsStatus;
  instances: Record<Exclude<InstanceState, 'dead'>, number>;
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
  private readonly placer: CpuPlacer;
  private readonly catalog: FunctionCatalog;
  private readonly invoker: Invoker;
  private readonly sink: UsageSink;
  private readonly clock: Clock;
  /** The node's cores, counted before placement may pin the daemon to one of them. */
  private readonly cores = os.availableParallelism();
  private readonly started: number;
  private closing = false;
  private readonly snapshots: SnapshotManager;

  constructor(private readonly deps: NodeDeps) {
    const { config, store, log } = deps;
    const clock = deps.clock ?? systemClock;
    this.clock = clock;
    this.started = clock.now();
    const logs = new LogKeeper(store, config.logs, clock);
    const launcher = new InstanceLauncher({
      config,
      driver: deps.driver,
      store,
      clock,
      logs,
      cores: this.cores,
      startCpus: () => this.placer.startCpus(),
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
      deps.policy ?? new FixedKeepAlive(config.keepAliveMs),
      {
        startInstance: (record, path) => launcher.start(record, path),
        snapshotReady: (record) =>
          record.spec.snapshot && this.snapshots.blobFor(record.name, record.version) !== undefined,
      },
      clock,
      START_PATH_POLICIES[config.startPaths.policy](),
    );
    this.placer = new CpuPlacer({
      policy: deps.placement ?? PLACEMENT_POLICIES[config.placement.policy](),
      intervalMs: config.placement.intervalMs,
      instances: () => this.pool.allInstances(),
      takePeakInFlight: () => this.pool.takePeakInFlight(),
      log,
      daemonCpuset: deps.daemonCpuset ?? (async () => undefined),
    });
    this.metrics = new NodeMetrics({
      queueLengths: () =>
        new Map([...this.pool.functions].map(([name, entry]) => [name, entry.queue.length])),
      instanceCounts: () => this.pool.instanceCounts(),
      memoryInUseMb: () => this.pool.memoryInUseMb(),
      placement: () => {
        const status = this.placer.status();
        return status.active ? status.current : undefined;
      },
    });
    this.catalog = new FunctionCatalog({
      stateDir: config.stateDir,
      store,
      pool: this.pool,
      log,
      clock,
      deploy: config.deploy,
      inUse: (name, version) => launcher.inUse(name, version),
      snapshots: this.snapshots,
    });
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
      Date.now(),
    );
    if (failed > 0)
      this.deps.log.warn({ failed }, 'marked unfinished invocations as NodeRestarted');
    await this.deps.driver.reconcile();
    await this.snapshots.reconcile();
    for (const record of this.deps.store.listFunctions()) {
      this.pool.setFunction(record);
      if (record.spec.snapshot) this.snapshots.build(record);
    }
    await this.catalog.sweepAll();
    await this.placer.start();
  }

  // ---- functions -------------------------------------------------------

  /** Deploys a new function or a new version of one. */
  async deploy(name: string, body: unknown): Promise<{ view: FunctionView; created: boolean }> {
    return this.catalog.deploy(name, body);
  }

  listFunctions(): FunctionView[] {
    return this.catalog.list();
  }

  getFunction(name: string): FunctionView {
    return this.catalog.get(name);
  }

  async removeFunction(name: string): Promise<void> {
    await this.catalog.remove(name);
  }

  // ---- invocations -----------------------------------------------------

  /** Runs one invocation to its end; errors are in the record, never thrown. */
  async invoke(name: string, event: unknown): Promise<InvokeResult> {
    return this.invoker.invoke(this.catalog.require(name), event);
  }

  /** Accepts an invocation, records it durably as queued, and runs it in the background. */
  invokeAsync(name: string, event: unknown): InvocationRecord {
    return this.invoker.invokeAsync(this.catalog.require(name), event);
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
      sandboxDriver: this.deps.driver.name,
      isolation: this.deps.driver.capabilities(),
      placement: this.placer.status(),
      startPaths: this.startPathsStatus(),
      instances,
      functions: this.pool.functions.size,
      uptimeMs: Math.round(this.clock.now() - this.started),
    };
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

  /** Stops accepting work, fails what is queued, stops every instance. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.invoker.stopAccepting();
    await this.catalog.close();
    await this.snapshots.close();
    await this.placer.stop();
    try {
      const shutdown = new PetriError('NodeRestarted', 'the node is shutting down');
      this.pool.rejectAll(shutdown);
      await Promise.allSettled(this.pool.allInstances().map((instance) => instance.stop(shutdown)));
      await this.invoker.drain();
      await this.sink.drain();
      await this.deps.driver.close();
    } finally {
      // Last, when no child of the daemon is left in its cpuset to keep it busy.
      await this.placer.close();
      this.deps.store.close();
    }
  }
}

export type { FunctionView, InvokeResult };
