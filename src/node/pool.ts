import { PetriError } from '../errors.ts';
import type { InstanceState, InstanceView, KeepAlivePolicy, NodeView } from '../policy/index.ts';
import type { StartPath } from '../store/index.ts';
import type { FunctionRecord } from '../store/index.ts';
import { systemClock, type Clock, type Timer } from './clock.ts';
import type { Instance } from './instance.ts';
import { PrewarmScheduler } from './prewarm.ts';

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
}

interface Waiter {
  resolve(slot: Slot): void;
  reject(error: PetriError): void;
  onColdStart: (() => void) | undefined;
  timer: Timer | undefined;
}

/** Per function: its current version, its instances (any version) and its queue. */
export interface FunctionEntry {
  record: FunctionRecord;
  instances: Set<Instance>;
  /** Cold starts under way, not yet in `instances`. */
  starting: number;
  queue: Waiter[];
}

export interface PoolHooks {
  /** Starts a new instance of the function's current version. */
  startInstance(record: FunctionRecord): Promise<Instance>;
}

/**
 * Decides where each invocation runs: a warm instance with room, else a cold
 * start if the function's cap and the node's memory budget allow (evicting
 * idle instances the keep-alive policy picks), else a bounded queue.
 */
export class Pool {
  readonly functions = new Map<string, FunctionEntry>();
  /**
   * Every instance of every entry (and of removed functions, until they
   * die): memory and victim searches walk instances, not functions, so a
   * node with thousands of functions stays cheap per cold start.
   */
  private readonly everyInstance = new Set<Instance>();
  private startingMb = 0;
  /** Invocations in flight on the node, and the most at once since `takePeakInFlight`. */
  private inFlight = 0;
  private peakInFlight = 0;
  /** The policy's "start one at time T" decisions, pending. */
  private readonly prewarm: PrewarmScheduler;
  /** Instances started ahead and not used yet, and what became of those started so far. */
  private readonly aheadUnused = new WeakSet<Instance>();
  private readonly aheadStats = { started: 0, hits: 0 };

  constructor(
    private readonly limits: PoolLimits,
    private readonly policy: KeepAlivePolicy,
    private readonly hooks: PoolHooks,
    readonly clock: Clock = systemClock,
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
      this.functions.set(record.name, { record, instances: new Set(), starting: 0, queue: [] });
      return;
    }
    entry.record = record;
    for (const instance of entry.instances) {
      if (instance.version !== record.version && instance.state === 'idle')
        void this.retire(instance);
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
    for (const instance of entry.instances)
      if (instance.state === 'idle') void this.retire(instance);
  }

  /**
   * Finds or makes room for one invocation; may wait in the function's queue.
   * `onColdStart` hears when an instance starts for it, so a start that fails
   * is still known as a cold one.
   */
  async acquire(entry: FunctionEntry, onColdStart?: () => void): Promise<Slot> {
    this.observeArrival(entry.record.name);
    const warm = this.findWarm(entry);
    if (warm) {
      this.reserve(warm);
      return { instance: warm, startPath: 'warm', dispatchedAt: this.clock.now() };
    }
    if (this.makeRoom(entry)) {
      const dispatchedAt = this.clock.now();
      onColdStart?.();
      return { instance: await this.coldStart(entry), startPath: 'cold', dispatchedAt };
    }
    return this.enqueue(entry, onColdStart);
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
    const current = entry?.record.version === instance.version;
    if (instance.state === 'idle' && !current) {
      void this.retire(instance);
      return;
    }
    if (entry) this.serveQueue(entry);
    if (instance.state === 'idle') {
      this.armKeepAlive(instance);
      this.schedulePrewarm(instance.functionName);
    }
  }

  /** Called when an instance died: forget it and let queued work use the room. */
  forget(instance: Instance): void {
    instance.clearKeepAlive();
    this.functions.get(instance.functionName)?.instances.delete(instance);
    this.everyInstance.delete(instance);
    this.serveAllQueues();
  }

  /** The most invocations in flight at once since the last call (a placement window). */
  takePeakInFlight(): number {
    const peak = this.peakInFlight;
    this.peakInFlight = this.inFlight;
    return peak;
  }

  memoryInUseMb(): number {
    let total = this.startingMb;
    for (const instance of this.everyInstance)
      if (instance.state !== 'dead') total += instance.memoryMb;
    return total;
  }

  allInstances(): Instance[] {
    return [...this.everyInstance];
  }

  instanceCounts(): Record<InstanceState, number> {
    const counts: Record<InstanceState, number> = {
      starting: 0,
      idle: 0,
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
    const memoryInUseMb = (): number => this.memoryInUseMb();
    const instances = (): InstanceView[] => this.allInstances().map((i) => i.view());
    return {
      now: this.clock.now(),
      memoryBudgetMb: this.limits.memoryBudgetMb,
      get memoryInUseMb() {
        return memoryInUseMb();
      },
      get instances() {
        return instances();
      },
    };
  }

  /** Fails every queued invocation (the node is stopping). */
  rejectAll(error: PetriError): void {
    this.prewarm.clear();
    for (const entry of this.functions.values()) {
      for (const waiter of entry.queue.splice(0)) {
        waiter.timer?.cancel();
        waiter.reject(error);
      }
    }
  }

  private reserve(instance: Instance): void {
    instance.reserve();
    this.inFlight += 1;
    if (this.inFlight > this.peakInFlight) this.peakInFlight = this.inFlight;
  }

  private findWarm(entry: FunctionEntry): Instance | undefined {
    let best: Instance | undefined;
    for (const instance of entry.instances) {
      if (instance.version !== entry.record.version || !instance.hasRoom()) continue;
      // Most recently used first, so the others can age out.
      if (!best || instance.lastUsedAt > best.lastUsedAt) best = instance;
    }
    if (best && this.aheadUnused.has(best)) {
      this.aheadUnused.delete(best);
      this.aheadStats.hits += 1;
    }
    return best;
  }

  private liveCount(entry: FunctionEntry): number {
    let count = entry.starting;
    for (const instance of entry.instances) {
      const live = instance.state !== 'dead' && instance.state !== 'stopping';
      if (live && instance.version === entry.record.version) count += 1;
    }
    return count;
  }

  /** True when a new instance may start now (evicting idle ones if that makes room). */
  private makeRoom(entry: FunctionEntry): boolean {
    const spec = entry.record.spec;
    const cap = spec.maxInstances ?? this.limits.maxInstancesPerFunction;
    if (this.liveCount(entry) >= cap) return false;
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
    const victims = new Set(this.policy.victims(spec.memoryMb - free, this.view()));
    for (const instance of this.allInstances()) {
      if (victims.has(instance.id) && instance.state === 'idle') void this.retire(instance);
    }
    return this.limits.memoryBudgetMb - this.memoryInUseMb() >= spec.memoryMb;
  }

  private idleMb(): number {
    let total = 0;
    for (const instance of this.everyInstance)
      if (instance.state === 'idle') total += instance.memoryMb;
    return total;
  }

  /** `makeRoom` for queued work: a function too large for the node just stays queued. */
  private roomFor(entry: FunctionEntry): boolean {
    try {
      return this.makeRoom(entry);
    } catch {
      return false;
    }
  }

  private async coldStart(entry: FunctionEntry): Promise<Instance> {
    const record = entry.record;
    entry.starting += 1;
    this.startingMb += record.spec.memoryMb;
    const begun = this.clock.now();
    try {
      const instance = await this.hooks.startInstance(record);
      this.observeStarted(instance, begun);
      this.reserve(instance);
      const current = this.functions.get(record.name);
      current?.instances.add(instance);
      this.everyInstance.add(instance);
      if (current) this.serveQueue(current);
      return instance;
    } finally {
      entry.starting -= 1;
      this.startingMb -= record.spec.memoryMb;
    }
  }

  private enqueue(entry: FunctionEntry, onColdStart: (() => void) | undefined): Promise<Slot> {
    const maxSize = entry.record.spec.queue.maxSize ?? this.limits.queueMaxSize;
    const maxWaitMs = entry.record.spec.queue.maxWaitMs ?? this.limits.queueMaxWaitMs;
    if (entry.queue.length >= maxSize) {
      return Promise.reject(
        new PetriError('QueueFull', `queue of "${entry.record.name}" is full (${maxSize} waiting)`),
      );
    }
    return new Promise((resolve, reject) => {
      const waiter: Waiter = { resolve, reject, onColdStart, timer: undefined };
      waiter.timer = this.clock.setTimer(maxWaitMs, () => {
        const index = entry.queue.indexOf(waiter);
        if (index >= 0) entry.queue.splice(index, 1);
        reject(new PetriError('QueueTimeout', `waited ${maxWaitMs} ms for an instance`));
      });
      entry.queue.push(waiter);
    });
  }

  /** Hands queued invocations to instances with room, or cold starts if allowed. */
  private serveQueue(entry: FunctionEntry): void {
    while (entry.queue.length > 0) {
      const warm = this.findWarm(entry);
      if (warm) {
        this.reserve(warm);
        const waiter = entry.queue.shift()!;
        waiter.timer?.cancel();
        waiter.resolve({ instance: warm, startPath: 'warm', dispatchedAt: this.clock.now() });
        continue;
      }
      if (!this.roomFor(entry)) return;
      // Making room stops instances; a driver that reports their exit at once
      // re-enters this loop through forget(), which may have served the queue.
      const waiter = entry.queue.shift();
      if (!waiter) return;
      waiter.timer?.cancel();
      const dispatchedAt = this.clock.now();
      waiter.onColdStart?.();
      this.coldStart(entry).then(
        (instance) => waiter.resolve({ instance, startPath: 'cold', dispatchedAt }),
        (err: PetriError) => waiter.reject(err),
      );
    }
  }

  /**
   * After an instance died: every queue gets a chance. Memory and idle
   * instances are summed once per pass (again only after a queue was served),
   * so a node full of busy instances with many queued functions does not
   * walk every instance for each of them: a queue with no warm instance
   * whose function needs more than free plus idle memory cannot be served.
   */
  private serveAllQueues(): void {
    let room: number | undefined;
    for (const entry of this.functions.values()) {
      if (entry.queue.length === 0) continue;
      room ??= this.limits.memoryBudgetMb - this.memoryInUseMb() + this.idleMb();
      if (entry.record.spec.memoryMb > room && !this.hasWarm(entry)) continue;
      this.serveQueue(entry);
      room = undefined;
    }
  }

  private hasWarm(entry: FunctionEntry): boolean {
    for (const instance of entry.instances)
      if (instance.version === entry.record.version && instance.hasRoom()) return true;
    return false;
  }

  private armKeepAlive(instance: Instance): void {
    instance.clearKeepAlive();
    const ms = this.policy.keepAliveMs(instance.view(), this.view());
    // Infinity: kept until the policy picks it to make room.
    if (!Number.isFinite(ms)) return;
    instance.keepAliveTimer = this.clock.setTimer(
      ms,
      () => {
        if (instance.state === 'idle') void this.retire(instance);
      },
      { background: true },
    );
  }

  private async retire(instance: Instance): Promise<void> {
    await instance.stop();
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
    });
  }

  // ---- starting ahead (pre-warming) ------------------------------------

  /**
   * Starts one instance of the function's current version now, if its cap
   * and the memory budget allow (evicting only idle instances the policy
   * picks, never busy ones); returns whether it started. The instance waits
   * idle for its first invocation, kept alive as the policy says.
   */
  startAhead(functionName: string): boolean {
    const entry = this.functions.get(functionName);
    if (!entry || !this.roomFor(entry)) return false;
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

  private async startIdle(entry: FunctionEntry): Promise<void> {
    const record = entry.record;
    entry.starting += 1;
    this.startingMb += record.spec.memoryMb;
    const begun = this.clock.now();
    let instance: Instance;
    try {
      instance = await this.hooks.startInstance(record);
    } catch {
      return; // a failed start ahead costs nothing but the attempt
    } finally {
      entry.starting -= 1;
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
    current.instances.add(instance);
    this.everyInstance.add(instance);
    this.serveQueue(current);
    if (instance.state === 'idle') this.armKeepAlive(instance);
  }
}
