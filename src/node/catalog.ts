import fs from 'node:fs/promises';
import type { Logger } from 'pino';
import { PetriError } from '../errors.ts';
import type { InstanceState } from '../policy/index.ts';
import { parseDeployBody, type FunctionSource, type FunctionSpec } from '../spec/index.ts';
import type { FunctionRecord, Store } from '../store/index.ts';
import type { Clock } from './clock.ts';
import { folderDigest, materialize, versionLayout } from './deploy.ts';
import type { FunctionEntry, Pool } from './pool.ts';

export interface FunctionView {
  name: string;
  version: number;
  spec: FunctionSpec;
  createdAt: number;
  updatedAt: number;
  instances: Record<Exclude<InstanceState, 'dead'>, number>;
  queueLength: number;
}

export interface CatalogDeps {
  stateDir: string;
  store: Store;
  pool: Pool;
  log: Logger;
  clock: Clock;
}

/**
 * The node's functions and their versions: deploys (one at a time per
 * function), listing and removal. The pool holds each function's current
 * version; the store keeps every version.
 */
export class FunctionCatalog {
  private readonly deploying = new Map<string, Promise<unknown>>();

  constructor(private readonly deps: CatalogDeps) {}

  /** Deploys a new function or a new version of one. */
  async deploy(name: string, body: unknown): Promise<{ view: FunctionView; created: boolean }> {
    const { spec, source } = parseDeployBody(name, body);
    const previous = this.deploying.get(name) ?? Promise.resolve();
    const task = previous.catch(() => {}).then(() => this.publish(name, spec, source));
    this.deploying.set(name, task);
    try {
      return await task;
    } finally {
      if (this.deploying.get(name) === task) this.deploying.delete(name);
    }
  }

  list(): FunctionView[] {
    return [...this.deps.pool.functions.values()]
      .sort((a, b) => a.record.name.localeCompare(b.record.name))
      .map((entry) => functionView(entry));
  }

  get(name: string): FunctionView {
    return functionView(this.require(name));
  }

  remove(name: string): void {
    this.require(name);
    this.deps.pool.removeFunction(name);
    this.deps.store.deleteFunction(name);
    this.deps.log.info({ function: name }, 'removed');
  }

  require(name: string): FunctionEntry {
    const entry = this.deps.pool.entry(name);
    if (!entry) throw new PetriError('FunctionNotFound', `no function named "${name}"`);
    return entry;
  }

  private async publish(
    name: string,
    spec: FunctionSpec,
    source: FunctionSource,
  ): Promise<{ view: FunctionView; created: boolean }> {
    const { store, pool } = this.deps;
    const existing = store.getFunction(name);
    const version = store.lastVersion(name) + 1;
    const layout = versionLayout(this.deps.stateDir, name, version);
    await materialize(layout, spec, source);
    if (existing && (await sameVersion(existing, spec, layout.dir))) {
      // Like Lambda's PublishVersion: nothing changed, so no new version.
      await fs.rm(layout.dir, { recursive: true, force: true });
      return { view: functionView(this.require(name)), created: false };
    }
    const at = this.deps.clock.now();
    const record: FunctionRecord = {
      name,
      version,
      spec,
      codeDir: layout.dir,
      createdAt: existing?.createdAt ?? at,
      updatedAt: at,
    };
    store.saveFunctionVersion(record);
    pool.setFunction(record);
    this.deps.log.info({ function: name, version }, 'deployed');
    return { view: functionView(this.require(name)), created: !existing };
  }
}

function functionView(entry: FunctionEntry): FunctionView {
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

/** Whether a deploy's spec and materialised folder equal the function's current version. */
async function sameVersion(
  current: FunctionRecord,
  spec: FunctionSpec,
  dir: string,
): Promise<boolean> {
  if (JSON.stringify(current.spec) !== JSON.stringify(spec)) return false;
  const [before, after] = await Promise.all([
    folderDigest(current.codeDir).catch(() => ''),
    folderDigest(dir),
  ]);
  return before === after;
}
