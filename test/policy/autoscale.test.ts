import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  createAutoscaler,
  OnDemandAutoscaler,
  SlidingWindow,
  WindowedAutoscaler,
  type AutoscaleSettings,
} from '../../src/policy/index.ts';
import { autoscalerConformance, drive, sample } from './autoscale.case.ts';

/** Knative's defaults, with one invocation per instance as the concurrency target. */
const KPA: AutoscaleSettings = {
  policy: 'concurrency',
  target: 1,
  targetUtilization: 0.7,
  stableWindowMs: 60_000,
  panicWindowMs: 6_000,
  panicThreshold: 2,
  scaleToZeroGraceMs: 30_000,
  maxScaleUpRate: 1000,
  maxScaleDownRate: 2,
};
const RPS: AutoscaleSettings = { ...KPA, policy: 'rps', target: 10 };

autoscalerConformance('on-demand', (s) => new OnDemandAutoscaler(s), {
  ...KPA,
  policy: 'on-demand',
});
autoscalerConformance('concurrency', (s) => createAutoscaler(s), KPA);
autoscalerConformance('rps', (s) => createAutoscaler(s), RPS);

describe('sliding window', () => {
  it('averages concurrency by interval and counts arrivals per second over what it covers', () => {
    const w = new SlidingWindow(10_000);
    w.add({ at: 1000, intervalMs: 1000, concurrency: 2, arrivals: 5 });
    w.add({ at: 4000, intervalMs: 3000, concurrency: 6, arrivals: 3 });
    assert.equal(w.concurrency(4000), (2 * 1000 + 6 * 3000) / 4000);
    assert.equal(w.rate(4000), (8 * 1000) / 4000);
    assert.equal(w.concurrency(4000, 3000), 6);
    w.add({ at: 13_500, intervalMs: 1000, concurrency: 1, arrivals: 0 });
    assert.equal(w.concurrency(13_500), (6 * 3000 + 1000) / 4000, 'the sample at 1 s aged out');
  });
});

describe('on-demand autoscaler', () => {
  it('wants exactly the instances there are, whatever the load', () => {
    const scaler = new OnDemandAutoscaler(KPA);
    scaler.observe(sample(1000, 50));
    const d = scaler.decide(1000, 3);
    assert.equal(d.desired, 3);
    assert.equal(d.panic, false);
    assert.equal(d.observedStable, 50);
  });
});

describe('concurrency autoscaler (KPA)', () => {
  it('asks for ceil(concurrency ÷ (target × 0.7)) instances under steady load', () => {
    const scaler = new WindowedAutoscaler({ ...KPA, target: 2 });
    const { decisions } = drive(scaler, 0, 90, () => ({ concurrency: 7 }), 5);
    // 7 ÷ (2 × 0.7) = 5.
    assert.equal(decisions.at(-1)!.desired, 5);
    assert.ok(decisions.every((d) => !d.panic));
  });

  it('panics on a burst, scales up at once and not down until the burst leaves the stable window', () => {
    const scaler = new WindowedAutoscaler(KPA);
    const burst = (t: number) => ({ concurrency: t > 60_000 && t <= 70_000 ? 20 : 1 });
    const { decisions } = drive(scaler, 0, 200, burst, 2);
    const at = (ms: number) => decisions.find((d) => d.at === ms)!;
    assert.equal(at(60_000).panic, false);
    assert.equal(at(60_000).desired, 2, 'ceil(1 ÷ 0.7)');
    // Two samples of 20 in the 6 s panic window: (4×1 + 2×20) ÷ 6 ≈ 7.3 → 11 wanted ≥ 2 × 2.
    assert.equal(at(62_000).panic, true);
    assert.equal(at(62_000).desired, Math.ceil((4 + 40) / 6 / 0.7));
    const peak = Math.max(...decisions.map((d) => d.desired));
    assert.equal(peak, Math.ceil(20 / 0.7), 'the panic window fills with the burst: 29');
    // The burst ends at 70 s; the panic window drops under the threshold at ~76 s, and
    // panic holds (never scaling down) for a stable window after the last time over it.
    const lastOver = Math.max(
      ...decisions
        .filter((d) => d.observedPanic / 0.7 / Math.max(1, d.actual) >= 2)
        .map((d) => d.at),
    );
    let previous = 0;
    for (const d of decisions.filter((d) => d.at >= 62_000 && d.at < lastOver + 60_000)) {
      assert.equal(d.panic, true, `panic at ${d.at}`);
      assert.ok(d.desired >= previous, `no scale-down in panic at ${d.at}`);
      previous = d.desired;
    }
    assert.equal(previous, peak);
    const after = decisions.find((d) => d.at >= lastOver + 60_000)!;
    assert.equal(after.panic, false);
    assert.ok(after.desired >= Math.floor(peak / 2), 'leaving panic halves at most');
  });

  it('scales down by at most the scale-down rate per decision', () => {
    const scaler = new WindowedAutoscaler(KPA);
    scaler.observe(sample(1000, 0));
    assert.equal(scaler.decide(1000, 10).desired, 5);
    assert.equal(scaler.decide(3000, 5).desired, 2);
    assert.equal(scaler.decide(5000, 2).desired, 1);
  });

  it('scales up by at most the scale-up rate per decision', () => {
    const scaler = new WindowedAutoscaler({ ...KPA, maxScaleUpRate: 3 });
    scaler.observe(sample(1000, 100));
    assert.equal(scaler.decide(1000, 2).desired, 6);
    const fromZero = new WindowedAutoscaler({ ...KPA, maxScaleUpRate: 3 });
    fromZero.observe(sample(1000, 100));
    assert.equal(fromZero.decide(1000, 0).desired, 3, 'from zero as from one ready instance');
  });

  it('keeps the last instance for the grace period, then scales to zero', () => {
    const scaler = new WindowedAutoscaler(KPA);
    const idleAfter30s = (t: number) => ({ concurrency: t <= 30_000 ? 0.5 : 0 });
    const { decisions } = drive(scaler, 0, 200, idleAfter30s, 1);
    // The stable window holds load until 90 s; from then it wants zero, granted 30 s later.
    const firstZeroWish = 90_000;
    for (const d of decisions.filter((d) => d.at < firstZeroWish + 30_000))
      assert.equal(d.desired, 1, `held at ${d.at}`);
    assert.equal(decisions.find((d) => d.at === firstZeroWish + 30_000)!.desired, 0);
    assert.ok(
      decisions.filter((d) => d.at >= firstZeroWish + 30_000).every((d) => d.desired === 0),
    );
  });

  it('wakes from zero as soon as load returns', () => {
    const scaler = new WindowedAutoscaler(KPA);
    drive(scaler, 0, 200, () => ({ concurrency: 0 }), 0);
    scaler.observe(sample(201_000, 10));
    const d = scaler.decide(201_000, 0);
    // Panic window: (4 × 0 + 10) ÷ 5 s = 2 in flight → 3 instances, over 200 % of one.
    assert.equal(d.desired, 3);
    assert.equal(d.panic, true);
  });
});

describe('rps autoscaler', () => {
  it('asks for ceil(rps ÷ (target × 0.7)) instances, whatever the concurrency', () => {
    const scaler = new WindowedAutoscaler(RPS);
    const { decisions } = drive(scaler, 0, 90, () => ({ concurrency: 1, rps: 100 }), 15);
    assert.equal(decisions.at(-1)!.desired, Math.ceil(100 / 7));
    assert.equal(decisions.at(-1)!.observedStable, 100);
  });

  it('panics when the rate in the panic window doubles what the instances are for', () => {
    const scaler = new WindowedAutoscaler(RPS);
    const { decisions } = drive(
      scaler,
      0,
      80,
      (t) => ({ concurrency: 1, rps: t > 60_000 ? 200 : 7 }),
      1,
    );
    assert.equal(decisions.find((d) => d.at === 60_000)!.panic, false);
    assert.ok(decisions.find((d) => d.at === 62_000)!.panic);
    assert.equal(decisions.at(-1)!.desired, Math.ceil(200 / 7));
  });
});
