import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  type Clock,
  type InvocationOutcome,
  type LoadTarget,
  RunMetaSchema,
  analyseRun,
  emptyRunData,
  runLoad,
  stopRule,
} from '../../src/workload/index.ts';
import { flatFunction } from './helpers.ts';

const close = (actual: number, expected: number, eps = 1e-9) =>
  assert.ok(Math.abs(actual - expected) <= eps, `${actual} ≠ ${expected}`);

/** A run of hand-set invocations of functions f0 and f1 (all requested 10 ms). */
function run(
  rows: { fn: number; scheduled: number; sent: number; done: number; status: number }[],
  drainEndMs = 1000,
) {
  const meta = RunMetaSchema.parse({
    label: 't',
    target: 'test',
    trace: '',
    functions: 3,
    functionNames: ['f0', 'f1', 'f2'],
    minutes: 1,
    warmupMinutes: 0,
    minuteMs: 60_000,
    iat: 'equidistant',
    seed: 1,
    startedAt: new Date(0).toISOString(),
    wallSeconds: 1,
    scheduled: rows.length,
    offeredRate: 1,
    nodeCpuUtilisation: null,
    itersPerMs: null,
    cores: 2,
    drainEndMs,
  });
  const data = emptyRunData(meta, rows.length);
  rows.forEach((r, i) => {
    data.fn[i] = r.fn;
    data.scheduledMs[i] = r.scheduled;
    data.sentMs[i] = r.sent;
    data.doneMs[i] = r.done;
    data.status[i] = r.status;
    data.errorCode[i] = r.status === 200 ? '' : r.status === 0 ? 'Timeout' : 'Failed';
    data.requestedDurationMs[i] = 10;
  });
  return data;
}

describe('analyseRun', () => {
  it('measures response time from the schedule, send-time latency beside it', () => {
    // Sent 5 ms late, done 20 ms after it left: 25 ms from the schedule.
    const a = analyseRun(run([{ fn: 0, scheduled: 0, sent: 5, done: 25, status: 200 }]));
    close(a.latencyMs.p50, 25);
    close(a.sendLatencyMs.p50, 20);
    close(a.slowdown, 2.5);
  });

  it('counts failures in slowdown with their time to failure, lost ones until the drain ended', () => {
    const a = analyseRun(
      run(
        [
          { fn: 0, scheduled: 0, sent: 0, done: 20, status: 200 }, // slowdown 2
          { fn: 0, scheduled: 100, sent: 100, done: 180, status: 503 }, // failed after 80 ms: 8
          { fn: 1, scheduled: 200, sent: 200, done: NaN, status: 0 }, // lost: 1000 − 200 → 80
        ],
        1000,
      ),
    );
    close(a.failureRate, 2 / 3);
    // f0: √(2 × 8) = 4; f1: 80; across functions √(4 × 80).
    close(a.slowdown, Math.sqrt(4 * 80));
    close(a.slowdownCompleted, 2);
    assert.equal(a.functionsWithoutInvocations, 1);
  });

  it('fails the open-loop check when more than 1 % leave over 2 ms late', () => {
    const rows = Array.from({ length: 100 }, (_, i) => ({
      fn: 0,
      scheduled: i,
      sent: i + (i < 2 ? 3 : 0.5),
      done: i + 20,
      status: 200,
    }));
    const twoLate = analyseRun(run(rows));
    close(twoLate.lateShare, 0.02);
    assert.equal(twoLate.openLoop, false);
    const oneLate = analyseRun(
      run(rows.map((r, i) => (i === 1 ? { ...r, sent: r.scheduled } : r))),
    );
    close(oneLate.lateShare, 0.01);
    assert.equal(oneLate.openLoop, true);
  });
});

describe('stopRule', () => {
  const limits = { threshold: 5, failureThreshold: 0.05 };
  it('stops on slowdown past its threshold or failures past theirs', () => {
    assert.equal(stopRule(4, 0, limits), undefined);
    assert.equal(stopRule(6, 0, limits), 'slowdown');
    assert.equal(stopRule(NaN, 0, limits), 'slowdown');
    // 35 % timeouts with a modest slowdown: the failure rule stops it.
    assert.equal(stopRule(3, 0.35, limits), 'failures');
  });
});

/** A fake clock driven by the test; sleeps resolve when time reaches them. */
function manualClock(): Clock & { advance(ms: number): Promise<void> } {
  let t = 0;
  let waiters: { at: number; resolve: () => void }[] = [];
  return {
    now: () => t,
    sleep: (ms) => new Promise((resolve) => waiters.push({ at: t + ms, resolve })),
    yieldToIo: () => Promise.resolve(),
    async advance(ms: number) {
      const end = t + ms;
      for (;;) {
        const next = waiters.filter((w) => w.at <= end).sort((a, b) => a.at - b.at)[0];
        if (!next) break;
        t = Math.max(t, next.at);
        waiters = waiters.filter((w) => w !== next);
        next.resolve();
        for (let k = 0; k < 10; k++) await Promise.resolve();
      }
      t = end;
      for (let k = 0; k < 10; k++) await Promise.resolve();
    },
  };
}

describe('runLoad at the connection limit', () => {
  it('records requests that waited for a connection as late, with their wait', async () => {
    const clock = manualClock();
    const pending: ((o: InvocationOutcome) => void)[] = [];
    const target: LoadTarget = {
      kind: 'http',
      description: 'fake',
      connections: 2,
      prepare: async () => undefined,
      invoke: () => new Promise((resolve) => pending.push(resolve)),
      close: async () => undefined,
    };
    // 4 invocations, equidistant in a 100 ms minute: at 20, 40, 60, 80 ms.
    const trace = { minutes: 1, functions: [flatFunction(0, [4], 10)] };
    const running = runLoad(trace, {
      target,
      minutes: 1,
      warmupMinutes: 0,
      iat: 'equidistant',
      seed: 1,
      minuteMs: 100,
      clock,
      drainTimeoutMs: 10_000,
    });
    // Let the run reach its dispatcher before time moves.
    await new Promise((resolve) => setImmediate(resolve));
    await clock.advance(90);
    // Two connections busy: the last two wait.
    assert.equal(pending.length, 2);
    const ok: InvocationOutcome = {
      status: 200,
      errorCode: '',
      start: 'warm',
      actualDurationMs: 10,
    };
    pending[0](ok);
    await clock.advance(10); // t = 100: one connection frees, the third request leaves.
    assert.equal(pending.length, 3);
    pending[1](ok);
    pending[2](ok);
    await clock.advance(10);
    assert.equal(pending.length, 4);
    pending[3](ok);
    await clock.advance(1);
    const data = await running;
    const a = analyseRun(data);
    assert.equal(data.meta.delayedByConnections, 2);
    const lateness = Array.from(data.sentMs, (s, i) => s - data.scheduledMs[i]);
    assert.ok(lateness[0] < 1 && lateness[1] < 1, String(lateness));
    assert.ok(lateness[2] >= 30 && lateness[3] >= 20, String(lateness));
    assert.equal(a.openLoop, false);
    close(a.lateShare, 0.5);
  });
});
