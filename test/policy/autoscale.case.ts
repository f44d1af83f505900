/**
 * What every Autoscaler must do, whichever policy it is: the conformance
 * suite each implementation runs (test/policy/autoscale.test.ts).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Autoscaler, AutoscaleSample, AutoscaleSettings } from '../../src/policy/index.ts';

export const SAMPLE_MS = 1000;

/** A sample of `concurrency` in flight and `rps` arrivals per second, ending at `at`. */
export function sample(at: number, concurrency: number, rps = concurrency): AutoscaleSample {
  return { at, intervalMs: SAMPLE_MS, concurrency, arrivals: (rps * SAMPLE_MS) / 1000 };
}

/**
 * Feeds one sample a second from `from` for `seconds` and decides every two
 * seconds (the node's tick), with the instances following each decision.
 */
export function drive(
  scaler: Autoscaler,
  from: number,
  seconds: number,
  load: (t: number) => { concurrency: number; rps?: number },
  actual: number,
) {
  const decisions = [];
  for (let s = 1; s <= seconds; s++) {
    const at = from + s * SAMPLE_MS;
    const { concurrency, rps } = load(at);
    scaler.observe(sample(at, concurrency, rps));
    if (s % 2 === 0) {
      const decision = scaler.decide(at, actual);
      decisions.push(decision);
      actual = decision.desired;
    }
  }
  return { decisions, actual };
}

export function autoscalerConformance(
  name: string,
  make: (settings: AutoscaleSettings) => Autoscaler,
  settings: AutoscaleSettings,
): void {
  describe(`autoscaler conformance: ${name}`, () => {
    it('names its policy and echoes the instances it was told about', () => {
      const scaler = make(settings);
      assert.equal(scaler.policy, settings.policy);
      scaler.observe(sample(1000, 3));
      const d = scaler.decide(1000, 4);
      assert.equal(d.actual, 4);
      assert.equal(d.at, 1000);
      assert.equal(d.policy, settings.policy);
    });

    it('decides whole, non-negative numbers within the scale-up bound', () => {
      const scaler = make(settings);
      const { decisions } = drive(scaler, 0, 120, (t) => ({ concurrency: (t / 1000) % 37 }), 1);
      for (const d of decisions) {
        assert.ok(Number.isInteger(d.desired) && d.desired >= 0, `desired ${d.desired}`);
        assert.ok(d.desired <= Math.ceil(settings.maxScaleUpRate * Math.max(1, d.actual)));
        assert.ok(d.observedStable >= 0 && d.observedPanic >= 0);
      }
    });

    it('is deterministic: the same series gives the same decisions', () => {
      const load = (t: number) => ({ concurrency: Math.abs(Math.sin(t / 7000)) * 20 });
      const a = drive(make(settings), 0, 200, load, 1).decisions;
      const b = drive(make(settings), 0, 200, load, 1).decisions;
      assert.deepEqual(a, b);
    });

    it('does not panic under steady load it already has instances for', () => {
      const scaler = make(settings);
      const { decisions } = drive(scaler, 0, 180, () => ({ concurrency: 3, rps: 3 }), 8);
      assert.ok(decisions.every((d) => !d.panic));
    });

    it('never asks for instances when nothing ever arrives, once its grace has passed', () => {
      const scaler = make(settings);
      const { decisions } = drive(scaler, 0, 200, () => ({ concurrency: 0, rps: 0 }), 0);
      assert.equal(decisions.at(-1)!.desired, 0);
    });
  });
}
