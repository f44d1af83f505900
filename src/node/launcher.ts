import { randomUUID } from 'node:crypto';
import path from 'node:path';
import type { NodeConfig, PrewarmConfig } from '../config.ts';
import { PetriError } from '../errors.ts';
import { parseHandler } from '../runtime/index.ts';
import {
  resourcesFor,
  type GroupMembership,
  type PrewarmSandbox,
  type PrewarmSpec,
  type SandboxDriver,
  type SandboxSpec,
} from '../sandbox/index.ts';
import type { SnapshotManager } from '../snapshot/index.ts';
import type { FunctionRecord, Store } from '../store/index.ts';
import type { CpuScheduler } from '../sched/index.ts';
import type { Clock } from './clock.ts';
import { versionLayout } from './deploy.ts';
import { Instance, type InstanceHooks } from './instance.ts';
import type { LogKeeper } from './logs.ts';

export interface LauncherDeps {
  config: NodeConfig;
  driver: SandboxDriver;
  store: Store;
  clock: Clock;
  /** Where instances' output goes (capped per invocation). */
  logs: LogKeeper;
  cores: number;
  /** The cores a starting instance may use (CPU placement), undefined: any. */
  startCpus(): string | undefined;
  /** Runs instances' announced phases (absent: phases are admitted at once, not recorded). */
  scheduler?: CpuScheduler;
  /** Called once an instance is dead, so the pool forgets it. */
  onDead(instance: Instance): void;
  /** Called when no instance uses a version's files any more (they may be deleted). */
  onVersionUnused(name: string, version: number): void;
  /** Where restore snapshots come from; absent: every start is cold. */
  snapshots?: SnapshotManager;
}

/**
 * Starts instances: turns a function version into a sandbox spec (code,
 * entry, resources sized from its memory) and records every instance's life
 * cycle and output in the store.
 */
export class InstanceLauncher {
  /**
   * Per version (`name/version`): starts under way plus instances not yet
   * dead. A start counts from its first step, before a sandbox exists.
   */
  private readonly users = new Map<string, number>();
  /** Set once the node has made its snapshot manager (it needs the launcher's specs). */
  snapshots: SnapshotManager | undefined;

  constructor(private readonly deps: LauncherDeps) {
    this.snapshots = deps.snapshots;
  }

  /**
   * Starts an instance; `group` makes it a member of a function group,
   * `onCreated` hears of it as soon as its sandbox exists (before `ready`),
   * and `path` says cold (the host imports the bundle) or restored from the
   * version's snapshot.
   */
  async start(
    record: FunctionRecord,
    group?: GroupMembership,
    onCreated?: (instance: Instance) => void,
    path: 'cold' | 'restore' = 'cold',
    restoreFailed?: string,
  ): Promise<Instance> {
    this.use(record.name, record.version);
    const hooks: InstanceHooks = onCreated
      ? {
          ...this.hooks,
          onState: (instance, state, details, from) => {
            this.hooks.onState(instance, state, details, from);
            if (state === 'starting') onCreated(instance);
          },
        }
      : this.hooks;
    const blob =
      path === 'restore' ? this.snapshots?.blobFor(record.name, record.version) : undefined;
    const spec = this.sandboxSpec(record);
    const started = this.deps.clock.now();
    try {
      if (path === 'restore' && blob === undefined) {
        throw new PetriError('Internal', `function "${record.name}" has no ready snapshot`);
      }
      const instance = await Instance.start(
        this.deps.driver,
        record,
        blob === undefined
          ? group
            ? { ...spec, group }
            : spec
          : { ...spec, nodeArgs: ['--snapshot-blob', blob] },
        hooks,
        this.deps.config.startTimeoutMs,
        this.deps.clock,
        path,
        restoreFailed,
      );
      instance.scheduler = this.deps.scheduler;
      if (blob !== undefined) {
        const ms = this.deps.clock.now() - started;
        this.snapshots?.recordRestore(record.name, record.version, ms);
      }
      instance.baseline = await instance.sandbox.usage().catch(() => instance.baseline);
      return instance;
    } catch (err) {
      // A snapshot that does not restore is dropped: the version's next starts are cold.
      // A slow start on a loaded node or a full uid range says nothing about the snapshot.
      const notTheSnapshot =
        err instanceof PetriError && (err.code === 'Timeout' || err.code === 'CapacityExceeded');
      if (blob !== undefined && !notTheSnapshot) {
        const reason = (err as Error).message;
        this.snapshots?.markBroken(record.name, record.version, reason, blob);
        // The invocation still gets an instance: a cold one, whose record says why it is not a restore.
        return await this.start(record, group, onCreated, 'cold', reason);
      }
      throw err;
    } finally {
      this.unuse(record.name, record.version);
    }
  }

  /**
   * Binds a ready prewarmed runtime to the version (start path `prewarm`):
   * the version folder appears at the sandbox's code mount, so the bundle
   * and the function's folder are named as the sandbox sees them.
   */
  async bind(record: FunctionRecord, sandbox: PrewarmSandbox): Promise<Instance> {
    this.use(record.name, record.version);
    try {
      const { spec } = record;
      const layout = versionLayout(this.deps.config.stateDir, record.name, record.version);
      const inside = (file: string): string =>
        path.join(sandbox.codeMount, path.relative(layout.dir, file));
      const instance = await Instance.bind(
        sandbox,
        record,
        layout.dir,
        {
          type: 'bind',
          functionName: record.name,
          version: record.version,
          bundle: inside(layout.bundle),
          exportName: parseHandler(spec.handler).exportName,
          cwd: inside(layout.code),
          env: spec.env,
        },
        this.resourcesFor(spec.memoryMb),
        this.hooks,
        this.deps.config.startTimeoutMs,
        this.deps.clock,
      );
      instance.scheduler = this.deps.scheduler;
      instance.baseline = await instance.sandbox.usage().catch(() => instance.baseline);
      return instance;
    } finally {
      this.unuse(record.name, record.version);
    }
  }

  /** The runtime part of a prewarmed node runtime of one configured size. */
  prewarmSpec(entry: PrewarmConfig): PrewarmSpec {
    return {
      instanceId: `prewarm-${entry.memoryMb}-${randomUUID().slice(0, 8)}`,
      runtime: 'node',
      resources: this.resourcesFor(entry.memoryMb),
      network: { inbound: false, egress: entry.egress },
    };
  }

  /** The version's sandbox running `nodeArgs` instead of the host (a snapshot build). */
  builderSpec(record: FunctionRecord, nodeArgs: string[], writableDir: string): SandboxSpec {
    return { ...this.sandboxSpec(record), nodeArgs, writableDir };
  }

  /** Whether a starting or live instance uses the version's files. */
  inUse(name: string, version: number): boolean {
    return (this.users.get(`${name}/${version}`) ?? 0) > 0;
  }

  private use(name: string, version: number): void {
    const key = `${name}/${version}`;
    this.users.set(key, (this.users.get(key) ?? 0) + 1);
  }

  private unuse(name: string, version: number): void {
    const key = `${name}/${version}`;
    const left = (this.users.get(key) ?? 1) - 1;
    if (left > 0) {
      this.users.set(key, left);
      return;
    }
    this.users.delete(key);
    this.deps.onVersionUnused(name, version);
  }

  sandboxSpec(record: FunctionRecord): SandboxSpec {
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
      // The node connects to an http function's server for function URLs
      // (on whatever port it reports); other runtimes open what their spec says.
      network: { ...spec.network, inbound: spec.runtime === 'http' ? true : spec.network.inbound },
    };
  }

  private resourcesFor(memoryMb: number): SandboxSpec['resources'] {
    const resources = resourcesFor(memoryMb, this.deps.config.resources, this.deps.cores);
    const cpus = this.deps.startCpus();
    return cpus === undefined ? resources : { ...resources, cpus };
  }

  private readonly hooks: InstanceHooks = {
    onState: (instance, state, details, from) => {
      // 'starting' comes once, when the sandbox exists; 'dead' once, when it is gone.
      if (state === 'starting') this.use(instance.functionName, instance.version);
      // The turns to busy and back to idle come with every invocation, whose own
      // record tells them: storing two rows per invocation was most of the warm path's writes.
      const invocationTurn = state === 'busy' || (state === 'idle' && from === 'busy');
      if (!invocationTurn) {
        this.deps.store.recordInstanceEvent({
          instanceId: instance.id,
          functionName: instance.functionName,
          version: instance.version,
          event: state,
          at: Math.round(this.deps.clock.now()),
          details,
        });
      }
      if (state === 'idle' || state === 'dead') this.deps.logs.resetInstance(instance.id);
      if (state === 'dead') {
        this.deps.onDead(instance);
        this.unuse(instance.functionName, instance.version);
      }
    },
    onLog: (instance, stream, line, invocationId) => {
      const source = {
        functionName: instance.functionName,
        version: instance.version,
        instanceId: instance.id,
      };
      this.deps.logs.line(source, stream, line, invocationId);
    },
  };
}
