import { PetriError } from '../errors.ts';
import type { AliasBody, VersionSelector } from '../spec/index.ts';
import type { AliasRecord, FunctionRecord, Store } from '../store/index.ts';

/** What an invocation runs: one version of a function, and the alias that chose it. */
export interface ResolvedTarget {
  name: string;
  version: number;
  record: FunctionRecord;
  alias?: string;
}

/** One version as `GET /v1/functions/{name}/versions` lists it. */
export interface VersionView {
  version: number;
  spec: FunctionRecord['spec'];
  createdAt: number;
  /** Equal digests: equal code and bundle (a config-only version shares its code's). */
  codeDigest?: string;
  current: boolean;
  /** The aliases that name it, as their version or their canary. */
  aliases: string[];
}

export interface AliasView {
  name: string;
  functionName: string;
  version: number;
  canary?: { version: number; weight: number };
  createdAt: number;
  updatedAt: number;
}

/**
 * The node's aliases (in memory, written through to the store) and the
 * version records invocations of non-current versions need (read once from
 * the store: versions never change). Picks a version for an alias with a
 * canary by smooth weighted round robin, so the canary's share is exact to
 * one call over any run of calls rather than only on average.
 */
export class VersionBook {
  private readonly aliases = new Map<string, Map<string, AliasRecord>>();
  private readonly records = new Map<string, Map<number, FunctionRecord>>();
  /** Per alias (`function/alias`): the canary's share owed so far, below 1. */
  private readonly credit = new Map<string, number>();

  constructor(private readonly store: Store) {}

  load(): void {
    for (const alias of this.store.allAliases()) this.put(alias);
  }

  aliasesOf(name: string): AliasRecord[] {
    return [...(this.aliases.get(name)?.values() ?? [])].sort((a, b) =>
      a.name.localeCompare(b.name),
    );
  }

  alias(name: string, alias: string): AliasRecord {
    const found = this.aliases.get(name)?.get(alias);
    if (!found) throw new PetriError('AliasNotFound', `function "${name}" has no alias "${alias}"`);
    return found;
  }

  /** Every version an alias of the function names (its version or its canary). */
  referenced(name: string): Set<number> {
    const versions = new Set<number>();
    for (const alias of this.aliases.get(name)?.values() ?? []) {
      versions.add(alias.version);
      if (alias.canary) versions.add(alias.canary.version);
    }
    return versions;
  }

  /** A version's record, or undefined when the store has none for the function as deployed now. */
  record(name: string, version: number): FunctionRecord | undefined {
    let known = this.records.get(name);
    if (!known?.has(version)) {
      known = new Map(this.store.listVersions(name).map((r) => [r.version, r]));
      this.records.set(name, known);
    }
    return known.get(version);
  }

  /** Every version record of the function as deployed now, oldest first. */
  allRecords(name: string): FunctionRecord[] {
    const all = this.store.listVersions(name);
    this.records.set(name, new Map(all.map((r) => [r.version, r])));
    return all;
  }

  setAlias(
    name: string,
    alias: string,
    body: AliasBody,
    at: number,
  ): { record: AliasRecord; created: boolean } {
    const before = this.aliases.get(name)?.get(alias);
    const record: AliasRecord = {
      functionName: name,
      name: alias,
      version: body.version,
      ...(body.canary ? { canary: { ...body.canary } } : {}),
      createdAt: before?.createdAt ?? at,
      updatedAt: at,
    };
    this.store.saveAlias(record);
    this.put(record);
    this.credit.delete(`${name}/${alias}`);
    return { record, created: before === undefined };
  }

  deleteAlias(name: string, alias: string): void {
    this.alias(name, alias);
    this.store.deleteAlias(name, alias);
    this.aliases.get(name)?.delete(alias);
    this.credit.delete(`${name}/${alias}`);
  }

  /** The function is gone (its aliases went with it in the store). */
  forget(name: string): void {
    for (const alias of this.aliases.get(name)?.keys() ?? [])
      this.credit.delete(`${name}/${alias}`);
    this.aliases.delete(name);
    this.records.delete(name);
  }

  /** The version an invocation through `alias` runs: the canary for its share of calls. */
  pick(alias: AliasRecord): number {
    if (!alias.canary || alias.canary.weight <= 0) return alias.version;
    const key = `${alias.functionName}/${alias.name}`;
    const owed = (this.credit.get(key) ?? 0) + alias.canary.weight;
    // The tolerance keeps float sums (0.1 ten times) from falling just short of 1.
    if (owed >= 1 - 1e-9) {
      this.credit.set(key, owed - 1);
      return alias.canary.version;
    }
    this.credit.set(key, owed);
    return alias.version;
  }

  private put(alias: AliasRecord): void {
    let byName = this.aliases.get(alias.functionName);
    if (!byName) this.aliases.set(alias.functionName, (byName = new Map()));
    byName.set(alias.name, alias);
  }
}

export function aliasView(alias: AliasRecord): AliasView {
  return {
    name: alias.name,
    functionName: alias.functionName,
    version: alias.version,
    ...(alias.canary ? { canary: alias.canary } : {}),
    createdAt: alias.createdAt,
    updatedAt: alias.updatedAt,
  };
}

/**
 * Which versions of a function stay on disk: the newest `keepVersions` up to
 * the current one, the current one, and every version an alias names.
 */
export function retainedVersions(
  versions: number[],
  current: number,
  keepVersions: number,
  referenced: Set<number>,
): Set<number> {
  const older = versions.filter((version) => version <= current).sort((a, b) => a - b);
  const keep = new Set(older.slice(-keepVersions));
  keep.add(current);
  for (const version of referenced) keep.add(version);
  return keep;
}

export type { VersionSelector };
