import type { AutoscalingConfig } from '../config.ts';
import {
  createAutoscaler,
  type AutoscaleDecision,
  type Autoscaler,
  type AutoscaleSettings,
} from '../policy/index.ts';
import type { FunctionSpec } from '../spec/index.ts';
import type { AutoscaleDecisionRecord } from '../store/index.ts';
import type { Clock, Timer } from './clock.ts';
import type { Pool } from './pool.ts';

/**
 * A function's autoscaling settings: its spec's fields over the node's
 * defaults. The concurrency target defaults to the node's, else to the
 * function's own `concurrency`; a panic window is at most the stable one.
 */
export function autoscaleSettings(spec: FunctionSpec, node: AutoscalingConfig): AutoscaleSettings {
  const own = spec.autoscaling ?? {};
  const policy = own.policy ?? node.policy;
  const defaultTarget =
    policy === 'rps' ? node.rpsTarget : (node.concurrencyTarget ?? spec.concurrency);
  const stableWindowMs = own.stableWindowMs ?? node.stableWindowMs;
  return {
    policy,
    target: own.target ?? defaultTarget,
    targetUtilization: own.targetUtilization ?? node.targetUtilization,
    stableWindowMs,
    panicWindowMs: Math.min(own.panicWindowMs ?? node.panicWindowMs, stableWindowMs),
    panicThreshold: own.panicThreshold ?? node.panicThreshold,
    scaleToZeroGraceMs: own.scaleToZeroGraceMs ?? node.scaleToZeroGraceMs,
    maxScaleUpRate: own.maxScaleUpRate ?? node.maxScaleUpRate,
    maxScaleDownRate: own.maxScaleDownRate ?? node.maxScaleDownRate,
  };
}

interface Scaled {
  autoscaler: Autoscaler;
  /** The settings it was made with, as JSON: a redeploy that changes them starts afresh. */
  key: string;
  arrivalsSeen: number;
  sampledAt: number;
}

export interface AutoscaleDriverDeps {
  pool: Pool;
  clock: Clock;
  config: AutoscalingConfig;
  /** Where each round's decisions go (the store). */
  record(decisions: AutoscaleDecisionRecord[], keep: number): void;
}

/**
 * Runs the autoscaling policies on the pool's clock: every `sampleMs` it
 * reads each autoscaled function's demand (in flight plus queued) and
 * arrivals, every `tickMs` it asks the function's policy for a number of
 * instances and moves towards it (Pool.startAhead up, Pool.scaleDownTo
 * down). On-demand functions are left to the pool, as before.
 */
export class AutoscaleDriver {
  private readonly scaled = new Map<string, Scaled>();
  private readonly latest = new Map<string, AutoscaleDecision>();
  private sampleTimer: Timer | undefined;
  private tickTimer: Timer | undefined;
  private running = false;

  constructor(private readonly deps: AutoscaleDriverDeps) {}

  start(): void {
    if (this.running) return;
    this.running = true;
    this.scheduleSample();
    this.scheduleTick();
  }

  stop(): void {
    this.running = false;
    this.sampleTimer?.cancel();
    this.tickTimer?.cancel();
  }

  /** The last decision per autoscaled function (for /metrics). */
  decisions(): Map<string, AutoscaleDecision> {
    for (const name of this.latest.keys()) if (!this.scaled.has(name)) this.latest.delete(name);
    return this.latest;
  }

  /**
   * Sets how many instances arrivals may start for the function by its
   * policy: at deploy, so a burst right after it cannot cold-start past the
   * autoscaler before its first sample.
   */
  limitStarts(name: string): void {
    const entry = this.deps.pool.entry(name);
    if (!entry) return;
    const { policy } = autoscaleSettings(entry.record.spec, this.deps.config);
    entry.demandStartLimit = policy === 'on-demand' ? undefined : 1;
  }

  /** One sampling round; public so tests on a ManualClock can also call it directly. */
  sample(): void {
    const { pool, clock } = this.deps;
    const now = clock.now();
    for (const [name, entry] of pool.functions) {
      const settings = autoscaleSettings(entry.record.spec, this.deps.config);
      if (settings.policy === 'on-demand') {
        entry.demandStartLimit = undefined;
        this.scaled.delete(name);
        continue;
      }
      entry.demandStartLimit = 1;
      const state = this.stateFor(name, settings, entry.arrivals, now);
      const intervalMs = now - state.sampledAt;
      if (intervalMs <= 0) continue;
      state.autoscaler.observe({
        at: now,
        intervalMs,
        concurrency: pool.demand(name),
        arrivals: entry.arrivals - state.arrivalsSeen,
      });
      state.arrivalsSeen = entry.arrivals;
      state.sampledAt = now;
    }
    for (const name of this.scaled.keys()) if (!pool.functions.has(name)) this.scaled.delete(name);
  }

  /** One decision round: decide, act, record. */
  tick(): AutoscaleDecisionRecord[] {
    const { pool, clock } = this.deps;
    const now = clock.now();
    const records: AutoscaleDecisionRecord[] = [];
    for (const [name, state] of this.scaled) {
      const decision = state.autoscaler.decide(now, pool.liveInstances(name));
      this.apply(name, decision);
      this.latest.set(name, decision);
      records.push({ functionName: name, ...decision });
    }
    this.deps.record(records, this.deps.config.decisionsKept);
    return records;
  }

  private apply(name: string, decision: AutoscaleDecision): void {
    const { pool } = this.deps;
    for (let n = decision.actual; n < decision.desired; n++) if (!pool.startAhead(name)) break;
    if (decision.desired < decision.actual) pool.scaleDownTo(name, decision.desired);
  }

  private stateFor(
    name: string,
    settings: AutoscaleSettings,
    arrivals: number,
    now: number,
  ): Scaled {
    const key = JSON.stringify(settings);
    let state = this.scaled.get(name);
    if (!state || state.key !== key) {
      state = {
        autoscaler: createAutoscaler(settings),
        key,
        arrivalsSeen: arrivals,
        sampledAt: now,
      };
      this.scaled.set(name, state);
    }
    return state;
  }

  private scheduleSample(): void {
    if (!this.running) return;
    this.sampleTimer = this.deps.clock.setTimer(
      this.deps.config.sampleMs,
      () => {
        this.sample();
        this.scheduleSample();
      },
      { background: true },
    );
  }

  private scheduleTick(): void {
    if (!this.running) return;
    this.tickTimer = this.deps.clock.setTimer(
      this.deps.config.tickMs,
      () => {
        this.tick();
        this.scheduleTick();
      },
      { background: true },
    );
  }
}
