/**
 * Autoscaling policies (In-Vitro §4.4, Knative's KPA): how many instances a
 * function should have. A policy is fed observations and asked for a
 * decision; it never touches the pool, so the same code runs on a
 * ManualClock in tests and in a simulator.
 */

export const AUTOSCALE_POLICIES = ['on-demand', 'concurrency', 'rps'] as const;
export type AutoscalePolicyName = (typeof AUTOSCALE_POLICIES)[number];

/** A windowed policy's parameters (Knative's names and defaults, in ms). */
export interface AutoscaleSettings {
  policy: AutoscalePolicyName;
  /** Per instance: invocations in flight (concurrency) or invocations per second (rps). */
  target: number;
  /** Share of `target` the policy aims at (Knative: 0.7), leaving headroom for bursts. */
  targetUtilization: number;
  stableWindowMs: number;
  panicWindowMs: number;
  /** Panic when the panic window asks for this many times the ready instances (2 = 200 %). */
  panicThreshold: number;
  /** How long the last instance stays after the policy first wants zero. */
  scaleToZeroGraceMs: number;
  /** At most this many times the ready instances per decision. */
  maxScaleUpRate: number;
  /** At least ready ÷ this instances per decision (a decision at most halves them at 2). */
  maxScaleDownRate: number;
}

/** What happened since the previous observation. */
export interface AutoscaleSample {
  /** When the interval ended (epoch ms). */
  at: number;
  /** Length of the interval, ms. */
  intervalMs: number;
  /** Invocations in flight or queued, averaged over the interval. */
  concurrency: number;
  /** Invocations that arrived in the interval. */
  arrivals: number;
}

export interface AutoscaleDecision {
  at: number;
  policy: AutoscalePolicyName;
  /** The observed metric (concurrency or invocations/s) over the stable and the panic window. */
  observedStable: number;
  observedPanic: number;
  desired: number;
  /** Instances of the current version alive (starting included) when deciding. */
  actual: number;
  panic: boolean;
}

/** One function's autoscaler; it keeps the windows, so there is one per function. */
export interface Autoscaler {
  readonly policy: AutoscalePolicyName;
  observe(sample: AutoscaleSample): void;
  /** Desired instances at `now`, given `actual` live ones. */
  decide(now: number, actual: number): AutoscaleDecision;
}

/**
 * Observations over the last `spanMs`: the average of a sample's value
 * weighted by its interval, over the time the samples cover (so a window
 * not yet full is not diluted by time before the first sample).
 */
export class SlidingWindow {
  private readonly samples: AutoscaleSample[] = [];

  constructor(readonly spanMs: number) {}

  add(sample: AutoscaleSample): void {
    this.samples.push(sample);
    this.trim(sample.at);
  }

  /** Mean concurrency over the samples inside `ms` before `now`. */
  concurrency(now: number, ms: number = this.spanMs): number {
    let area = 0;
    let covered = 0;
    for (const s of this.inside(now, ms)) {
      area += s.concurrency * s.intervalMs;
      covered += s.intervalMs;
    }
    return covered > 0 ? area / covered : 0;
  }

  /** Arrivals per second over the samples inside `ms` before `now`. */
  rate(now: number, ms: number = this.spanMs): number {
    let arrivals = 0;
    let covered = 0;
    for (const s of this.inside(now, ms)) {
      arrivals += s.arrivals;
      covered += s.intervalMs;
    }
    return covered > 0 ? (arrivals * 1000) / covered : 0;
  }

  private *inside(now: number, ms: number): Iterable<AutoscaleSample> {
    for (let i = this.samples.length - 1; i >= 0; i--) {
      const sample = this.samples[i];
      if (sample.at <= now - ms) return;
      yield sample;
    }
  }

  private trim(now: number): void {
    let drop = 0;
    while (drop < this.samples.length && this.samples[drop].at <= now - this.spanMs) drop++;
    if (drop > 0) this.samples.splice(0, drop);
  }
}

/**
 * Today's behaviour: an instance starts when an invocation finds none free,
 * and keep-alive stops idle ones. It wants exactly what there is, so the
 * node never acts on its decisions; they are still recorded for comparison.
 */
export class OnDemandAutoscaler implements Autoscaler {
  readonly policy = 'on-demand';
  private readonly window: SlidingWindow;

  constructor(
    private readonly settings: Pick<AutoscaleSettings, 'stableWindowMs' | 'panicWindowMs'>,
  ) {
    this.window = new SlidingWindow(settings.stableWindowMs);
  }

  observe(sample: AutoscaleSample): void {
    this.window.add(sample);
  }

  decide(now: number, actual: number): AutoscaleDecision {
    return {
      at: now,
      policy: this.policy,
      observedStable: this.window.concurrency(now),
      observedPanic: this.window.concurrency(now, this.settings.panicWindowMs),
      desired: actual,
      actual,
      panic: false,
    };
  }
}

/**
 * Knative's KPA over concurrency or invocations per second: desired =
 * ceil(observed ÷ (target × utilisation)) over the stable window, bounded by
 * the scale-up and scale-down rates. When the panic window asks for at least
 * `panicThreshold` × the ready instances, it panics: follows the panic
 * window and never scales down, until the panic window has stayed under the
 * threshold for a whole stable window. Zero is granted only after
 * `scaleToZeroGraceMs` of wanting zero.
 */
export class WindowedAutoscaler implements Autoscaler {
  readonly policy: 'concurrency' | 'rps';
  private readonly window: SlidingWindow;
  /** When the panic window last was over the threshold; undefined: not panicking. */
  private panicSince: number | undefined;
  private maxPanicInstances = 0;
  /** When the policy first wanted zero, while it keeps wanting it. */
  private zeroSince: number | undefined;

  constructor(private readonly settings: AutoscaleSettings) {
    if (settings.policy === 'on-demand')
      throw new Error('WindowedAutoscaler needs concurrency or rps');
    this.policy = settings.policy;
    this.window = new SlidingWindow(settings.stableWindowMs);
  }

  observe(sample: AutoscaleSample): void {
    this.window.add(sample);
  }

  decide(now: number, actual: number): AutoscaleDecision {
    const s = this.settings;
    const observedStable = this.observed(now, s.stableWindowMs);
    const observedPanic = this.observed(now, s.panicWindowMs);
    const perInstance = s.target * s.targetUtilization;
    const ready = Math.max(1, actual);
    const maxUp = Math.ceil(s.maxScaleUpRate * ready);
    const maxDown = Math.floor(ready / s.maxScaleDownRate);
    const bound = (n: number): number => Math.min(Math.max(n, maxDown), maxUp);
    const wantedPanic = Math.ceil(observedPanic / perInstance);
    const stable = bound(Math.ceil(observedStable / perInstance));
    const panicCount = bound(wantedPanic);

    const overThreshold = wantedPanic / ready >= s.panicThreshold;
    if (overThreshold) this.panicSince = now;
    else if (this.panicSince !== undefined && this.panicSince + s.stableWindowMs <= now) {
      this.panicSince = undefined;
      this.maxPanicInstances = 0;
    }

    let desired = stable;
    const panic = this.panicSince !== undefined;
    if (panic) {
      // In panic the node only scales up: the surge is not yet in the stable window.
      this.maxPanicInstances = Math.max(this.maxPanicInstances, desired, panicCount);
      desired = this.maxPanicInstances;
    }
    desired = this.graceBeforeZero(now, desired, actual);
    return { at: now, policy: this.policy, observedStable, observedPanic, desired, actual, panic };
  }

  private observed(now: number, ms: number): number {
    return this.policy === 'concurrency'
      ? this.window.concurrency(now, ms)
      : this.window.rate(now, ms);
  }

  /** Holds the last instance for the grace period once the policy wants zero. */
  private graceBeforeZero(now: number, desired: number, actual: number): number {
    if (desired > 0) {
      this.zeroSince = undefined;
      return desired;
    }
    this.zeroSince ??= now;
    const graceOver = now - this.zeroSince >= this.settings.scaleToZeroGraceMs;
    return graceOver ? 0 : Math.min(1, actual);
  }
}

export function createAutoscaler(settings: AutoscaleSettings): Autoscaler {
  return settings.policy === 'on-demand'
    ? new OnDemandAutoscaler(settings)
    : new WindowedAutoscaler(settings);
}
