import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import type { Logger } from 'pino';
import type { DaemonCpuset } from '../cgroup/index.ts';
import type { NodeConfig } from '../config.ts';
import { PetriError, toPetriError } from '../errors.ts';
import {
  FixedKeepAlive,
  PLACEMENT_POLICIES,
  type InstanceState,
  type KeepAlivePolicy,
  type PlacementPolicy,
} from '../policy/index.ts';
import { parseHandler, type InstanceNode } from '../runtime/index.ts';
import {
  resourcesFor,
  type IsolationReport,
  type SandboxDriver,
  type SandboxSpec,
  type Usage,
} from '../sandbox/index.ts';
import type { FunctionRecord, InvocationRecord, Store } from '../store/index.ts';
import { now } from './clock.ts';
import { timeOrderedId } from './ids.ts';
import { folderDigest, materialize, versionLayout } from './deploy.ts';
import { Instance, type InstanceHooks } from './instance.ts';
import { NodeMetrics } from './metrics.ts';
import { CpuPlacer, type PlacementStatus } from './placement.ts';
import { Pool, type FunctionEntry, type Slot } from './pool.ts';
import { parseDeployBody } from './spec.ts';

export interface NodeDeps {
  config: NodeConfig;
  store: Store;
  driver: SandboxDriver;
  log: Logger;
  /** The Node binary instances run, checked at start (config runtime.nodeBinary). */
  instanceNode: InstanceNode;
  policy?: KeepAlivePolicy;
  placement?: PlacementPolicy;
  /** Moves the daemon into a cpuset of its own, for CPU placement; absent: placement is off. */
  daemonCpuset?: () => Promise<DaemonCpuset | undefined>;
}

export interface InvokeResult {
  record: InvocationRecord;
  value?: unknown;
}

export interface FunctionView {
  name: string;
  version: number;
  spec: FunctionRecord['spec'];
  createdAt: number;
  updatedAt: number;
  instances: Record<Exclude<InstanceState, 'dead'>, number>;
  queueLength: number;
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
  instances: Record<Exclude<InstanceState, 'dead'>, number>;
  functions: number;
  uptimeMs: number;
}

const PETRI_VERSION = '0.1.0';

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

/**
 * The orchestrator: Source (deploy/invoke calls) → Dispatcher and Pool →
 * Worker (an Instance) → Sink (the returned record), with the store beside it.
 */
export class PetriNode {
  readonly metrics: NodeMetrics;
  private readonly pool: Pool;
  private readonly placer: CpuPlacer;
  /** The node's cores, counted before placement may pin the daemon to one of them. */
  private readonly cores = os.availableParallelism();
  private readonly started = Date.now();
  private readonly deploying = new Map<string, Promise<unknown>>();
  private readonly asyncRuns = new Set<Promise<unknown>>();
  /** Records still being completed with resource usage after their reply went out. */
  private readonly sinks = new Set<Promise<unknown>>();
  private closing = false;

  constructor(private readonly deps: NodeDeps) {
    const { config } = deps;
    this.pool = new Pool(
      {
        memoryBudgetMb: config.memoryBudgetMb,
        maxInstancesPerFunction: config.maxInstancesPerFunction,
        queueMaxSize: config.queue.maxSize,
        queueMaxWaitMs: config.queue.maxWaitMs,
      },
      deps.policy ?? new FixedKeepAlive(config.keepAliveMs),
      { startInstance: (record) => this.startInstance(record) },
    );
    this.placer = new CpuPlacer({
      policy: deps.placement ?? PLACEMENT_POLICIES[config.placement.policy](),
      intervalMs: config.placement.intervalMs,
      instances: () => this.pool.allInstances(),
      takePeakInFlight: () => this.pool.takePeakInFlight(),
      log: deps.log,
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
    for (const record of this.deps.store.listFunctions()) this.pool.setFunction(record);
    await this.placer.start();
  }

  // ---- functions -------------------------------------------------------

  /** Deploys a new function or a new version of one. */
  async deploy(name: string, body: unknown): Promise<{ view: FunctionView; created: boolean }> {
    const { spec, source } = parseDeployBody(name, body);
    const previous = this.deploying.get(name) ?? Promise.resolve();
    const task = previous
      .catch(() => {})
      .then(async () => {
        const existing = this.deps.store.getFunction(name);
        const version = this.deps.store.lastVersion(name) + 1;
        const layout = versionLayout(this.deps.config.stateDir, name, version);
        await materialize(layout, spec, source);
        if (existing && (await sameVersion(existing, spec, layout.dir))) {
          // Like Lambda's PublishVersion: nothing changed, so no new version.
          await fs.rm(layout.dir, { recursive: true, force: true });
          return { view: this.functionView(this.requireEntry(name)), created: false };
        }
        const at = Date.now();
        const record: FunctionRecord = {
          name,
          version,
          spec,
          codeDir: layout.dir,
          createdAt: existing?.createdAt ?? at,
          updatedAt: at,
        };
        this.deps.store.saveFunctionVersion(record);
        this.pool.setFunction(record);
        this.deps.log.info({ function: name, version }, 'deployed');
        return { view: this.functionView(this.pool.entry(name)!), created: !existing };
      });
    this.deploying.set(name, task);
    try {
      return await task;
    } finally {
      if (this.deploying.get(name) === task) this.deploying.delete(name);
    }
  }

  listFunctions(): FunctionView[] {
    return [...this.pool.functions.values()]
      .sort((a, b) => a.record.name.localeCompare(b.record.name))
      .map((entry) => this.functionView(entry));
  }

  getFunction(name: string): FunctionView {
    return this.functionView(this.requireEntry(name));
  }

  async removeFunction(name: string): Promise<void> {
    this.requireEntry(name);
    this.pool.removeFunction(name);
    this.deps.store.deleteFunction(name);
    this.deps.log.info({ function: name }, 'removed');
  }

  // ---- invocations -----------------------------------------------------

  /** Runs one invocation to its end; errors are in the record, never thrown. */
  async invoke(name: string, event: unknown): Promise<InvokeResult> {
    const entry = this.requireEntry(name);
    const record = this.newRecord(entry, 'sync');
    return this.run(entry, record, event);
  }

  /** Accepts an invocation, records it durably as queued, and runs it in the background. */
  invokeAsync(name: string, event: unknown): InvocationRecord {
    const entry = this.requireEntry(name);
    const record = this.newRecord(entry, 'async');
    this.deps.store.recordInvocationNow(record);
    const running = this.run(entry, record, event).finally(() => this.asyncRuns.delete(running));
    this.asyncRuns.add(running);
    return record;
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
    this.requireEntry(query.functionName);
    return this.deps.store.listLogs(query);
  }

  info(): NodeInfo {
    const { dead: _dead, ...instances } = this.pool.instanceCounts();
    return {
      version: PETRI_VERSION,
      nodeVersion: process.version,
      instanceNodeBinary: this.deps.instanceNode.binary,
      instanceNodeVersion: this.deps.instanceNode.version,
      cores: this.cores,
      memoryBudgetMb: this.deps.config.memoryBudgetMb,
      memoryInUseMb: this.pool.memoryInUseMb(),
      sandboxDriver: this.deps.driver.name,
      isolation: this.deps.driver.capabilities(),
      placement: this.placer.status(),
      instances,
      functions: this.pool.functions.size,
      uptimeMs: Date.now() - this.started,
    };
  }

  /** Stops accepting work, fails what is queued, stops every instance. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    await this.placer.close();
    this.pool.rejectAll(new PetriError('NodeRestarted', 'the node is shutting down'));
    await Promise.allSettled(this.pool.allInstances().map((instance) => instance.stop()));
    await Promise.allSettled([...this.asyncRuns]);
    await Promise.allSettled([...this.sinks]);
    await this.deps.driver.close();
    this.deps.store.close();
  }

  // ---- internals -------------------------------------------------------

  private requireEntry(name: string): FunctionEntry {
    const entry = this.pool.entry(name);
    if (!entry) throw new PetriError('FunctionNotFound', `no function named "${name}"`);
    return entry;
  }

  private functionView(entry: FunctionEntry): FunctionView {
    const instances = { starting: entry.starting, idle: 0, busy: 0, stopping: 0 };
    for (const instance of entry.instances) {
      if (instance.state !== 'dead') instances[instance.state] += 1;
    }
    const { record } = entry;
    return {
      name: record.name,
      version: record.version,
      spec: record.spec,
      createdAt: record.createdAt,
      updatedAt: record.updatedAt,
      instances,
      queueLength: entry.queue.length,
    };
  }

  private newRecord(entry: FunctionEntry, mode: 'sync' | 'async'): InvocationRecord {
    return {
      id: timeOrderedId(),
      functionName: entry.record.name,
      version: entry.record.version,
      mode,
      status: 'queued',
      receivedAt: now(),
    };
  }

  private async run(
    entry: FunctionEntry,
    record: InvocationRecord,
    event: unknown,
  ): Promise<InvokeResult> {
    let slot: Slot | undefined;
    try {
      if (this.closing) throw new PetriError('NodeRestarted', 'the node is shutting down');
      const acquired = this.pool.acquire(entry);
      if (record.mode === 'async') acquired.catch(() => {}); // settled below
      slot = await acquired;
      Object.assign(record, {
        status: 'running',
        version: slot.instance.version,
        startPath: slot.startPath,
        instanceId: slot.instance.id,
        dispatchedAt: slot.dispatchedAt,
        startedAt: now(),
      });
      if (record.mode === 'async') this.deps.store.recordInvocation({ ...record });
      const value = await slot.instance.invoke(record.id, event);
      // Only async callers fetch results later; sync results go back in the response.
      if (record.mode === 'async') record.result = value;
      this.finish(record, slot, undefined);
      return { record, value };
    } catch (err) {
      this.finish(record, slot, toPetriError(err));
      return { record };
    } finally {
      if (slot) this.pool.release(slot.instance);
    }
  }

  private finish(
    record: InvocationRecord,
    slot: Slot | undefined,
    error: PetriError | undefined,
  ): void {
    const finished = now();
    record.finishedAt = finished;
    record.status = error ? 'failed' : 'succeeded';
    if (error) record.error = { code: error.code, message: error.message, details: error.details };
    record.totalMs = round(finished - record.receivedAt);
    if (record.startedAt !== undefined && record.dispatchedAt !== undefined) {
      record.queuedMs = round(record.dispatchedAt - record.receivedAt);
      record.initMs = round(record.startedAt - record.dispatchedAt);
      record.executionMs = round(finished - record.startedAt);
    } else {
      record.queuedMs = record.totalMs;
    }
    const start = record.startPath ?? 'none';
    this.metrics.record(
      record.functionName,
      start,
      error?.code ?? 'success',
      record.totalMs / 1000,
    );
    // Resources are read after the reply is on its way, then the record is stored.
    if (!slot) return this.deps.store.recordInvocation(record);
    const recording = new Promise<void>((resolve) =>
      setImmediate(() => void this.recordUsage(record, slot.instance).finally(resolve)),
    ).finally(() => this.sinks.delete(recording));
    this.sinks.add(recording);
  }

  private async recordUsage(record: InvocationRecord, instance: Instance): Promise<void> {
    try {
      if (instance.state !== 'dead') {
        const { before, after } = await this.sharedUsage(instance);
        Object.assign(record, usageDelta(before, after));
      }
    } catch (err) {
      this.deps.log.debug({ err }, 'usage read failed');
    }
    this.deps.store.recordInvocation(record);
  }

  /**
   * One usage read per instance per event-loop turn: invocations that finish
   * together share it (with concurrency > 1 their use cannot be told apart).
   */
  private sharedUsage(instance: Instance): Promise<{ before: Usage; after: Usage }> {
    instance.usageRead ??= (async () => {
      const before = instance.baseline;
      try {
        const after = await instance.sandbox.usage({ resetPeak: true });
        instance.baseline = after;
        return { before, after };
      } finally {
        instance.usageRead = undefined;
      }
    })();
    return instance.usageRead;
  }

  private async startInstance(record: FunctionRecord): Promise<Instance> {
    const spec = this.sandboxSpec(record);
    const instance = await Instance.start(
      this.deps.driver,
      record,
      spec,
      this.instanceHooks,
      this.deps.config.startTimeoutMs,
    );
    instance.baseline = await instance.sandbox.usage().catch(() => instance.baseline);
    return instance;
  }

  private sandboxSpec(record: FunctionRecord): SandboxSpec {
    const { spec } = record;
    const layout = versionLayout(this.deps.config.stateDir, record.name, record.version);
    const entry: SandboxSpec['entry'] =
      spec.runtime === 'node'
        ? {
            runtime: 'node',
            bundle: layout.bundle,
            exportName: parseHandler(spec.handler).exportName,
          }
        : { runtime: spec.runtime, command: spec.command ?? [] };
    return {
      instanceId: `${record.name}-${record.version}-${randomUUID().slice(0, 8)}`,
      functionName: record.name,
      version: record.version,
      codeDir: layout.dir,
      cwd: layout.code,
      entry,
      env: spec.env,
      resources: this.resourcesFor(spec.memoryMb),
      network: spec.network,
    };
  }

  private resourcesFor(memoryMb: number): SandboxSpec['resources'] {
    const resources = resourcesFor(memoryMb, this.deps.config.resources, this.cores);
    const cpus = this.placer.startCpus();
    return cpus === undefined ? resources : { ...resources, cpus };
  }

  private readonly instanceHooks: InstanceHooks = {
    onState: (instance, state, details) => {
      this.deps.store.recordInstanceEvent({
        instanceId: instance.id,
        functionName: instance.functionName,
        version: instance.version,
        event: state,
        at: Date.now(),
        details,
      });
      if (state === 'dead') this.pool.forget(instance);
    },
    onLog: (instance, stream, line, invocationId) => {
      this.deps.store.recordLog({
        functionName: instance.functionName,
        version: instance.version,
        instanceId: instance.id,
        invocationId,
        stream,
        line,
        at: Date.now(),
      });
    },
  };
}

/** Whether a deploy's spec and materialised folder equal the function's current version. */
async function sameVersion(
  current: FunctionRecord,
  spec: FunctionRecord['spec'],
  dir: string,
): Promise<boolean> {
  if (JSON.stringify(current.spec) !== JSON.stringify(spec)) return false;
  const [before, after] = await Promise.all([
    folderDigest(current.codeDir).catch(() => ''),
    folderDigest(dir),
  ]);
  return before === after;
}

function usageDelta(before: Usage, after: Usage): Partial<InvocationRecord> {
  return {
    cpuMs: round(Math.max(0, after.cpuMs - before.cpuMs)),
    peakMemoryBytes: after.peakMemoryBytes,
    netRxBytes: Math.max(0, after.netRxBytes - before.netRxBytes),
    netTxBytes: Math.max(0, after.netTxBytes - before.netTxBytes),
  };
}
