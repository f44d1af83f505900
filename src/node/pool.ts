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
  /** Starts a new instance of the function's current version (cold, or restored from its snapshot). */
  startInstance(record: FunctionRecord, path?: 'cold' | 'restore'): Promise<Instance>;
  /** True when the version has a snapshot ready to restore; absent: never. */
  snapshotReady?(record: FunctionRecord): boolean;
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
  /** Invocations in flight on the node, and the most at once since `takePeakInFlight`. */
  private inFlight = 0;
  private peakInFlight = 0;

  constructor(
    private readonly limits: PoolLimits,
    private readonly policy: KeepAlivePolicy,
    private readonly hooks: PoolHooks,
    readonly clock: Clock = systemClock,
    readonly startPolicy: StartPathPolicy = new WarmFirst(),
  ) {}

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
      if (instance.version !== record.version && isIdle(instance)) void this.retire(instance);
    }
  }

  /** Removes a function: queued invocations fail, idle instances stop, busy ones stop when done. */
  removeFunction(name: string): void {
    const entry = this.functions.get(name);
    if (!entry) return;
    this.functions.delete(name);
    for (const waiter of entry.queue.splice(0)) {
      waiter.timer?.cancel();
      waiter.reject(new PetriError('FunctionNotFound', `function "${name}" was removed`));
    }
    for (const instance of entry.instances) if (isIdle(instance)) void this.retire(instance);
  }

  /**
   * Finds or makes room for one invocation; may wait in the function's queue.
   * `onColdStart` hears when an instance starts for it, so a start that fails
   * is still known as a cold one.
   */
  async acquire(entry: FunctionEntry, onColdStart?: () => void): Promise<Slot> {
    const { decision, chosen } = this.decide(entry);
    switch (decision.path) {
      case 'warm':
        this.reserve(chosen!);
        return { instance: chosen!, startPath: 'warm', dispatchedAt: this.clock.now() };
      case 'paused':
        return this.thaw(entry, chosen!, onColdStart);
      case 'queue':
        return this.enqueue(entry, onColdStart);
      default:
        if (!this.makeRoom(entry)) return this.enqueue(entry, onColdStart);
        return this.startNew(entry, decision.path, onColdStart);
    }
  }

  /** Called when an invocation finishes on `instance`. */
  release(instance: Instance): void {
    instance.release();
    this.inFlight -= 1;
    const entry = this.functions.get(instance.functionName);
    const current = entry?.record.version === instance.version;
    if (instance.state === 'idle' && !current) {
      void this.retire(instance);
      return;
    }
    if (entry) this.serveQueue(entry);
    if (instance.state === 'idle') {
      this.armKeepAlive(instance);
      this.armPause(instance);
    }
  }

  /** Called when an instance died: forget it and let queued work use the room. */
  forget(instance: Instance): void {
    instance.clearKeepAlive();
    this.functions.get(instance.functionName)?.instances.delete(instance);
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
    for (const entry of this.functions.values()) {
      for (const instance of entry.instances)
        if (instance.state !== 'dead') total += instance.memoryMb;
    }
    return total;
  }

  allInstances(): Instance[] {
    return [...this.functions.values()].flatMap((entry) => [...entry.instances]);
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
    for (const entry of this.functions.values()) {
      for (const waiter of entry.queue.splice(0)) {
        waiter.timer?.cancel();
        waiter.reject(error);
      }
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
  private decide(entry: FunctionEntry): { decision: StartDecision; chosen?: Instance } {
    const { options, byId } = this.startOptions(entry);
    const decision = this.startPolicy.choose(options, this.view());
    const invalid = invalidDecision(decision, options);
    if (invalid !== undefined) {
      throw new PetriError(
        'Internal',
        `start-path policy "${this.startPolicy.name}" chose ${decision.path}: ${invalid}`,
      );
    }
    const chosen = 'instanceId' in decision ? byId.get(decision.instanceId) : undefined;
    return { decision, chosen };
  }

  private startOptions(entry: FunctionEntry): {
    options: StartOptions;
    byId: Map<string, Instance>;
  } {
    const { record } = entry;
    const warm: InstanceView[] = [];
    const paused: InstanceView[] = [];
    const byId = new Map<string, Instance>();
    for (const instance of entry.instances) {
      if (instance.version !== record.version) continue;
      const list = instance.hasRoom() ? warm : instance.state === 'paused' ? paused : undefined;
      if (!list) continue;
      list.push(instance.view());
      byId.set(instance.id, instance);
    }
    const cap = record.spec.maxInstances ?? this.limits.maxInstancesPerFunction;
    const options: StartOptions = Object.freeze({
      functionName: record.name,
      version: record.version,
      memoryMb: record.spec.memoryMb,
      warm: Object.freeze(warm),
      paused: Object.freeze(paused),
      // Prewarmed runtimes are not built yet: never offered.
      prewarms: 0,
      snapshotReady: this.hooks.snapshotReady?.(record) ?? false,
      belowCap: this.liveCount(entry) < cap,
    });
    return { options, byId };
  }

  /** Thaws a paused instance for one invocation; if it cannot run again, tries anew. */
  private async thaw(
    entry: FunctionEntry,
    instance: Instance,
    onColdStart: (() => void) | undefined,
  ): Promise<Slot> {
    const dispatchedAt = this.clock.now();
    this.countInFlight();
    try {
      await instance.reserveThawed();
    } catch {
      this.inFlight -= 1;
      instance.release();
      void this.retire(instance);
      return this.acquire(entry, onColdStart);
    }
    return { instance, startPath: 'paused', dispatchedAt };
  }

  /** A new instance for one invocation: cold, or restored from the version's snapshot. */
  private async startNew(
    entry: FunctionEntry,
    path: 'prewarm' | 'restore' | 'cold',
    onColdStart: (() => void) | undefined,
  ): Promise<Slot> {
    if (path === 'prewarm') throw new PetriError('Internal', `start path ${path} is not built`);
    const dispatchedAt = this.clock.now();
    onColdStart?.();
    return { instance: await this.coldStart(entry, path), startPath: path, dispatchedAt };
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
    const victims = new Set(this.policy.victims(spec.memoryMb - free, this.view()));
    for (const instance of this.allInstances()) {
      if (victims.has(instance.id) && isIdle(instance)) void this.retire(instance);
    }
    return this.limits.memoryBudgetMb - this.memoryInUseMb() >= spec.memoryMb;
  }

  /** `makeRoom` for queued work: a function too large for the node just stays queued. */
  private roomFor(entry: FunctionEntry): boolean {
    try {
      return this.makeRoom(entry);
    } catch {
      return false;
    }
  }

  private async coldStart(
    entry: FunctionEntry,
    path: 'cold' | 'restore' = 'cold',
  ): Promise<Instance> {
    const record = entry.record;
    entry.starting += 1;
    this.startingMb += record.spec.memoryMb;
    try {
      const instance = await this.hooks.startInstance(record, path);
      this.reserve(instance);
      const current = this.functions.get(record.name);
      current?.instances.add(instance);
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
      const { decision, chosen } = this.decideOrWait(entry);
      if (decision.path === 'queue') return;
      if (decision.path === 'warm') {
        this.reserve(chosen!);
        const waiter = this.nextWaiter(entry);
        waiter.resolve({ instance: chosen!, startPath: 'warm', dispatchedAt: this.clock.now() });
        continue;
      }
      if (decision.path !== 'paused' && !this.roomFor(entry)) return;
      const waiter = this.nextWaiter(entry);
      const slot =
        decision.path === 'paused'
          ? this.thaw(entry, chosen!, waiter.onColdStart)
          : this.startNew(entry, decision.path, waiter.onColdStart);
      slot.then(waiter.resolve, (err: PetriError) => waiter.reject(err));
    }
  }

  /** `decide` for queued work, which is called from releases and deaths and must not throw. */
  private decideOrWait(entry: FunctionEntry): { decision: StartDecision; chosen?: Instance } {
    try {
      return this.decide(entry);
    } catch {
      return { decision: { path: 'queue' } };
    }
  }

  private nextWaiter(entry: FunctionEntry): Waiter {
    const waiter = entry.queue.shift()!;
    waiter.timer?.cancel();
    return waiter;
  }

  private serveAllQueues(): void {
    for (const entry of this.functions.values()) if (entry.queue.length > 0) this.serveQueue(entry);
  }

  private armKeepAlive(instance: Instance): void {
    instance.clearKeepAlive();
    const ms = this.policy.keepAliveMs(instance.view(), this.view());
    instance.keepAliveTimer = this.clock.setTimer(
      ms,
      () => {
        if (isIdle(instance)) void this.retire(instance);
      },
      { background: true },
    );
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

  private async retire(instance: Instance): Promise<void> {
    await instance.stop();
  }
}
