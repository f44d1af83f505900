import { constants as fsConstants, rmSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import type { SnapshotsConfig, SnapshotTier } from '../config.ts';
import { bundleSnapshotEntry } from '../runtime/index.ts';
import type { Sandbox, SandboxDriver, SandboxExit, SandboxSpec } from '../sandbox/index.ts';
import type { FunctionRecord } from '../store/index.ts';
import {
  invalidTierPlan,
  LruDemote,
  type SnapshotTierPolicy,
  type StoredSnapshotView,
  type TierPlan,
  type TierView,
} from '../policy/index.ts';
import type { SnapshotManager, SnapshotStatus, TierStatus } from './types.ts';

export interface SnapshotDeps {
  config: SnapshotsConfig;
  stateDir: string;
  driver: SandboxDriver;
  /** The version's sandbox (its limits) running `nodeArgs`, allowed to write `writableDir`. */
  sandboxSpec(record: FunctionRecord, nodeArgs: string[], writableDir: string): SandboxSpec;
  log: Logger;
  now(): number;
  /** Where snapshots go and what makes room (default: lru-demote). */
  tierPolicy?: SnapshotTierPolicy;
}

interface Entry {
  status: SnapshotStatus;
  file?: string;
  /** The last restore, or when it was placed (the tier policy's recency). */
  lastUsedAt: number;
  /** Sum of restore times, for the mean. */
  restoreMsTotal: number;
}

/** The default tier when the config names none. */
const DISK_TIER_MB = 4096;
/** stderr lines of a failed build shown as its reason. */
const REASON_BYTES = 600;

/**
 * Snapshots as files on the node's tiers, built one at a time with
 * `node --build-snapshot` inside the version's own sandbox: the builder runs
 * the function's module-level code, so it gets the function's limits and
 * one writable folder, and the blob it leaves is checked (a regular file,
 * not a link, within maxBytes) before the daemon copies it to its tier.
 */
export class FileSnapshotManager implements SnapshotManager {
  private readonly entries = new Map<string, Entry>();
  private readonly tiers: SnapshotTier[];
  private readonly workRoot: string;
  /** `<stateDir>/snapshots`: the node's own, removed at stop (configured tier folders stay). */
  private readonly ownRoot: string;
  private readonly tierPolicy: SnapshotTierPolicy;
  private queue: Promise<void> = Promise.resolve();
  private building: Sandbox | undefined;
  private closed = false;

  constructor(private readonly deps: SnapshotDeps) {
    const root = path.join(path.resolve(deps.stateDir), 'snapshots');
    this.tiers =
      deps.config.tiers.length > 0
        ? deps.config.tiers
        : [{ name: 'disk', dir: path.join(root, 'disk'), capacityMb: DISK_TIER_MB }];
    this.workRoot = path.join(root, 'build');
    this.ownRoot = root;
    this.tierPolicy = deps.tierPolicy ?? new LruDemote();
  }

  build(record: FunctionRecord): void {
    const key = keyOf(record.name, record.version);
    if (this.closed || this.entries.has(key)) return;
    const entry: Entry = {
      status: { state: 'building', restores: 0 },
      lastUsedAt: this.deps.now(),
      restoreMsTotal: 0,
    };
    this.entries.set(key, entry);
    this.queue = this.queue.then(() => this.runBuild(record, entry));
  }

  status(name: string, version: number): SnapshotStatus | undefined {
    const entry = this.entries.get(keyOf(name, version));
    return entry && { ...entry.status };
  }

  blobFor(name: string, version: number): string | undefined {
    const entry = this.entries.get(keyOf(name, version));
    return entry?.status.state === 'ready' ? entry.file : undefined;
  }

  recordRestore(name: string, version: number, ms: number): void {
    const entry = this.entries.get(keyOf(name, version));
    if (!entry) return;
    entry.status.restores += 1;
    entry.restoreMsTotal += ms;
    entry.lastUsedAt = this.deps.now();
    entry.status.lastRestoreMs = Math.round(ms);
    entry.status.meanRestoreMs = Math.round(entry.restoreMsTotal / entry.status.restores);
  }

  markBroken(name: string, version: number, reason: string, failedFile?: string): void {
    const entry = this.entries.get(keyOf(name, version));
    if (entry?.status.state !== 'ready') return;
    // Demoted while the restore started: the file that failed is not the snapshot's any more.
    if (failedFile !== undefined && failedFile !== entry.file) return;
    const file = entry.file;
    entry.file = undefined;
    // Gone before the state says so: one unlink, and nothing may restore it meanwhile.
    if (file) rmSync(file, { force: true });
    entry.status = { state: 'failed', reason: `restore failed: ${reason}`, restores: 0 };
  }

  tierStatus(): { policy: string; tiers: TierStatus[] } {
    const tiers = this.tiers.map((tier) => {
      const snapshots = [...this.entries]
        .filter(([, entry]) => entry.file !== undefined && entry.status.tier === tier.name)
        .map(([key]) => key)
        .sort();
      const view = this.tierViews().find((v) => v.name === tier.name)!;
      return {
        name: tier.name,
        dir: tier.dir,
        capacityBytes: view.capacityBytes,
        usedBytes: view.usedBytes,
        snapshots,
      };
    });
    return { policy: this.tierPolicy.name, tiers };
  }

  async drop(name: string, keep?: number): Promise<void> {
    for (const [key, entry] of [...this.entries]) {
      const [entryName, version] = splitKey(key);
      if (entryName !== name || version === keep) continue;
      this.entries.delete(key);
      if (entry.file) await fs.rm(entry.file, { force: true });
    }
  }

  async reconcile(): Promise<void> {
    await fs.rm(this.workRoot, { recursive: true, force: true });
    for (const tier of this.tiers) {
      // Made when the first snapshot is placed; only Petri's *.blob files are removed.
      const files = await fs.readdir(tier.dir).catch(() => [] as string[]);
      for (const file of files) {
        if (file.endsWith('.blob')) await fs.rm(path.join(tier.dir, file), { force: true });
      }
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.building?.destroy();
    await this.queue;
    for (const entry of this.entries.values())
      if (entry.file) await fs.rm(entry.file, { force: true });
    this.entries.clear();
    await fs.rm(this.workRoot, { recursive: true, force: true });
    await fs.rm(this.ownRoot, { recursive: true, force: true });
  }

  private async runBuild(record: FunctionRecord, entry: Entry): Promise<void> {
    const started = this.deps.now();
    const work = path.join(this.workRoot, `${record.name}-${record.version}`);
    try {
      if (this.closed) throw new Error('the node is stopping');
      const blob = await this.buildIn(record, work);
      const placed = await this.place(record, blob);
      if (this.entries.get(keyOf(record.name, record.version)) !== entry) {
        await fs.rm(placed.file, { force: true }); // dropped while it was built
        return;
      }
      entry.file = placed.file;
      entry.lastUsedAt = this.deps.now();
      entry.status = {
        state: 'ready',
        bytes: placed.bytes,
        buildMs: Math.round(this.deps.now() - started),
        tier: placed.tier,
        restores: 0,
      };
      this.deps.log.info(
        { function: record.name, version: record.version, ...entry.status },
        'snapshot ready',
      );
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      entry.status = {
        state: 'failed',
        reason,
        buildMs: Math.round(this.deps.now() - started),
        restores: 0,
      };
      this.deps.log.warn(
        { function: record.name, version: record.version, reason },
        'snapshot failed',
      );
    } finally {
      await fs.rm(work, { recursive: true, force: true });
    }
  }

  /** Bundles the entry and runs the builder in the version's sandbox; resolves with the blob's path. */
  private async buildIn(record: FunctionRecord, work: string): Promise<string> {
    await fs.rm(work, { recursive: true, force: true });
    const out = path.join(work, 'out');
    await fs.mkdir(out, { recursive: true, mode: 0o700 });
    const entryFile = path.join(work, 'entry.cjs');
    const code = path.join(record.codeDir, 'code');
    await bundleSnapshotEntry(code, record.spec.handler, entryFile, [await fs.realpath(code)]);
    const blob = path.join(out, 'snapshot.blob');
    const args = ['--snapshot-blob', blob, '--build-snapshot', entryFile];
    const exit = await this.runBuilder(this.deps.sandboxSpec(record, args, out));
    if (exit.code !== 0) {
      const how = exit.oomKilled
        ? 'ran out of memory'
        : exit.signal
          ? `was killed (${exit.signal})`
          : `exited with code ${exit.code}`;
      const tail = exit.stderrTail.trim().slice(-REASON_BYTES);
      throw new Error(`the snapshot builder ${how}${tail ? `: ${tail}` : ''}`);
    }
    return blob;
  }

  private async runBuilder(spec: SandboxSpec): Promise<SandboxExit> {
    const sandbox = await this.deps.driver.create(spec);
    this.building = sandbox;
    const { buildTimeoutMs } = this.deps.config;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      void sandbox.destroy();
    }, buildTimeoutMs);
    try {
      const exit = await new Promise<SandboxExit>((resolve) => sandbox.on('exit', resolve));
      if (timedOut) {
        throw new Error(
          `the snapshot build did not end within ${buildTimeoutMs} ms (an open handle or a timer at the end of init keeps it running)`,
        );
      }
      return exit;
    } finally {
      clearTimeout(timer);
      this.building = undefined;
      await sandbox.destroy();
    }
  }

  /** Checks the builder's output and copies it to the tier the placement policy picks. */
  private async place(
    record: FunctionRecord,
    blob: string,
  ): Promise<{ file: string; bytes: number; tier: string }> {
    // The builder's user owns `out`: the blob may be a link, a hard link or a FIFO (never block on it).
    const handle = await fs
      .open(blob, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK)
      .catch((err: NodeJS.ErrnoException) => {
        throw new Error(`the snapshot builder left no snapshot (${err.code ?? err.message})`);
      });
    try {
      const stat = await handle.stat();
      if (!stat.isFile() || stat.nlink !== 1) throw new Error('the snapshot is not a plain file');
      if (stat.size === 0) throw new Error('the snapshot is empty');
      if (stat.size > this.deps.config.maxBytes) {
        throw new Error(
          `the snapshot is ${stat.size} bytes, over snapshots.maxBytes (${this.deps.config.maxBytes})`,
        );
      }
      const tier = await this.makeRoom(keyOf(record.name, record.version), stat.size);
      await fs.mkdir(tier.dir, { recursive: true, mode: 0o755 });
      const file = path.join(tier.dir, `${record.name}-${record.version}.blob`);
      await copyFrom(handle, file, stat.size);
      return { file, bytes: stat.size, tier: tier.name };
    } finally {
      await handle.close();
    }
  }

  /** Asks the tier policy where `bytes` go, checks its plan and makes the moves it names. */
  private async makeRoom(key: string, bytes: number): Promise<SnapshotTier> {
    const tiers = this.tierViews();
    const stored = this.storedViews();
    const incoming = Object.freeze({ key, bytes, now: this.deps.now() });
    const plan = this.tierPolicy.plan(Object.freeze(tiers), Object.freeze(stored), incoming);
    if (!plan) throw new Error(`no snapshot tier keeps ${bytes} bytes (${this.tierPolicy.name})`);
    const invalid = invalidTierPlan(plan, tiers, stored, incoming);
    if (invalid !== undefined)
      throw new Error(
        `snapshot tier policy "${this.tierPolicy.name}" made a plan that fails: ${invalid}`,
      );
    await this.carryOut(plan);
    return this.tiers.find((t) => t.name === plan.tier)!;
  }

  /** Moves (copy, then switch, then unlink) or evicts each snapshot the plan names, in order. */
  private async carryOut(plan: TierPlan): Promise<void> {
    for (const move of plan.moves) {
      const entry = this.entries.get(move.key);
      if (!entry?.file) continue;
      const old = entry.file;
      const { status } = entry;
      if (move.to === undefined) {
        entry.file = undefined;
        entry.status = {
          ...status,
          state: 'evicted',
          reason: `evicted from tier ${status.tier} to make room for a newer snapshot (${this.tierPolicy.name})`,
          tier: undefined,
        };
        await fs.rm(old, { force: true });
        this.deps.log.info({ snapshot: move.key, from: status.tier }, 'snapshot evicted');
        continue;
      }
      const tier = this.tiers.find((t) => t.name === move.to)!;
      await fs.mkdir(tier.dir, { recursive: true, mode: 0o755 });
      const file = path.join(tier.dir, path.basename(old));
      await fs.copyFile(old, file);
      // A restore that took the old path a moment ago may fail: markBroken ignores it (the file moved).
      entry.file = file;
      entry.status = { ...status, tier: tier.name, demotions: (status.demotions ?? 0) + 1 };
      await fs.rm(old, { force: true });
      this.deps.log.info(
        { snapshot: move.key, from: status.tier, to: tier.name },
        'snapshot demoted',
      );
    }
  }

  private storedViews(): StoredSnapshotView[] {
    const views: StoredSnapshotView[] = [];
    for (const [key, entry] of this.entries) {
      if (entry.file === undefined || entry.status.tier === undefined) continue;
      views.push(
        Object.freeze({
          key,
          tier: entry.status.tier,
          bytes: entry.status.bytes ?? 0,
          restores: entry.status.restores,
          lastUsedAt: entry.lastUsedAt,
        }),
      );
    }
    return views;
  }

  private tierViews(): TierView[] {
    return this.tiers.map((tier) => {
      let used = 0;
      for (const entry of this.entries.values()) {
        if (entry.file !== undefined && entry.status.tier === tier.name)
          used += entry.status.bytes ?? 0;
      }
      return Object.freeze({
        name: tier.name,
        capacityBytes: tier.capacityMb * 1024 * 1024,
        usedBytes: used,
      });
    });
  }
}

function keyOf(name: string, version: number): string {
  return `${name}/${version}`;
}

function splitKey(key: string): [string, number] {
  const slash = key.lastIndexOf('/');
  return [key.slice(0, slash), Number(key.slice(slash + 1))];
}

const COPY_CHUNK = 1 << 20;

/** Copies `size` bytes from an open file to a new one (the source was opened without following links). */
async function copyFrom(source: fs.FileHandle, file: string, size: number): Promise<void> {
  const target = await fs.open(file, 'w', 0o644);
  try {
    const buffer = Buffer.alloc(Math.min(COPY_CHUNK, size));
    for (let at = 0; at < size;) {
      const { bytesRead } = await source.read(buffer, 0, Math.min(buffer.length, size - at), at);
      if (bytesRead === 0) throw new Error('the snapshot shrank while it was copied');
      await target.write(buffer, 0, bytesRead);
      at += bytesRead;
    }
  } finally {
    await target.close();
  }
}
