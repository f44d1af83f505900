import fs from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import type { DeployConfig } from '../config.ts';
import { PetriError } from '../errors.ts';
import type { InstanceState } from '../policy/index.ts';
import type { SnapshotManager, SnapshotStatus } from '../snapshot/index.ts';
import { parseDeployBody, type FunctionSource, type FunctionSpec } from '../spec/index.ts';
import type { FunctionRecord, Store } from '../store/index.ts';
import type { Clock } from './clock.ts';
import {
  folderDigest,
  materialize,
  removeFunctionDirIfEmpty,
  removeVersionFiles,
  versionLayout,
  versionsOnDisk,
} from './deploy.ts';
import type { FunctionEntry, Pool } from './pool.ts';

export interface FunctionView {
  name: string;
  version: number;
  spec: FunctionSpec;
  createdAt: number;
  updatedAt: number;
  instances: Record<Exclude<InstanceState, 'dead'>, number>;
  queueLength: number;
  /** The current version's restore snapshot, for a spec with `snapshot: true`. */
  snapshot?: SnapshotStatus;
}

export interface CatalogDeps {
  stateDir: string;
  store: Store;
  pool: Pool;
  log: Logger;
  clock: Clock;
  deploy: DeployConfig;
  /** Whether an instance (running or starting) uses a version's files. */
  inUse(name: string, version: number): boolean;
  /** Restore snapshots: built for a version deployed with `snapshot: true`. */
  snapshots?: SnapshotManager;
}

/**
 * The node's functions and their versions: deploys, listing and removal, and
 * the versions' files on disk. The pool holds each function's current
 * version; the store keeps every version's record. Disk work on one function
 * (deploy, prune, removal) runs one task at a time.
 */
export class FunctionCatalog {
  private readonly tasks = new Map<string, Promise<unknown>>();
  /** Versions of removed functions: their files go as soon as no instance uses them. */
  private readonly doomed = new Set<string>();
  private closed = false;

  constructor(private readonly deps: CatalogDeps) {}

  /** Deploys a new function or a new version of one. */
  async deploy(name: string, body: unknown): Promise<{ view: FunctionView; created: boolean }> {
    const { spec, source } = parseDeployBody(name, body);
    return this.serially(name, async () => {
      try {
        return await this.publish(name, spec, source);
      } finally {
        // Prunes old versions, or the empty folder a failed first deploy leaves.
        await this.sweep(name);
      }
    });
  }

  list(): FunctionView[] {
    return [...this.deps.pool.functions.values()]
      .sort((a, b) => a.record.name.localeCompare(b.record.name))
      .map((entry) => this.view(entry));
  }

  get(name: string): FunctionView {
    return this.view(this.require(name));
  }

  private view(entry: FunctionEntry): FunctionView {
    const view = functionView(entry);
    const { name, version } = entry.record;
    const snapshot = entry.record.spec.snapshot
      ? this.deps.snapshots?.status(name, version)
      : undefined;
    return snapshot ? { ...view, snapshot } : view;
  }

  /**
   * Removes a function; its versions' files are gone when this returns,
   * except those instances still use, which go when the last one stops.
   */
  async remove(name: string): Promise<void> {
    this.require(name);
    this.deps.pool.removeFunction(name);
    void this.deps.snapshots?.drop(name);
    this.deps.store.deleteFunction(name);
    this.deps.log.info({ function: name }, 'removed');
    await this.serially(name, async () => {
      // A deploy that was under way may have made the function again; its versions stay.
      if (!this.deps.store.getFunction(name)) {
        for (const version of await versionsOnDisk(this.deps.stateDir, name))
          this.doomed.add(versionKey(name, version));
      }
      await this.sweep(name);
    });
  }

  /** Called when the last instance of a version stops: its files may go now. */
  versionUnused(name: string, version: number): void {
    if (this.closed || this.deps.pool.entry(name)?.record.version === version) return;
    void this.serially(name, () => this.sweep(name)).catch(() => undefined);
  }

  /** At start: frees what an earlier run left (removed functions, pruned versions, half-made ones). */
  async sweepAll(): Promise<void> {
    const names = await fs
      .readdir(path.join(this.deps.stateDir, 'functions'))
      .catch(() => [] as string[]);
    for (const name of names) await this.serially(name, () => this.sweep(name));
  }

  /** Stops scheduling disk work and waits for what is under way. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.allSettled([...this.tasks.values()]);
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
    await materialize(layout, spec, source, { ...this.deps.deploy, stateDir: this.deps.stateDir });
    if (existing && (await sameVersion(existing, spec, layout.dir))) {
      // Like Lambda's PublishVersion: nothing changed, so no new version.
      await removeVersionFiles(layout);
      return { view: this.view(this.require(name)), created: false };
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
    // New instances are of this version only: older snapshots are of no more use.
    void this.deps.snapshots?.drop(name, version);
    if (spec.snapshot) this.deps.snapshots?.build(record);
    this.deps.log.info({ function: name, version }, 'deployed');
    return { view: this.view(this.require(name)), created: !existing };
  }

  /** Runs `task` after every earlier disk task of the function. */
  private serially<T>(name: string, task: () => Promise<T>): Promise<T> {
    const previous = this.tasks.get(name) ?? Promise.resolve();
    const next = previous.catch(() => {}).then(task);
    this.tasks.set(name, next);
    const forget = (): void => {
      if (this.tasks.get(name) === next) this.tasks.delete(name);
    };
    next.then(forget, forget);
    return next;
  }

  /**
   * Deletes the files of versions nothing needs: those of a removed
   * function, and those older than the newest `keepVersions` of a live one
   * (the current version is always kept). A version an instance still uses
   * waits for `versionUnused`. Failures are logged, not thrown: the
   * deploy or removal itself has happened.
   */
  private async sweep(name: string): Promise<void> {
    const { stateDir, store, log } = this.deps;
    try {
      const current = store.getFunction(name);
      const onDisk = await versionsOnDisk(stateDir, name);
      const keep = new Set<number>();
      if (current) {
        const older = onDisk.filter((version) => version <= current.version);
        for (const version of older.slice(-this.deps.deploy.keepVersions)) keep.add(version);
        keep.add(current.version);
      }
      for (const version of onDisk) {
        const key = versionKey(name, version);
        if (keep.has(version) && !this.doomed.has(key)) continue;
        if (this.deps.inUse(name, version)) continue;
        await removeVersionFiles(versionLayout(stateDir, name, version));
        this.doomed.delete(key);
        log.info({ function: name, version }, current ? 'pruned version' : 'removed version files');
      }
      if (!current) await removeFunctionDirIfEmpty(stateDir, name);
    } catch (err) {
      log.error({ err, function: name }, 'could not free version files');
    }
  }
}

function versionKey(name: string, version: number): string {
  return `${name}/${version}`;
}

function functionView(entry: FunctionEntry): FunctionView {
  const instances = { starting: entry.starting, idle: 0, paused: 0, busy: 0, stopping: 0 };
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
