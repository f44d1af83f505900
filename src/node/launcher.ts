import { randomUUID } from 'node:crypto';
import type { NodeConfig } from '../config.ts';
import { parseHandler } from '../runtime/index.ts';
import { resourcesFor, type SandboxDriver, type SandboxSpec } from '../sandbox/index.ts';
import type { FunctionRecord, Store } from '../store/index.ts';
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
  /** Called once an instance is dead, so the pool forgets it. */
  onDead(instance: Instance): void;
}

/**
 * Starts instances: turns a function version into a sandbox spec (code,
 * entry, resources sized from its memory) and records every instance's life
 * cycle and output in the store.
 */
export class InstanceLauncher {
  constructor(private readonly deps: LauncherDeps) {}

  async start(record: FunctionRecord): Promise<Instance> {
    const instance = await Instance.start(
      this.deps.driver,
      record,
      this.sandboxSpec(record),
      this.hooks,
      this.deps.config.startTimeoutMs,
      this.deps.clock,
    );
    instance.baseline = await instance.sandbox.usage().catch(() => instance.baseline);
    return instance;
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
      network: spec.network,
    };
  }

  private resourcesFor(memoryMb: number): SandboxSpec['resources'] {
    const resources = resourcesFor(memoryMb, this.deps.config.resources, this.deps.cores);
    const cpus = this.deps.startCpus();
    return cpus === undefined ? resources : { ...resources, cpus };
  }

  private readonly hooks: InstanceHooks = {
    onState: (instance, state, details) => {
      this.deps.store.recordInstanceEvent({
        instanceId: instance.id,
        functionName: instance.functionName,
        version: instance.version,
        event: state,
        at: Math.round(this.deps.clock.now()),
        details,
      });
      if (state === 'idle' || state === 'dead') this.deps.logs.resetInstance(instance.id);
      if (state === 'dead') this.deps.onDead(instance);
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
