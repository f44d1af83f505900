import fs from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import type { DeployConfig } from '../config.ts';
import { PetriError } from '../errors.ts';
import type { InstanceState } from '../policy/index.ts';
import type { SnapshotManager, SnapshotStatus } from '../snapshot/index.ts';
import {
  AliasBodySchema,
  AliasNameSchema,
  applyConfigPatch,
  fieldIssues,
  parseDeployBody,
  type FunctionSource,
  type FunctionSpec,
  type VersionSelector,
} from '../spec/index.ts';
import type { FunctionRecord, Store } from '../store/index.ts';
import { cloneVersionFolder } from './clone.ts';
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
import {
  aliasView,
  retainedVersions,
  VersionBook,
  type AliasView,
  type ResolvedTarget,
  type VersionView,
} from './versions.ts';

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
  /** Checks what only the node can judge (the CPU classes a spec names); throws InvalidSpec. */
  checkSpec?(spec: FunctionSpec): void;
  /** Restore snapshots: built for a version deployed with `snapshot: true`. */
  snapshots?: SnapshotManager;
  /** Hears of every version the pool now serves (the autoscaler sets its start limit at once). */
  onFunctionSet?(record: FunctionRecord): void;
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
  /** Aliases and version records (src/node/versions.ts). */
  private readonly book: VersionBook;

  constructor(private readonly deps: CatalogDeps) {
    this.book = new VersionBook(deps.store);
  }

  /** At start, after the pool has every function: loads aliases and keeps their versions warm. */
  loadAliases(): void {
    this.book.load();
    for (const name of this.deps.pool.functions.keys()) this.keepAliasedWarm(name);
  }

  /** Deploys a new function or a new version of one. */
  async deploy(name: string, body: unknown): Promise<{ view: FunctionView; created: boolean }> {
    const { spec, source } = parseDeployBody(name, body);
    this.deps.checkSpec?.(spec);
    return this.serially(name, async () => {
      try {
        return await this.publish(name, spec, source);
      } finally {
        // Prunes old versions, or the empty folder a failed first deploy leaves.
        await this.sweep(name);
      }
    });
  }

  /**
   * A new version with the current one's code and a merge patch applied to
   * its spec (`PATCH /v1/functions/{name}`); none when the spec is unchanged.
   */
  async patch(name: string, body: unknown): Promise<FunctionView> {
    this.require(name);
    return this.serially(name, async () => {
      try {
        return await this.publishConfig(name, body);
      } finally {
        await this.sweep(name);
      }
    });
  }

  /** The versions that can be invoked (not pruned), oldest first. */
  versions(name: string): VersionView[] {
    const entry = this.require(name);
    const all = this.book.allRecords(name);
    const keep = this.retained(name, all);
    const aliases = this.book.aliasesOf(name);
    return all
      .filter((record) => keep.has(record.version))
      .map((record) => ({
        version: record.version,
        spec: record.spec,
        createdAt: record.updatedAt,
        ...(record.codeDigest ? { codeDigest: record.codeDigest } : {}),
        current: record.version === entry.record.version,
        aliases: aliases
          .filter((a) => a.version === record.version || a.canary?.version === record.version)
          .map((a) => a.name),
      }));
  }

  /**
   * The version an invocation runs: the current one, the one asked for
   * (`VersionNotFound` if pruned or never made), or the one an alias picks.
   */
  resolveTarget(name: string, selector: VersionSelector = {}): ResolvedTarget {
    const entry = this.require(name);
    if (selector.version !== undefined && selector.alias !== undefined)
      throw new PetriError('InvalidRequest', 'ask for a version or an alias, not both');
    let version = selector.version;
    const alias = selector.alias;
    if (alias !== undefined) version = this.book.pick(this.book.alias(name, alias));
    if (version === undefined || version === entry.record.version)
      return { name, version: entry.record.version, record: entry.record, alias };
    const record = entry.kept.get(version) ?? this.retainedRecord(name, version);
    return { name, version, record, alias };
  }

  listAliases(name: string): AliasView[] {
    this.require(name);
    return this.book.aliasesOf(name).map(aliasView);
  }

  getAlias(name: string, alias: string): AliasView {
    this.require(name);
    return aliasView(this.book.alias(name, checkAliasName(alias)));
  }

  /** Creates or moves an alias (a rollback is moving it back); its versions stay warm and kept. */
  async setAlias(
    name: string,
    alias: string,
    body: unknown,
  ): Promise<{ view: AliasView; created: boolean }> {
    this.require(name);
    const validName = AliasNameSchema.safeParse(alias);
    if (!validName.success) {
      const issues = fieldIssues(validName.error).map((i) => ({ ...i, field: 'alias' }));
      throw new PetriError('InvalidRequest', `invalid alias name "${alias}"`, { issues });
    }
    const parsed = AliasBodySchema.safeParse(body ?? {});
    if (!parsed.success) {
      const issues = fieldIssues(parsed.error);
      const text = issues.map((i) => `${i.field} ${i.message}`).join('; ');
      throw new PetriError('InvalidRequest', `invalid alias: ${text}`, { issues });
    }
    return this.serially(name, async () => {
      const entry = this.require(name);
      for (const version of [parsed.data.version, parsed.data.canary?.version]) {
        if (version !== undefined && version !== entry.record.version)
          this.retainedRecord(name, version);
      }
      const { record, created } = this.book.setAlias(
        name,
        alias,
        parsed.data,
        this.deps.clock.now(),
      );
      this.keepAliasedWarm(name);
      this.deps.log.info({ function: name, alias, version: record.version }, 'alias set');
      await this.sweep(name);
      return { view: aliasView(record), created };
    });
  }

  async deleteAlias(name: string, alias: string): Promise<void> {
    this.require(name);
    checkAliasName(alias);
    await this.serially(name, async () => {
      this.book.deleteAlias(name, alias);
      this.keepAliasedWarm(name);
      this.deps.log.info({ function: name, alias }, 'alias removed');
      await this.sweep(name);
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
    this.book.forget(name);
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
    const codeDigest = await folderDigest(layout.dir);
    if (existing && (await sameVersion(existing, spec, codeDigest))) {
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
      codeDigest,
    };
    store.saveFunctionVersion(record);
    pool.setFunction(record);
    this.deps.onFunctionSet?.(record);
    // New instances are of this version only: older snapshots are of no more use.
    void this.deps.snapshots?.drop(name, version);
    if (spec.snapshot) this.deps.snapshots?.build(record);
    this.deps.log.info({ function: name, version }, 'deployed');
    return { view: this.view(this.require(name)), created: !existing };
  }

  private async publishConfig(name: string, body: unknown): Promise<FunctionView> {
    const { store, pool, stateDir } = this.deps;
    const current = store.getFunction(name);
    if (!current) throw new PetriError('FunctionNotFound', `no function named "${name}"`);
    const spec = applyConfigPatch(current.spec, body);
    if (JSON.stringify(spec) === JSON.stringify(current.spec))
      return functionView(this.require(name));
    const version = store.lastVersion(name) + 1;
    const layout = versionLayout(stateDir, name, version);
    await cloneVersionFolder(versionLayout(stateDir, name, current.version).dir, layout.dir);
    const codeDigest = current.codeDigest ?? (await folderDigest(layout.dir));
    const record: FunctionRecord = {
      name,
      version,
      spec,
      codeDir: layout.dir,
      createdAt: current.createdAt,
      updatedAt: this.deps.clock.now(),
      codeDigest,
    };
    store.saveFunctionVersion(record);
    pool.setFunction(record);
    this.deps.onFunctionSet?.(record);
    // A snapshot holds the env and limits it was built with: the new version needs its own.
    void this.deps.snapshots?.drop(name, version);
    if (spec.snapshot) this.deps.snapshots?.build(record);
    this.deps.log.info({ function: name, version }, 'configuration changed');
    return this.view(this.require(name));
  }

  /** The versions kept on disk (see retainedVersions), from the store's records. */
  private retained(name: string, all: FunctionRecord[] = this.book.allRecords(name)): Set<number> {
    const current = this.require(name).record.version;
    return retainedVersions(
      all.map((record) => record.version),
      current,
      this.deps.deploy.keepVersions,
      this.book.referenced(name),
    );
  }

  /** A version that is still kept, or `VersionNotFound`. */
  private retainedRecord(name: string, version: number): FunctionRecord {
    const record = this.book.record(name, version);
    if (!record || !this.retained(name).has(version)) {
      throw new PetriError('VersionNotFound', `function "${name}" has no version ${version}`, {
        versions: [...this.retained(name)].sort((a, b) => a - b),
      });
    }
    return record;
  }

  /** Tells the pool which versions aliases name, so their instances stay warm. */
  private keepAliasedWarm(name: string): void {
    const records: FunctionRecord[] = [];
    for (const version of this.book.referenced(name)) {
      const record = this.book.record(name, version);
      if (record) records.push(record);
    }
    this.deps.pool.keepVersions(name, records);
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
        // Versions an alias names stay, however old.
        for (const version of this.book.referenced(name)) keep.add(version);
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

/** Whether a deploy's spec and materialised folder's digest equal the function's current version. */
async function sameVersion(
  current: FunctionRecord,
  spec: FunctionSpec,
  digest: string,
): Promise<boolean> {
  if (JSON.stringify(current.spec) !== JSON.stringify(spec)) return false;
  const before = current.codeDigest ?? (await folderDigest(current.codeDir).catch(() => ''));
  return before === digest;
}

function checkAliasName(alias: string): string {
  const valid = AliasNameSchema.safeParse(alias);
  if (!valid.success) throw new PetriError('AliasNotFound', `no alias named "${alias}"`);
  return alias;
}
