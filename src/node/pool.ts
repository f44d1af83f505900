import { PetriError } from '../errors.ts';
import {
  invalidDecision,
  WarmFirst,
  type InstanceState,
  type InstanceView,
  type KeepAlivePolicy,
  type NodeView,
  type StartDecision,
  type StartOptions,
  type StartPathPolicy,
} from '../policy/index.ts';
import type { StartPath } from '../store/index.ts';
import type { FunctionRecord } from '../store/index.ts';
import { systemClock, type Clock, type Timer } from './clock.ts';
import type { Instance } from './instance.ts';
import { PoolView, type PoolViewSource } from './pool-view.ts';
import { PrewarmScheduler } from './prewarm.ts';
import type { PrewarmClaim } from './prewarm-runtimes.ts';

/** What a dispatched invocation gets: an instance with a slot reserved for it. */
export interface Slot {
  instance: Instance;
  startPath: StartPath;
  /** When the pool chose the instance (for a cold start: when the start began). */
  dispatchedAt: number;
}

export interface PoolLimits {
  memoryBudgetMb: number;
  maxInstancesPerFunction: number;
  queueMaxSize: number;
  queueMaxWaitMs: number;
  /** How long an instance stays idle and running before it is frozen (paused); absent: never. */
  pauseGraceMs?: number;
}

/** Hears that a new instance starts for an invocation, and on which path (cold or restore). */
export type OnNewInstance = (path?: 'prewarm' | 'restore' | 'cold') => void;

interface Waiter {
  resolve(slot: Slot): void;
  reject(error: PetriError): void;
  onColdStart: OnNewInstance | undefined;
  timer: Timer | undefined;
  /** The version it asked for. */
  record: FunctionRecord;
}

/** Per function: its current version, its instances (any version) and its queue. */
export interface FunctionEntry {
  record: FunctionRecord;
  /**
   * Other versions kept warm like the current one (those an alias names):
   * their idle instances stay under the keep-alive policy instead of draining.
   */
  kept: Map<number, FunctionRecord>;
  instances: Set<Instance>;
  /** Cold starts under way, not yet in `instances`. */
  starting: number;
  /** The same, per version (made on the first cold start). */
  startingByVersion?: Map<number, number>;
  queue: Waiter[];
  /** Invocations that asked for an instance (acquire calls), ever; autoscalers read rates from it. */
  arrivals: number;
  /**
   * Most live instances an arrival may cold-start on its own; undefined: the
   * function's cap (on-demand). An autoscaler sets 1: arrivals start an
   * instance only from zero, and wait in the queue for the scaler otherwise.
   */
  demandStartLimit?: number;
  /** Invocations waiting on a cold start made for them (in no queue and on no instance yet). */
  awaitingStart?: number;
  /**
   * Its idle or paused instances (any version), in the order they became
   * idle: what a start needs to look at when the function runs one
   * invocation per instance, instead of every instance it has.
   */
  idle: Set<Instance>;
}

export interface PoolHooks {
  /** Starts a new instance of the given version (cold, or restored from its snapshot). */
  startInstance(record: FunctionRecord, path?: 'cold' | 'restore'): Promise<Instance>;
  /** True when the version has a snapshot ready to restore; absent: never. */
  snapshotReady?(record: FunctionRecord): boolean;
  /** Ready prewarmed runtimes the version could bind; absent: none. */
  prewarmsFor?(record: FunctionRecord): number;
  /** Takes a ready prewarmed runtime for the version (its memory reservation comes with it). */
  claimPrewarm?(record: FunctionRecord): PrewarmClaim | undefined;
}

/** Idle instances, running or frozen: what keep-alive may stop. */
function isIdle(instance: Instance): boolean {
  return instance.state === 'idle' || instance.state === 'paused';
}

/**
 * Decides where each invocation runs, by asking the start-path policy: a
 * warm instance with room, a paused one (thawed), or a new instance if the
 * function's cap and the node's memory budget allow (evicting idle or paused
 * instances the keep-alive policy picks), else a bounded queue. Idle
 * instances are frozen after `pauseGraceMs`.
 */
export class Pool {
  readonly functions = new Map<string, FunctionEntry>();
  private startingMb = 0;
  /** Memory held outside the pool's own instances (function groups' members). */
  private reservedMb = 0;
  /**
   * Every instance of every entry (and of removed functions, until they
   * die): memory and victim searches walk instances, not functions, so a
   * node with thousands of functions stays cheap per cold start.
   */
  private readonly everyInstance = new Set<Instance>();
  /**
   * Kept as instances change state (Instance.stateListener), so that memory
   * and victim searches cost nothing per instance: memory of the tracked
   * instances not dead, and of the idle or paused ones; those idle or
   * paused by id, in the order they became idle (least recently used first).
   */
  private liveMb = 0;
  private idleMbTotal = 0;
  /** idleMbTotal integrated over time (MB·ms) up to `idleSince`. */
  private idleMbMs = 0;
  private idleSince: number | undefined;
  private readonly idleById = new Map<string, Instance>();
  /** Functions with invocations queued (some may have emptied since): what serveAllQueues walks. */
  private readonly queuedEntries = new Set<FunctionEntry>();
  /** The policy's "start one at time T" decisions, pending. */
  private readonly prewarm: PrewarmScheduler;
  /** Instances started ahead and not used yet, and what became of those started so far. */
  private readonly aheadUnused = new WeakSet<Instance>();
  private readonly aheadStats = { started: 0, hits: 0 };
  /** Invocations in flight on the node, and the most at once since `takePeakInFlight`. */
  private inFlight = 0;
  private peakInFlight = 0;

  constructor(
    private readonly limits: PoolLimits,
    private readonly policy: KeepAlivePolicy,
    private readonly hooks: PoolHooks,
    readonly clock: Clock = systemClock,
    readonly startPolicy: StartPathPolicy = new WarmFirst(),
  ) {
    this.prewarm = new PrewarmScheduler(clock, (name) => this.startAhead(name));
  }

  entry(name: string): FunctionEntry | undefined {
    return this.functions.get(name);
  }

  /** Adds a function or switches it to a new version; old-version instances drain. */
  setFunction(record: FunctionRecord): void {
    const entry = this.functions.get(record.name);
    if (!entry) {
      this.functions.set(record.name, {
        record,
        kept: new Map(),
        instances: new Set(),
        starting: 0,
        queue: [],
        arrivals: 0,
        idle: new Set(),
      });
      return;
    }
    entry.record = record;
    this.retireUnserved(entry);
  }

  /**
   * Sets the versions besides the current one that stay warm (the ones
   * aliases name); idle instances of versions no longer among them stop.
   */
  keepVersions(name: string, records: FunctionRecord[]): void {
    const entry = this.functions.get(name);
    if (!entry) return;
    entry.kept = new Map(records.map((record) => [record.version, record]));
    this.retireUnserved(entry);
  }

  /** Whether instances of `version` stay warm: the current version or a kept one. */
  serves(entry: FunctionEntry, version: number): boolean {
    return entry.record.version === version || entry.kept.has(version);
  }

  private retireUnserved(entry: FunctionEntry): void {
    for (const instance of entry.instances) {
      if (!this.serves(entry, instance.version) && isIdle(instance)) void this.retire(instance);
    }
  }

  /** Removes a function: queued invocations fail, idle instances stop, busy ones stop when done. */
  removeFunction(name: string): void {
    const entry = this.functions.get(name);
    if (!entry) return;
    this.functions.delete(name);
    this.prewarm.cancel(name);
    for (const waiter of entry.queue.splice(0)) {
      waiter.timer?.cancel();
      waiter.reject(new PetriError('FunctionNotFound', `function "${name}" was removed`));
    }
    for (const instance of entry.instances) if (isIdle(instance)) void this.retire(instance);
  }

  /**
   * Finds or makes room for one invocation; may wait in the function's queue.
   * `onColdStart` hears when an instance starts for it, so a start that fails
   * is still known as a cold one. `record` is the version to run (default:
   * the current one); a version neither current nor kept gets an instance
   * that stops when its invocations end.
   */
  async acquire(
    entry: FunctionEntry,
    onColdStart?: OnNewInstance,
    record: FunctionRecord = entry.record,
  ): Promise<Slot> {
    return this.acquireNow(entry, onColdStart, record);
  }

  /**
   * `acquire`, with the slot itself when the start-path policy chose a warm
   * instance (nothing to wait for) and a promise otherwise, so a warm
   * invocation costs no promise. Throws (does not reject) only what
   * `acquire` would reject with before any wait.
   */
  acquireNow(
    entry: FunctionEntry,
    onColdStart?: OnNewInstance,
    record: FunctionRecord = entry.record,
  ): Slot | Promise<Slot> {
    entry.arrivals += 1;
    this.observeArrival(entry.record.name);
    const { decision, chosen } = this.decide(entry, record);
    switch (decision.path) {
      case 'warm':
        this.reserve(chosen!);
        return { instance: chosen!, startPath: 'warm', dispatchedAt: this.clock.now() };
      case 'paused':
        return this.thaw(entry, chosen!, onColdStart, record);
      case 'queue':
        return this.enqueue(entry, onColdStart, record);
      case 'prewarm': {
        const started = this.startPrewarmed(entry, onColdStart, record);
        if (started) return started;
        // Gone since the policy looked (or no room): the next best is a cold start.
        if (!this.makeRoom(entry, record)) return this.enqueue(entry, onColdStart, record);
        return this.startNew(entry, 'cold', onColdStart, record);
      }
      default:
        if (!this.makeRoom(entry, record)) return this.enqueue(entry, onColdStart, record);
        return this.startNew(entry, decision.path, onColdStart, record);
    }
  }

  /** Called when an invocation finishes on `instance`. */
  release(instance: Instance): void {
    instance.release();
    this.inFlight -= 1;
    this.policy.observe?.({
      kind: 'finished',
      functionName: instance.functionName,
      instanceId: instance.id,
      memoryMb: instance.memoryMb,
      at: this.clock.now(),
    });
    const entry = this.functions.get(instance.functionName);
    // Queued work first: a waiter for this very version may take the slot.
    if (entry) this.serveQueue(entry);
    if (instance.state !== 'idle') return;
    if (entry && this.serves(entry, instance.version)) {
      this.armKeepAlive(instance);
      this.armPause(instance);
      this.schedulePrewarm(instance.functionName);
    } else void this.retire(instance);
  }

  /** Called when an instance died: forget it and let queued work use the room. */
  forget(instance: Instance): void {
    instance.clearKeepAlive();
    const entry = this.functions.get(instance.functionName);
    if (entry?.instances.delete(instance)) entry.idle.delete(instance);
    instance.idleSet = undefined;
    this.untrack(instance);
    this.serveAllQueues();
  }

  /** Counts an instance in the node's memory and idle figures from now on. */
  private track(instance: Instance): void {
    if (this.everyInstance.has(instance)) return;
    this.everyInstance.add(instance);
    if (instance.state !== 'dead') this.liveMb += instance.memoryMb;
    if (isIdle(instance)) {
      this.accrueIdle();
      this.idleById.set(instance.id, instance);
      this.idleMbTotal += instance.memoryMb;
      instance.idleSet?.add(instance);
    }
    instance.stateListener = (changed, from) => this.stateChanged(changed, from);
  }

  private untrack(instance: Instance): void {
    if (!this.everyInstance.delete(instance)) return;
    instance.stateListener = undefined;
    if (instance.state !== 'dead') this.liveMb -= instance.memoryMb;
    if (this.idleById.has(instance.id)) {
      this.accrueIdle();
      this.idleById.delete(instance.id);
      this.idleMbTotal -= instance.memoryMb;
    }
  }

  private stateChanged(instance: Instance, from: InstanceState): void {
    const was = from === 'idle' || from === 'paused';
    const now = isIdle(instance);
    // Idle to paused and back keeps its place: it was not used in between.
    if (was && !now && this.idleById.has(instance.id)) {
      this.accrueIdle();
      this.idleById.delete(instance.id);
      this.idleMbTotal -= instance.memoryMb;
      instance.idleSet?.delete(instance);
    }
    if (!was && now) {
      this.accrueIdle();
      this.idleById.set(instance.id, instance);
      this.idleMbTotal += instance.memoryMb;
      instance.idleSet?.add(instance);
    }
    if (instance.state === 'dead') this.liveMb -= instance.memoryMb;
  }

  /** Makes the instance one of the entry's (its idle set follows its state from now on). */
  private join(entry: FunctionEntry, instance: Instance): void {
    entry.instances.add(instance);
    instance.idleSet = entry.idle;
    if (isIdle(instance)) entry.idle.add(instance);
  }

  /** The most invocations in flight at once since the last call (a placement window). */
  takePeakInFlight(): number {
    const peak = this.peakInFlight;
    this.peakInFlight = this.inFlight;
    return peak;
  }

  /**
   * Takes `mb` of the memory budget for instances the pool does not run
   * (group members), all at once or not at all (evicting idle instances the
   * keep-alive policy picks when that makes room). False: it does not fit.
   */
  reserveMemory(mb: number): boolean {
    const free = (): number => this.limits.memoryBudgetMb - this.memoryInUseMb();
    if (mb > this.limits.memoryBudgetMb) return false;
    if (free() < mb) {
      this.retireVictims(this.policy.victims(mb - free(), this.view()), 'idle');
    }
    if (free() < mb) return false;
    this.reservedMb += mb;
    return true;
  }

  /** `reserveMemory` without evicting anything (prewarmed runtimes never push instances out). */
  reserveFreeMemory(mb: number): boolean {
    if (this.limits.memoryBudgetMb - this.memoryInUseMb() < mb) return false;
    this.reservedMb += mb;
    return true;
  }

  /** Gives back what `reserveMemory` took; queued work may use it. */
  releaseMemory(mb: number): void {
    this.reservedMb = Math.max(0, this.reservedMb - mb);
    this.serveAllQueues();
  }

  /** Memory of idle and paused instances integrated over time so far, MB·ms (wasted memory-time). */
  idleMemoryMbMs(): number {
    this.accrueIdle();
    return this.idleMbMs;
  }

  private accrueIdle(): void {
    const now = this.clock.now();
    if (this.idleSince !== undefined) this.idleMbMs += this.idleMbTotal * (now - this.idleSince);
    this.idleSince = now;
  }

  memoryInUseMb(): number {
    return this.startingMb + this.reservedMb + this.liveMb;
  }

  allInstances(): Instance[] {
    return [...this.everyInstance];
  }

  instanceCounts(): Record<InstanceState, number> {
    const counts: Record<InstanceState, number> = {
      starting: 0,
      idle: 0,
      paused: 0,
      busy: 0,
      stopping: 0,
      dead: 0,
    };
    for (const instance of this.allInstances()) counts[instance.state] += 1;
    for (const entry of this.functions.values()) counts.starting += entry.starting;
    return counts;
  }

  /**
   * What policies see of the node. Its parts are computed when read: the
   * keep-alive policy is asked after every invocation, and the fixed policy
   * never looks at the node, so walking every instance each time is waste.
   */
  view(): NodeView {
    return new PoolView(this.viewSource, this.clock.now(), this.limits.memoryBudgetMb);
  }

  private readonly viewSource: PoolViewSource = {
    memoryInUseMb: () => this.memoryInUseMb(),
    allInstances: () => this.allInstances(),
    idleById: this.idleById,
    instancesOf: (name) => this.functions.get(name)?.instances,
  };

  /** Fails every queued invocation (the node is stopping). */
  rejectAll(error: PetriError): void {
    this.prewarm.clear();
    for (const entry of this.functions.values()) {
      for (const waiter of entry.queue.splice(0)) {
        waiter.timer?.cancel();
        waiter.reject(error);
      }
    }
    this.queuedEntries.clear();
  }

  // ---- scaling ahead of demand (autoscalers, pre-warming) ----------------

  /**
   * Starts one instance of the function's current version now, if its cap
   * and the free memory budget allow (it evicts nothing, busy or idle).
   * Returns whether a start began; the instance joins idle, serves the queue
   * first and then lives by keep-alive like any other.
   */
  startAhead(functionName: string): boolean {
    const entry = this.functions.get(functionName);
    if (!entry || !this.roomFor(entry, entry.record, { ahead: true })) return false;
    void this.startIdle(entry);
    return true;
  }

  /** Instances started ahead so far, and how many of them served an invocation. */
  prewarmStats(): { started: number; hits: number } {
    return { ...this.aheadStats };
  }

  private schedulePrewarm(functionName: string): void {
    if (!this.policy.prewarmAt) return;
    const at = this.policy.prewarmAt(functionName, this.view());
    if (at !== undefined) this.prewarm.schedule(functionName, at);
  }

  private observeArrival(functionName: string): void {
    this.prewarm.cancel(functionName);
    this.policy.observe?.({ kind: 'arrival', functionName, at: this.clock.now() });
  }

  private observeStarted(instance: Instance, begun: number): void {
    const at = this.clock.now();
    this.policy.observe?.({
      kind: 'started',
      functionName: instance.functionName,
      instanceId: instance.id,
      at,
      startMs: at - begun,
      memoryMb: instance.memoryMb,
    });
  }

  /**
   * Stops idle current-version instances of the function beyond `desired`
   * live ones, least recently used first; busy and starting ones are left.
   * Returns how many it stopped.
   */
  scaleDownTo(functionName: string, desired: number): number {
    const entry = this.functions.get(functionName);
    if (!entry) return 0;
    let excess = this.liveCount(entry, entry.record.version) - desired;
    const idle = [...entry.instances]
      .filter((i) => isIdle(i) && i.version === entry.record.version)
      .sort((a, b) => a.lastUsedAt - b.lastUsedAt);
    let stopped = 0;
    for (const instance of idle) {
      if (excess <= 0) break;
      void this.retire(instance);
      excess -= 1;
      stopped += 1;
    }
    return stopped;
  }

  /** Live instances of the function's current version, starting ones included. */
  liveInstances(functionName: string): number {
    const entry = this.functions.get(functionName);
    return entry ? this.liveCount(entry, entry.record.version) : 0;
  }

  /** Invocations of the function in flight on its instances plus those queued. */
  demand(functionName: string): number {
    const entry = this.functions.get(functionName);
    if (!entry) return 0;
    let total = entry.queue.length + (entry.awaitingStart ?? 0);
    for (const instance of entry.instances) total += instance.inFlight;
    return total;
  }

  private async startIdle(entry: FunctionEntry): Promise<void> {
    const record = entry.record;
    entry.starting += 1;
    const byVersion = (entry.startingByVersion ??= new Map());
    byVersion.set(record.version, (byVersion.get(record.version) ?? 0) + 1);
    this.startingMb += record.spec.memoryMb;
    const begun = this.clock.now();
    let instance: Instance;
    try {
      instance = await this.hooks.startInstance(record);
    } catch {
      return; // a failed start ahead costs nothing but the attempt
    } finally {
      entry.starting -= 1;
      const left = (byVersion.get(record.version) ?? 1) - 1;
      if (left > 0) byVersion.set(record.version, left);
      else byVersion.delete(record.version);
      this.startingMb -= record.spec.memoryMb;
    }
    this.observeStarted(instance, begun);
    this.aheadStats.started += 1;
    this.aheadUnused.add(instance);
    const current = this.functions.get(record.name);
    if (!current || current.record.version !== instance.version) {
      void this.retire(instance);
      return;
    }
    this.join(current, instance);
    this.track(instance);
    this.serveQueue(current);
    if (instance.state === 'idle') {
      this.armKeepAlive(instance);
      this.armPause(instance);
    }
  }

  private reserve(instance: Instance): void {
    instance.reserve();
    this.countInFlight();
  }

  private countInFlight(): void {
    this.inFlight += 1;
    if (this.inFlight > this.peakInFlight) this.peakInFlight = this.inFlight;
  }

  /**
   * Asks the start-path policy, with frozen views of the function's current
   * instances, and checks its answer: a policy cannot invent an instance or
   * a path the node does not offer.
   */
  private decide(
    entry: FunctionEntry,
    record: FunctionRecord,
  ): { decision: StartDecision; chosen?: Instance } {
    const { options, candidates } = this.startOptions(entry, record);
    const decision = this.startPolicy.choose(options, this.view());
    const invalid = invalidDecision(decision, options);
    if (invalid !== undefined) {
      throw new PetriError(
        'Internal',
        `start-path policy "${this.startPolicy.name}" chose ${decision.path}: ${invalid}`,
      );
    }
    let chosen: Instance | undefined;
    if ('instanceId' in decision)
      for (const candidate of candidates)
        if (candidate.id === decision.instanceId) chosen = candidate;
    if (chosen && this.aheadUnused.has(chosen)) {
      this.aheadUnused.delete(chosen);
      this.aheadStats.hits += 1;
    }
    return { decision, chosen };
  }

  /**
   * The start-path policy's options: warm and paused instances of the
   * version (for a function with one invocation per instance, only its idle
   * set is walked: a busy one has no room), and whether its cap allows one
   * more, counted only if the policy asks.
   */
  private startOptions(
    entry: FunctionEntry,
    record: FunctionRecord,
  ): {
    options: StartOptions;
    candidates: Instance[];
  } {
    const warm: InstanceView[] = [];
    const paused: InstanceView[] = [];
    const candidates: Instance[] = [];
    const walk = record.spec.concurrency === 1 ? entry.idle : entry.instances;
    for (const instance of walk) {
      if (instance.version !== record.version) continue;
      const list = instance.hasRoom() ? warm : instance.state === 'paused' ? paused : undefined;
      if (!list) continue;
      list.push(instance.view());
      candidates.push(instance);
    }
    const cap = record.spec.maxInstances ?? this.limits.maxInstancesPerFunction;
    const options: StartOptions = Object.freeze(
      new Options(
        record.name,
        record.version,
        record.spec.memoryMb,
        Object.freeze(warm),
        Object.freeze(paused),
        this.hooks.prewarmsFor?.(record) ?? 0,
        this.hooks.snapshotReady?.(record) ?? false,
        () => this.liveCount(entry, record.version) < cap,
      ),
    );
    return { options, candidates };
  }

  /** Thaws a paused instance for one invocation; if it cannot run again, tries anew. */
  private async thaw(
    entry: FunctionEntry,
    instance: Instance,
    onColdStart: OnNewInstance | undefined,
    record: FunctionRecord,
  ): Promise<Slot> {
    const dispatchedAt = this.clock.now();
    this.countInFlight();
    try {
      await instance.reserveThawed();
    } catch {
      this.inFlight -= 1;
      instance.release();
      void this.retire(instance);
      return this.acquire(entry, onColdStart, record);
    }
    return { instance, startPath: 'paused', dispatchedAt };
  }

  /**
   * Binds a prewarmed runtime for one invocation, if one is still ready and
   * the function's cap allows: its memory moves from the runtime's
   * reservation to the starting instance, so binding never needs more room.
   * Undefined: none was started.
   */
  private startPrewarmed(
    entry: FunctionEntry,
    onColdStart: (() => void) | undefined,
    record: FunctionRecord,
  ): Promise<Slot> | undefined {
    const claim = this.hooks.claimPrewarm?.(record);
    if (!claim) return undefined;
    this.reservedMb = Math.max(0, this.reservedMb - claim.memoryMb);
    if (!this.roomFor(entry, record)) {
      this.reservedMb += claim.memoryMb;
      claim.cancel();
      return undefined;
    }
    return this.startNew(entry, 'prewarm', onColdStart, record, claim);
  }

  /** A new instance for one invocation: cold, restored from the version's snapshot, or a bound prewarm. */
  private async startNew(
    entry: FunctionEntry,
    path: 'prewarm' | 'restore' | 'cold',
    onColdStart: OnNewInstance | undefined,
    record: FunctionRecord,
    claim?: PrewarmClaim,
  ): Promise<Slot> {
    if (path === 'prewarm' && !claim)
      throw new PetriError('Internal', 'a prewarm start needs a claim');
    const dispatchedAt = this.clock.now();
    onColdStart?.(path);
    const instance = await this.coldStart(entry, record, path, claim);
    // A restore that failed on its snapshot fell back to a cold start: the slot says so.
    return { instance, startPath: claim ? 'prewarm' : instance.startPath, dispatchedAt };
  }

  /** Live and starting instances of one version: each version's `maxInstances` caps its own. */
  private liveCount(entry: FunctionEntry, version: number): number {
    let count = entry.startingByVersion?.get(version) ?? 0;
    for (const instance of entry.instances) {
      const live = instance.state !== 'dead' && instance.state !== 'stopping';
      if (live && instance.version === version) count += 1;
    }
    return count;
  }

  /** True when a new instance may start now (evicting idle ones if that makes room). */
  /**
   * True when a new instance may start now (evicting idle ones if that makes
   * room). `ahead`: a start the policy or autoscaler asked for, which the
   * autoscaler's limit on starts by arrivals does not bound.
   */
  private makeRoom(
    entry: FunctionEntry,
    record: FunctionRecord = entry.record,
    { ahead = false }: { ahead?: boolean } = {},
  ): boolean {
    const spec = record.spec;
    const cap = Math.min(
      spec.maxInstances ?? this.limits.maxInstancesPerFunction,
      ahead ? Infinity : (entry.demandStartLimit ?? Infinity),
    );
    if (this.liveCount(entry, record.version) >= cap) return false;
    if (spec.memoryMb > this.limits.memoryBudgetMb) {
      throw new PetriError(
        'CapacityExceeded',
        `function needs ${spec.memoryMb} MB but the node's memory budget is ${this.limits.memoryBudgetMb} MB`,
      );
    }
    const free = this.limits.memoryBudgetMb - this.memoryInUseMb();
    if (free >= spec.memoryMb) return true;
    // Not even stopping every idle instance would make room: spare the policy the question.
    if (free + this.idleMb() < spec.memoryMb) return false;
    this.retireVictims(this.policy.victims(spec.memoryMb - free, this.view()));
    return this.limits.memoryBudgetMb - this.memoryInUseMb() >= spec.memoryMb;
  }

  /** `makeRoom` for queued work: a function too large for the node just stays queued. */
  private roomFor(
    entry: FunctionEntry,
    record: FunctionRecord,
    options: { ahead?: boolean } = {},
  ): boolean {
    try {
      return this.makeRoom(entry, record, options);
    } catch {
      return false;
    }
  }

  /** Memory of idle instances, running or paused: what evictions could free. */
  private idleMb(): number {
    return this.idleMbTotal;
  }

  private async coldStart(
    entry: FunctionEntry,
    record: FunctionRecord,
    path: 'prewarm' | 'cold' | 'restore' = 'cold',
    claim?: PrewarmClaim,
  ): Promise<Instance> {
    entry.starting += 1;
    const byVersion = (entry.startingByVersion ??= new Map());
    byVersion.set(record.version, (byVersion.get(record.version) ?? 0) + 1);
    entry.awaitingStart = (entry.awaitingStart ?? 0) + 1;
    this.startingMb += record.spec.memoryMb;
    const begun = this.clock.now();
    try {
      const instance = claim
        ? await claim.start()
        : await this.hooks.startInstance(record, path === 'prewarm' ? 'cold' : path);
      this.observeStarted(instance, begun);
      this.reserve(instance);
      const current = this.functions.get(record.name);
      if (current) this.join(current, instance);
      this.track(instance);
      if (current) this.serveQueue(current);
      return instance;
    } finally {
      entry.starting -= 1;
      const left = (byVersion.get(record.version) ?? 1) - 1;
      if (left > 0) byVersion.set(record.version, left);
      else byVersion.delete(record.version);
      entry.awaitingStart -= 1;
      this.startingMb -= record.spec.memoryMb;
    }
  }

  private enqueue(
    entry: FunctionEntry,
    onColdStart: OnNewInstance | undefined,
    record: FunctionRecord,
  ): Promise<Slot> {
    const maxSize = record.spec.queue.maxSize ?? this.limits.queueMaxSize;
    const maxWaitMs = record.spec.queue.maxWaitMs ?? this.limits.queueMaxWaitMs;
    if (entry.queue.length >= maxSize) {
      return Promise.reject(
        new PetriError('QueueFull', `queue of "${entry.record.name}" is full (${maxSize} waiting)`),
      );
    }
    return new Promise((resolve, reject) => {
      const waiter: Waiter = { resolve, reject, onColdStart, timer: undefined, record };
      waiter.timer = this.clock.setTimer(maxWaitMs, () => {
        const index = entry.queue.indexOf(waiter);
        if (index >= 0) entry.queue.splice(index, 1);
        reject(new PetriError('QueueTimeout', `waited ${maxWaitMs} ms for an instance`));
      });
      entry.queue.push(waiter);
      this.queuedEntries.add(entry);
    });
  }

  /**
   * Hands queued invocations to instances with room, paused ones or new
   * ones as the start-path policy decides, oldest first; a waiter for a
   * version that can get none waits without holding up those behind it that
   * ask for another version.
   */
  private serveQueue(entry: FunctionEntry): void {
    if (entry.queue.length === 0) return;
    const blocked = new Set<number>();
    for (let i = 0; i < entry.queue.length;) {
      const waiter = entry.queue[i]!;
      const { record } = waiter;
      if (blocked.has(record.version)) {
        i += 1;
        continue;
      }
      const { decision, chosen } = this.decideOrWait(entry, record);
      const waits =
        decision.path === 'queue' ||
        (decision.path !== 'warm' && decision.path !== 'paused' && !this.roomFor(entry, record));
      // Making room stops instances; a driver that reports their exit at once
      // re-enters through forget(), which may have served this waiter already.
      if (entry.queue[i] !== waiter) continue;
      if (waits) {
        blocked.add(record.version);
        i += 1;
        continue;
      }
      entry.queue.splice(i, 1);
      waiter.timer?.cancel();
      if (decision.path === 'warm') {
        this.reserve(chosen!);
        waiter.resolve({ instance: chosen!, startPath: 'warm', dispatchedAt: this.clock.now() });
        continue;
      }
      const slot =
        decision.path === 'paused'
          ? this.thaw(entry, chosen!, waiter.onColdStart, record)
          : decision.path === 'prewarm'
            ? (this.startPrewarmed(entry, waiter.onColdStart, record) ??
              this.startNew(entry, 'cold', waiter.onColdStart, record))
            : this.startNew(entry, decision.path, waiter.onColdStart, record);
      slot.then(waiter.resolve, (err: PetriError) => waiter.reject(err));
    }
  }

  /** `decide` for queued work, which is called from releases and deaths and must not throw. */
  private decideOrWait(
    entry: FunctionEntry,
    record: FunctionRecord,
  ): { decision: StartDecision; chosen?: Instance } {
    try {
      return this.decide(entry, record);
    } catch {
      return { decision: { path: 'queue' } };
    }
  }

  /**
   * After an instance died: every queue gets a chance. Memory and idle
   * instances are summed once per pass (again only after a queue was served),
   * so a node full of busy instances with many queued functions does not
   * walk every instance for each of them: a queue with no warm or paused
   * instance whose function needs more than free plus idle memory cannot be
   * served.
   */
  private serveAllQueues(): void {
    let room: number | undefined;
    for (const entry of this.queuedEntries) {
      if (entry.queue.length === 0 || this.functions.get(entry.record.name) !== entry) {
        this.queuedEntries.delete(entry);
        continue;
      }
      room ??= this.limits.memoryBudgetMb - this.memoryInUseMb() + this.idleMb();
      if (entry.record.spec.memoryMb > room && !this.hasReady(entry)) continue;
      this.serveQueue(entry);
      room = undefined;
    }
  }

  /** Whether an instance of a version some waiter asks for could take it without a start. */
  private hasReady(entry: FunctionEntry): boolean {
    for (const instance of entry.instances)
      if (instance.hasRoom() || instance.state === 'paused') return true;
    return false;
  }

  /**
   * Sets when an idle instance expires. Lazy: the instance keeps one timer,
   * which is set again only when its due time is later than the new
   * deadline; when it fires early (the instance was used since) it re-arms
   * for what is left, and a busy instance's release arms it anew.
   */
  private armKeepAlive(instance: Instance): void {
    instance.clearPause();
    const ms = this.policy.keepAliveMs(instance.view(), this.view());
    // Infinity: kept until the policy picks it to make room (a pending timer finds no deadline).
    const deadline = this.clock.now() + Math.max(0, ms);
    instance.keepAliveDeadline = deadline;
    if (!Number.isFinite(deadline) || instance.keepAliveAt <= deadline) return;
    instance.keepAliveTimer?.cancel();
    this.setKeepAliveTimer(instance, deadline);
  }

  private setKeepAliveTimer(instance: Instance, at: number): void {
    instance.keepAliveAt = at;
    instance.keepAliveTimer = this.clock.setTimer(
      at - this.clock.now(),
      () => this.keepAliveDue(instance),
      { background: true },
    );
  }

  private keepAliveDue(instance: Instance): void {
    instance.keepAliveTimer = undefined;
    instance.keepAliveAt = Number.POSITIVE_INFINITY;
    if (!isIdle(instance)) return; // busy: its release sets the deadline again
    const deadline = instance.keepAliveDeadline;
    if (!Number.isFinite(deadline)) return;
    if (deadline > this.clock.now()) this.setKeepAliveTimer(instance, deadline);
    else void this.retire(instance);
  }

  /** Freezes the instance once it has been idle for the pause grace (after `armKeepAlive`). */
  private armPause(instance: Instance): void {
    const grace = this.limits.pauseGraceMs;
    if (grace === undefined || !instance.pausable) return;
    instance.pauseTimer = this.clock.setTimer(
      grace,
      () => {
        instance.pauseTimer = undefined;
        void instance.pause();
      },
      { background: true },
    );
  }

  /** Stops the policy's victims that are still idle (or paused, unless `only` says idle). */
  private retireVictims(ids: readonly string[], only?: 'idle'): void {
    for (const id of new Set(ids)) {
      const instance = this.idleById.get(id);
      if (instance && (only === undefined || instance.state === only)) void this.retire(instance);
    }
  }

  private async retire(instance: Instance): Promise<void> {
    await instance.stop();
  }
}

/**
 * StartOptions whose `belowCap` is counted when first read (a warm start
 * never asks); frozen like the rest, the memo lives in a private field.
 */
class Options implements StartOptions {
  #below: boolean | undefined;
  readonly #countBelowCap: () => boolean;

  constructor(
    readonly functionName: string,
    readonly version: number,
    readonly memoryMb: number,
    readonly warm: readonly InstanceView[],
    readonly paused: readonly InstanceView[],
    readonly prewarms: number,
    readonly snapshotReady: boolean,
    countBelowCap: () => boolean,
  ) {
    this.#countBelowCap = countBelowCap;
  }

  get belowCap(): boolean {
    return (this.#below ??= this.#countBelowCap());
  }
}
