import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { pino } from 'pino';
import { parseConfig } from '../../src/config.ts';
import { ManualClock } from '../../src/node/clock.ts';
import type { CpuLimit } from '../../src/sandbox/index.ts';
import { PackWhenSequential } from '../../src/policy/index.ts';
import {
  chooseMove,
  CpuPlacer,
  createScheduler,
  daemonPinOf,
  type DaemonPin,
  MicrotaskScheduler,
  TaskScheduler,
} from '../../src/sched/index.ts';
import { CLASSES, describeSchedulerCases, FakeSubject, MAP, settle } from './scheduler.case.ts';

function microtask(clock: ManualClock, allocation: 'static' | 'dynamic' = 'static') {
  return new MicrotaskScheduler({
    clock,
    classes: CLASSES,
    allocation,
    intervalMs: 5,
    moveIntervalMs: 20,
  });
}

describeSchedulerCases('task', (clock) => new TaskScheduler(clock, CLASSES));
describeSchedulerCases('microtask, static', (clock) => microtask(clock));
describeSchedulerCases('microtask, dynamic', (clock) => microtask(clock, 'dynamic'));

describe('task scheduler', () => {
  test('never writes a cgroup: the invocation keeps its own share throughout', async () => {
    const clock = new ManualClock(0);
    const subject = new FakeSubject('i1');
    const phases = new TaskScheduler(clock, CLASSES).begin('a', subject, MAP, 0);
    await phases.enter('read');
    await phases.enter('sort');
    phases.finish();
    await settle();
    assert.deepEqual(subject.limits, []);
  });
});

describe('microtask scheduler', () => {
  test('a phase is admitted once its limits are written, admissions in announcement order', async () => {
    const clock = new ManualClock(0);
    const writes: { limit: CpuLimit; done: () => void }[] = [];
    const subject = {
      instanceId: 'slow',
      own: () => ({ cpu: 0.07 }),
      setCpu: (limit: CpuLimit) => new Promise<void>((done) => writes.push({ limit, done })),
    };
    const phases = microtask(clock).begin('a', subject, MAP, 0);
    const order: string[] = [];
    void phases.enter('read', () => order.push('read'));
    void phases.enter('other', () => order.push('other')); // its own share: a second write
    await settle();
    assert.equal(order.length, 0); // the first write is still under way
    assert.equal(writes.length, 1);
    writes[0].done();
    await settle();
    assert.deepEqual([...order], ['read']);
    assert.deepEqual(writes[1].limit, { cpu: 0.07 });
    writes[1].done();
    await settle();
    assert.deepEqual([...order], ['read', 'other']);
    // Nothing under way and nothing to write (read and write share io's limits): admitted in the call.
    void phases.enter('read', () => order.push('read 2'));
    writes[2].done();
    await settle();
    void phases.enter('write', () => order.push('write'));
    assert.deepEqual(order, ['read', 'other', 'read 2', 'write']);
    assert.equal(writes.length, 3);
    phases.finish();
  });

  test("a phase runs with its class's quota and cores, and the invocation ends at its own", async () => {
    const clock = new ManualClock(0);
    const subject = new FakeSubject('i1', { cpu: 0.07 });
    const phases = microtask(clock).begin('a', subject, MAP, 0);
    await phases.enter('read');
    assert.deepEqual(subject.limits, [{ cpu: 0.25, cpus: '0' }]);
    await phases.enter('sort');
    assert.deepEqual(subject.limits.at(-1), { cpu: 1, cpus: '1' });
    await phases.enter('other'); // unmapped: its own share
    assert.deepEqual(subject.limits.at(-1), { cpu: 0.07 });
    await phases.enter('write');
    phases.finish();
    await settle();
    assert.deepEqual(subject.limits.slice(-2), [{ cpu: 0.25, cpus: '0' }, { cpu: 0.07 }]);
  });

  test('a class admits no more than its cores hold; the next waits until one leaves', async () => {
    const clock = new ManualClock(0);
    const scheduler = microtask(clock);
    // io: 0.25 vCPU each on one core → four at once.
    const invocations = Array.from({ length: 6 }, (_, i) =>
      scheduler.begin(`x${i}`, new FakeSubject(`i${i}`), MAP, 0),
    );
    const admitted: number[] = [];
    invocations.forEach((phases, i) => void phases.enter('read').then(() => admitted.push(i)));
    await settle();
    assert.deepEqual(admitted, [0, 1, 2, 3]);
    assert.deepEqual(scheduler.status().classes.io, {
      vcpu: 0.25,
      cores: [0],
      running: 4,
      queued: 2,
    });
    clock.advance(7);
    void invocations[1].enter('sort'); // leaves io: the first in the queue goes
    await settle();
    assert.deepEqual(admitted, [0, 1, 2, 3, 4]);
    clock.advance(3);
    invocations[0].finish();
    await settle();
    assert.deepEqual(admitted, [0, 1, 2, 3, 4, 5]);
    assert.equal(invocations[4].finish().microtasks[0].waitedMs, 7);
    assert.equal(invocations[5].finish().microtasks[0].waitedMs, 10);
  });

  test('a phase superseded while it queued ends without running', async () => {
    const clock = new ManualClock(0);
    const scheduler = microtask(clock);
    const holder = scheduler.begin('h', new FakeSubject('h'), MAP, 0);
    await holder.enter('sort'); // cpu: one at a time
    const subject = new FakeSubject('w');
    const waiter = scheduler.begin('w', subject, MAP, 0);
    const queued = waiter.enter('sort');
    await waiter.enter('other');
    await queued;
    assert.equal(scheduler.status().classes.cpu.queued, 0);
    assert.deepEqual(subject.limits, []); // it never got the cpu class, and "other" is its own share
  });
});

describe('dynamic allocation', () => {
  test('chooseMove gives a core to the class with queued demand from an idle one', () => {
    const move = chooseMove([
      { name: 'io', vcpu: 0.25, cores: [0], running: 0, queued: 0 },
      { name: 'cpu', vcpu: 1, cores: [1], running: 1, queued: 3 },
    ]);
    assert.deepEqual(move, { core: 0, from: 'io', to: 'cpu' });
  });

  test('chooseMove keeps a busy class its last core and leaves a fair split alone', () => {
    const busy = [
      { name: 'io', vcpu: 0.25, cores: [0], running: 1, queued: 0 },
      { name: 'cpu', vcpu: 1, cores: [1], running: 1, queued: 3 },
    ];
    assert.equal(chooseMove(busy), undefined);
    const fair = [
      { name: 'io', vcpu: 0.25, cores: [0], running: 4, queued: 4 },
      { name: 'cpu', vcpu: 1, cores: [1], running: 1, queued: 1 },
    ];
    assert.equal(chooseMove(fair), undefined);
    const none = [
      { name: 'io', vcpu: 0.25, cores: [0], running: 0, queued: 0 },
      { name: 'cpu', vcpu: 1, cores: [1], running: 0, queued: 0 },
    ];
    assert.equal(chooseMove(none), undefined);
  });

  test('chooseMove never takes a core that running microtasks hold, even for a class with none', () => {
    // Two sorts running on the cpu class's two cores: io waits for one to end.
    const full = [
      { name: 'io', vcpu: 0.25, cores: [], running: 0, queued: 2 },
      { name: 'cpu', vcpu: 1, cores: [0, 1], running: 2, queued: 2 },
    ];
    assert.equal(chooseMove(full), undefined);
    // One sort left running: the other core goes to io.
    const spare = [full[0], { ...full[1], running: 1, queued: 0 }];
    assert.deepEqual(chooseMove(spare), { core: 1, from: 'cpu', to: 'io' });
  });

  test('on a fake clock: cores follow demand, at most one move per moveIntervalMs', async () => {
    const clock = new ManualClock(0);
    const scheduler = microtask(clock, 'dynamic');
    const subjects = [0, 1, 2].map((i) => new FakeSubject(`c${i}`));
    const phases = subjects.map((s, i) => scheduler.begin(`c${i}`, s, MAP, 0));
    const admitted: number[] = [];
    phases.forEach((p, i) => void p.enter('sort').then(() => admitted.push(i)));
    await settle();
    assert.deepEqual(admitted, [0]);
    clock.advance(5); // first evaluation: io is idle, cpu has two waiting
    await settle();
    assert.deepEqual(scheduler.status().classes.cpu.cores, [0, 1]);
    assert.deepEqual(scheduler.status().classes.io.cores, []);
    assert.deepEqual(admitted, [0, 1]);
    // The running microtask's cpuset grew with its class.
    assert.deepEqual(subjects[0].limits.at(-1), { cpu: 1, cpus: '0,1' });
    // io demand appears, but running sorts hold both cores: no core moves under them.
    const reader = scheduler.begin('r', new FakeSubject('r'), MAP, 0);
    let read = false;
    void reader.enter('read').then(() => (read = true));
    clock.advance(10);
    await settle();
    assert.equal(read, false);
    assert.equal(scheduler.status().moves, 1);
    // Two cpu microtasks hold both cores: io waits for one to end, and then gets the core at once,
    // before the third sort can take it (a class with no core is served first).
    phases[0].finish();
    await settle();
    assert.equal(read, true);
    assert.deepEqual(admitted, [0, 1]);
    assert.deepEqual(scheduler.status().classes.cpu.cores, [0]);
    clock.advance(10);
    await settle();
    assert.equal(scheduler.status().moves, 2);
    assert.equal(read, true);
    assert.equal(scheduler.status().classes.io.cores.length, 1);
    scheduler.close();
  });
});

describe('scheduler config', () => {
  test('io and cpu exist by default; task is the default policy', () => {
    const config = parseConfig({});
    assert.equal(config.scheduler.policy, 'task');
    assert.deepEqual(config.scheduler.classes, CLASSES);
  });

  test('classes naming cores the node lacks, or sharing a core under dynamic, are refused', () => {
    const config = parseConfig({
      scheduler: { policy: 'microtask', classes: { cpu: { vcpu: 1, cores: [7] } } },
    });
    assert.throws(() => createScheduler(config.scheduler, new ManualClock(0), 2), /core 7/);
    assert.throws(
      () =>
        parseConfig({
          scheduler: { allocation: 'dynamic', classes: { cpu: { vcpu: 1, cores: [0] } } },
        }),
      /InvalidConfig|also class/,
    );
    assert.throws(
      () => parseConfig({ scheduler: { classes: { io: { vcpu: 2, cores: [0] } } } }),
      /vcpu must be at most/,
    );
  });
});

describe('CPU placement belongs to the scheduler', () => {
  const placement = (cpuset: { allCpus: number[]; set: string[] }) => ({
    policy: new PackWhenSequential(1),
    intervalMs: 1_000_000,
    instances: () => [],
    takePeakInFlight: () => 1,
    log: pino({ level: 'silent' }),
    daemonCpuset: async () => ({
      allCpus: cpuset.allCpus,
      setCpus: async (cpus: string) => void cpuset.set.push(cpus),
      release: async () => undefined,
    }),
  });

  test('the task scheduler places instances (pack-when-sequential), the one writer of cpusets', async () => {
    const cpuset = { allCpus: [0, 1], set: [] as string[] };
    const config = parseConfig({});
    const scheduler = createScheduler(
      config.scheduler,
      new ManualClock(0),
      2,
      undefined,
      placement(cpuset),
    );
    await scheduler.placement.start();
    assert.equal(scheduler.placement.status().active, true);
    assert.equal(scheduler.placement.startCpus(), '0,1');
    await (scheduler.placement as CpuPlacer).tick();
    assert.equal(scheduler.placement.status().current, 'pack');
    assert.deepEqual(cpuset.set, ['1'], 'the daemon is pinned to its core');
    await scheduler.placement.close();
    scheduler.close();
  });

  test('the microtask scheduler with daemonCore off has none: its classes set the cpusets', async () => {
    const cpuset = { allCpus: [0, 1], set: [] as string[] };
    const config = parseConfig({ scheduler: { policy: 'microtask', daemonCore: 'off' } });
    const scheduler = createScheduler(
      config.scheduler,
      new ManualClock(0),
      2,
      undefined,
      placement(cpuset),
    );
    await scheduler.placement.start();
    const status = scheduler.placement.status();
    assert.equal(status.active, false);
    assert.equal(status.policy, 'pack-when-sequential');
    assert.match(status.reason ?? '', /microtask scheduler places instances/);
    assert.equal(scheduler.placement.startCpus(), undefined);
    assert.deepEqual(cpuset.set, [], 'the daemon cpuset is never joined');
    scheduler.close();
  });
});

describe('the microtask scheduler pins the daemon to scheduler.daemonCore', () => {
  const placement = (cpuset: { set: string[]; released: number }, available = true) => ({
    policy: new PackWhenSequential(1),
    intervalMs: 1_000_000,
    instances: () => [],
    takePeakInFlight: () => 1,
    log: pino({ level: 'silent' }),
    daemonCpuset: async () =>
      available
        ? {
            allCpus: [0, 1],
            setCpus: async (cpus: string) => void cpuset.set.push(cpus),
            release: async () => void (cpuset.released += 1),
          }
        : undefined,
  });

  const pinnedScheduler = (
    daemonCore: number,
    cpuset: { set: string[]; released: number },
    available = true,
  ) =>
    createScheduler(
      parseConfig({ scheduler: { policy: 'microtask', daemonCore } }).scheduler,
      new ManualClock(0),
      2,
      undefined,
      placement(cpuset, available),
    );

  test('pinned at start, released at close; instances start on every core', async () => {
    const cpuset = { set: [] as string[], released: 0 };
    const scheduler = pinnedScheduler(1, cpuset);
    await scheduler.placement.start();
    assert.deepEqual(cpuset.set, ['1'], 'the daemon is pinned to its core');
    const status = scheduler.placement.status();
    assert.equal(status.active, true);
    assert.equal(status.daemonCpu, 1);
    assert.match(status.reason ?? '', /pinned to core 1/);
    assert.equal(scheduler.placement.startCpus(), '0,1', 'not inside the daemon cpuset');
    await scheduler.placement.close();
    assert.equal(cpuset.released, 1);
    scheduler.close();
  });

  test('without a daemon cpuset it says why and leaves instances alone', async () => {
    const cpuset = { set: [] as string[], released: 0 };
    const scheduler = pinnedScheduler(0, cpuset, false);
    await scheduler.placement.start();
    const status = scheduler.placement.status();
    assert.equal(status.active, false);
    assert.match(status.reason ?? '', /no cgroup cpuset/);
    assert.equal(scheduler.placement.startCpus(), undefined);
    await scheduler.placement.close();
    scheduler.close();
  });

  const dynamicPinned = (
    daemonCore: number | 'auto',
    cpuset: { set: string[]; released: number },
  ) => {
    const clock = new ManualClock(0);
    const scheduler = createScheduler(
      parseConfig({ scheduler: { policy: 'microtask', allocation: 'dynamic', daemonCore } })
        .scheduler,
      clock,
      2,
      undefined,
      placement(cpuset),
    );
    return { clock, scheduler };
  };

  test('auto (the microtask default) picks the heaviest class and its lowest core; a number follows the class that has it', () => {
    const classes = parseConfig({}).scheduler.classes;
    const policy = 'microtask';
    const auto = { core: 1, follows: 'cpu' };
    assert.deepEqual(daemonPinOf({ policy, daemonCore: 'auto', classes }, 2), auto);
    assert.deepEqual(daemonPinOf({ policy, classes }, 2), auto, 'unset is auto');
    assert.deepEqual(daemonPinOf({ policy, daemonCore: 0, classes }, 2), {
      core: 0,
      follows: 'io',
    });
    assert.deepEqual(daemonPinOf({ policy, daemonCore: 3, classes }, 4), { core: 3 });
    const wide = { ...classes, big: { vcpu: 2, cores: [3, 2] } };
    assert.deepEqual(daemonPinOf({ policy, classes: wide }, 4), { core: 2, follows: 'big' });
    assert.equal(daemonPinOf({ policy, daemonCore: 'off', classes }, 2), undefined);
    assert.equal(daemonPinOf({ policy: 'task', classes }, 2), undefined, 'the task policy: never');
    assert.equal(parseConfig({ scheduler: { daemonCore: 'off' } }).scheduler.daemonCore, 'off');
  });

  test("by default the microtask scheduler pins the daemon to the cpu class's core", async () => {
    const cpuset = { set: [] as string[], released: 0 };
    const scheduler = createScheduler(
      parseConfig({ scheduler: { policy: 'microtask' } }).scheduler,
      new ManualClock(0),
      2,
      undefined,
      placement(cpuset),
    );
    await scheduler.placement.start();
    assert.deepEqual(cpuset.set, ['1']);
    assert.equal(
      scheduler.placement.status().daemonFollows,
      undefined,
      'static: nothing to follow',
    );
    await scheduler.placement.close();
    scheduler.close();
  });

  test('under dynamic allocation the pin follows its class, at most once per DAEMON_REPIN_MS', async () => {
    const cpuset = { set: [] as string[], released: 0 };
    const { clock, scheduler } = dynamicPinned(0, cpuset);
    await scheduler.placement.start();
    assert.deepEqual(cpuset.set, ['0'], "the io class's core");
    assert.equal(scheduler.placement.status().daemonFollows, 'io');
    // Two sorts queue: io is idle, its core goes to cpu. io has no core: the daemon stays put.
    const subjects = [0, 1].map((i) => new FakeSubject(`c${i}`));
    const sorts = subjects.map((s, i) => scheduler.begin(`c${i}`, s, MAP, 0));
    for (const p of sorts) void p.enter('sort');
    clock.advance(5);
    await settle();
    assert.deepEqual(scheduler.status().classes.io.cores, []);
    assert.deepEqual(cpuset.set, ['0']);
    // A read waits; a sort ends and its core (1) goes to io, 10 ms after the pin: re-pinned at 100 ms.
    const reader = scheduler.begin('r', new FakeSubject('r'), MAP, 0);
    void reader.enter('read');
    clock.advance(5);
    sorts[0].finish();
    await settle();
    assert.deepEqual(scheduler.status().classes.io.cores, [1]);
    assert.deepEqual(cpuset.set, ['0'], 'not yet: the last pin was 10 ms ago');
    assert.equal(scheduler.placement.status().daemonCpu, 0);
    clock.advanceTo(99);
    await settle();
    assert.deepEqual(cpuset.set, ['0']);
    clock.advanceTo(100);
    await settle();
    assert.deepEqual(cpuset.set, ['0', '1'], 'followed io to core 1');
    const status = scheduler.placement.status();
    assert.equal(status.daemonCpu, 1);
    assert.equal(status.daemonRepins, 1);
    assert.match(status.reason ?? '', /pinned to core 1, following class io/);
    // Long after: a move is followed at once, and a core still the class's is kept.
    reader.finish();
    sorts[1].finish();
    clock.advanceTo(500);
    const more = [2, 3].map((i) => scheduler.begin(`d${i}`, new FakeSubject(`d${i}`), MAP, 0));
    for (const p of more) void p.enter('sort');
    clock.advance(5); // io idle: core 1 goes to cpu; io has none, the daemon stays on 1
    await settle();
    assert.deepEqual(scheduler.status().classes.cpu.cores, [0, 1]);
    assert.deepEqual(cpuset.set, ['0', '1']);
    for (const p of more) p.finish();
    await scheduler.placement.close();
    assert.equal(cpuset.released, 1);
    scheduler.close();
  });

  test('re-pins inside one window are folded into one write, to the core wanted last', async () => {
    const cpuset = { set: [] as string[], released: 0 };
    const { clock, scheduler } = dynamicPinned('auto', cpuset);
    await scheduler.placement.start();
    const pin = scheduler.placement as DaemonPin;
    assert.equal(pin.follows, 'cpu');
    pin.follow([0]);
    pin.follow([1, 0]); // core 0 wanted now and still the class's
    pin.follow([1]);
    clock.advanceTo(100);
    await settle();
    assert.deepEqual(
      cpuset.set,
      ['1'],
      'wanted back on 1 before the window ended: nothing written',
    );
    pin.follow([0]); // the window is over: at once
    await settle();
    assert.deepEqual(cpuset.set, ['1', '0']);
    clock.advanceTo(250);
    await settle();
    assert.deepEqual(cpuset.set, ['1', '0']);
    await scheduler.placement.close();
    pin.follow([1]);
    clock.advanceTo(1000);
    await settle();
    assert.deepEqual(cpuset.set, ['1', '0'], 'closed: no more writes');
    scheduler.close();
  });

  test('refused under the task scheduler, or naming a core the node lacks', () => {
    assert.throws(() => parseConfig({ scheduler: { daemonCore: 1 } }), /only the microtask/);
    const config = parseConfig({ scheduler: { policy: 'microtask', daemonCore: 2 } });
    assert.throws(
      () => createScheduler(config.scheduler, new ManualClock(0), 2),
      /daemonCore is core 2/,
    );
  });
});
