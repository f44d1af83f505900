/**
 * The CpuScheduler conformance suite: what the invoker and instances rely on
 * from any scheduler (task-based and microtask-based, static or dynamic).
 * Each scheduler's test file calls `describeSchedulerCases`.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ManualClock } from '../../src/node/clock.ts';
import type { CpuLimit } from '../../src/sandbox/index.ts';
import {
  MICROTASKS_PER_INVOCATION,
  type CpuScheduler,
  type CpuSubject,
} from '../../src/sched/index.ts';

/** An instance as the scheduler sees it: its own share, and every limit it was given. */
export class FakeSubject implements CpuSubject {
  readonly limits: CpuLimit[] = [];
  constructor(
    readonly instanceId: string,
    private readonly ownLimit: CpuLimit = { cpu: 0.07 },
  ) {}
  own(): CpuLimit {
    return this.ownLimit;
  }
  async setCpu(limit: CpuLimit): Promise<void> {
    this.limits.push(limit);
  }
}

/** Lets promise reactions (cgroup writes, admissions) run. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await Promise.resolve();
}

export const CLASSES = { io: { vcpu: 0.25, cores: [0] }, cpu: { vcpu: 1, cores: [1] } };
export const MAP = { read: 'io', sort: 'cpu', write: 'io' };

export function describeSchedulerCases(
  name: string,
  make: (clock: ManualClock) => CpuScheduler,
): void {
  describe(`CpuScheduler conformance: ${name}`, () => {
    test('records phases in order, each ending when the next begins or the invocation ends', async () => {
      const clock = new ManualClock(1000);
      const scheduler = make(clock);
      const phases = scheduler.begin('a', new FakeSubject('i1'), MAP, 1000);
      clock.advance(2);
      await phases.enter('read');
      clock.advance(10);
      await phases.enter('sort');
      clock.advance(30);
      await phases.enter('write');
      clock.advance(5);
      const { microtasks, dropped } = phases.finish();
      assert.equal(dropped, 0);
      assert.deepEqual(
        microtasks.map((m) => [m.name, m.class, m.startMs, m.durationMs, m.waitedMs]),
        [
          ['read', 'io', 2, 10, 0],
          ['sort', 'cpu', 12, 30, 0],
          ['write', 'io', 42, 5, 0],
        ],
      );
      scheduler.close();
    });

    test('a phase the spec does not map runs in the default class at once', async () => {
      const clock = new ManualClock(0);
      const scheduler = make(clock);
      const phases = scheduler.begin('a', new FakeSubject('i1'), {}, 0);
      await phases.enter('anything');
      assert.equal(phases.finish().microtasks[0].class, 'default');
      scheduler.close();
    });

    test('finish is idempotent and later announcements are not recorded', async () => {
      const clock = new ManualClock(0);
      const scheduler = make(clock);
      const phases = scheduler.begin('a', new FakeSubject('i1'), MAP, 0);
      await phases.enter('read');
      const first = phases.finish();
      await phases.enter('sort');
      assert.deepEqual(phases.finish(), first);
      assert.equal(first.microtasks.length, 1);
      scheduler.close();
    });

    test(`past ${MICROTASKS_PER_INVOCATION} phases an invocation's announcements are only counted`, async () => {
      const clock = new ManualClock(0);
      const scheduler = make(clock);
      const phases = scheduler.begin('a', new FakeSubject('i1'), {}, 0);
      for (let i = 0; i < MICROTASKS_PER_INVOCATION + 5; i++) await phases.enter(`p${i}`);
      const { microtasks, dropped } = phases.finish();
      assert.equal(microtasks.length, MICROTASKS_PER_INVOCATION);
      assert.equal(dropped, 5);
      scheduler.close();
    });

    test('status names every class with its share and cores', () => {
      const scheduler = make(new ManualClock(0));
      const status = scheduler.status();
      assert.equal(status.policy, scheduler.policy);
      assert.deepEqual(Object.keys(status.classes).sort(), ['cpu', 'io']);
      assert.equal(status.classes.io.vcpu, 0.25);
      scheduler.close();
    });

    test('close admits what is still waiting, so no invocation hangs', async () => {
      const clock = new ManualClock(0);
      const scheduler = make(clock);
      const waits: Promise<void>[] = [];
      for (let i = 0; i < 3; i++) {
        waits.push(scheduler.begin(`x${i}`, new FakeSubject(`i${i}`), MAP, 0).enter('sort'));
      }
      scheduler.close();
      await Promise.all(waits);
    });
  });
}
