/**
 * The SandboxDriver conformance suite: behaviour the pool relies on from any
 * driver — the process driver with or without isolation layers, and the
 * in-memory FakeDriver the pool tests run on (so the fake stays a faithful
 * stand-in). Each driver's test file calls `describeDriverCases`.
 *
 * Sandboxes run the conventions handler of test/helpers/fake-driver.ts:
 *   {sleepMs} waits, {spinMs} uses that much CPU time, {crash: true} exits with code 3
 *   after printing "boom" to stderr, {oom: true} outgrows its memory,
 *   {fail: "message"} throws; every other invocation prints
 *   "handling <id>" and answers with its event.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, test } from 'node:test';
import type { FromInstance, LogStream } from '../../src/runtime/index.ts';
import type {
  Sandbox,
  SandboxDriver,
  SandboxExit,
  SandboxSpec,
  Usage,
} from '../../src/sandbox/index.ts';
import { requireRoot, type MechanismCheck } from '../helpers/root.ts';
import { processesOf } from '../helpers/traces.ts';
import {
  assertCleanOutcomes,
  assertOutcome,
  CLEAN_RUN_TEST,
  isolatedRun,
  runPlanned,
  type CaseOutcome,
  type PlannedCase,
  type SubjectRef,
} from './isolated.ts';

export interface DriverSubject {
  readonly kind: 'driver';
  readonly name: string;
  /** Builds what sandboxes need, once per process (host script, handler bundle). */
  setup?(): Promise<void>;
  /** A fresh driver for node `key`: drivers made with one key are one node (state dir, tag). */
  make(key: string): Promise<SandboxDriver>;
  /** A spec that runs the conventions handler as instance `id`. */
  spec(key: string, id: string): SandboxSpec;
  /** Why this driver cannot run here; absent when it runs anywhere. */
  missing?: MechanismCheck;
  /** The mechanisms `capabilities()` must report, every one active. */
  mechanisms: string[];
  /** Sandboxes are real processes: a live pid, CPU time and memory measured. */
  processes: boolean;
  /** Sandboxes have a memory limit that `{oom: true}` runs into. */
  memoryLimit: boolean;
  /** Sandboxes can be frozen (`freezable`, `freeze`, `thaw`): paused instances. */
  freezer?: boolean;
  /** The node tag of `key`, whose namespaces an isolated run checks for leftovers. */
  nodeTag(key: string): string;
  /** Runs a driver for `key` that starts sandboxes and dies without cleaning up; their ids. */
  crash(key: string): Promise<string[]>;
  /** True when a crash leaves per-instance state (cgroups, namespaces) for reconcile. */
  crashLeavesTraces: boolean;
  /** Per-instance state of node `key` on the system, as identities. */
  instanceLeftovers(key: string): Promise<string[]>;
  /** Everything of node `key` on the system, node-wide resources included. */
  leftovers(key: string): Promise<string[]>;
  /** Removes whatever a failed case left of node `key` (after every case; a no-op after a pass). */
  cleanup?(key: string): Promise<void>;
}

type Seen =
  | { kind: 'message'; message: FromInstance }
  | { kind: 'output'; stream: LogStream; line: string }
  | { kind: 'exit'; exit: SandboxExit };

type Answer = Extract<FromInstance, { type: 'result' | 'error' }>;

/** Records every event of one sandbox, in order, and waits for the ones a case expects. */
class Watch {
  readonly seen: Seen[] = [];
  private readonly waiters = new Set<() => void>();

  constructor(readonly sandbox: Sandbox) {
    sandbox.on('message', (message) => this.push({ kind: 'message', message }));
    sandbox.on('output', (stream, line) => this.push({ kind: 'output', stream, line }));
    sandbox.on('exit', (exit) => this.push({ kind: 'exit', exit }));
  }

  private push(event: Seen): void {
    this.seen.push(event);
    for (const waiter of [...this.waiters]) waiter();
  }

  /** The first event `pick` accepts, waiting for it up to `timeoutMs`. */
  until<T>(what: string, pick: (event: Seen) => T | undefined, timeoutMs = 20_000): Promise<T> {
    return new Promise((resolve, reject) => {
      const settle = (): void => {
        this.waiters.delete(check);
        clearTimeout(timer);
      };
      // Called from the sandbox's emit: a throwing `pick` must reject, not escape into it.
      const check = (): void => {
        try {
          for (const event of this.seen) {
            const value = pick(event);
            if (value === undefined) continue;
            settle();
            resolve(value);
            return;
          }
        } catch (error) {
          settle();
          reject(error instanceof Error ? error : new Error(String(error)));
        }
      };
      const timer = setTimeout(() => {
        settle();
        reject(new Error(`no ${what} within ${timeoutMs} ms; saw ${JSON.stringify(this.seen)}`));
      }, timeoutMs);
      this.waiters.add(check);
      check();
    });
  }

  ready(): Promise<void> {
    return this.until('ready', (event) => {
      if (event.kind === 'exit') throw new Error(`exited before ready: ${JSON.stringify(event)}`);
      if (event.kind === 'message' && event.message.type === 'init-error')
        throw new Error(`init error: ${event.message.message}`);
      return event.kind === 'message' && event.message.type === 'ready' ? true : undefined;
    }).then(() => undefined);
  }

  answer(id: string): Promise<Answer> {
    return this.until(`answer to ${id}`, (event) => answerOf(event, id));
  }

  exit(): Promise<SandboxExit> {
    return this.until('exit', (event) => (event.kind === 'exit' ? event.exit : undefined));
  }

  exits(): SandboxExit[] {
    return this.seen.flatMap((event) => (event.kind === 'exit' ? [event.exit] : []));
  }

  answers(id: string): Answer[] {
    return this.seen.flatMap((event) => answerOf(event, id) ?? []);
  }

  /** Events after the first exit: there must be none. */
  afterExit(): Seen[] {
    const at = this.seen.findIndex((event) => event.kind === 'exit');
    return at < 0 ? [] : this.seen.slice(at + 1);
  }
}

function answerOf(event: Seen, id: string): Answer | undefined {
  if (event.kind !== 'message') return undefined;
  const { message } = event;
  return (message.type === 'result' || message.type === 'error') && message.id === id
    ? message
    : undefined;
}

function invoke(sandbox: Sandbox, id: string, event: unknown): void {
  sandbox.send({ type: 'invoke', id, event, deadline: Date.now() + 60_000 });
}

/** One driver for a case: made and reconciled as the node does, closed and checked after. */
interface Node {
  driver: SandboxDriver;
  /** Creates sandbox `<key>-<name>` and waits for `ready`. */
  start(name: string): Promise<Watch>;
  /** Creates sandbox `<key>-<name>` without waiting. */
  create(name: string): Promise<Watch>;
}

async function withDriver(
  subject: DriverSubject,
  key: string,
  body: (node: Node) => Promise<void>,
): Promise<void> {
  const driver = await subject.make(key);
  await driver.reconcile();
  const made: Sandbox[] = [];
  const create = async (name: string): Promise<Watch> => {
    const sandbox = await driver.create(subject.spec(key, `${key}-${name}`));
    made.push(sandbox);
    return new Watch(sandbox);
  };
  try {
    await body({
      driver,
      create,
      start: async (name) => {
        const watch = await create(name);
        await watch.ready();
        return watch;
      },
    });
  } finally {
    await Promise.all(made.map((sandbox) => sandbox.destroy()));
    await driver.close();
  }
  assert.deepEqual(await subject.leftovers(key), [], 'nothing of the node is left after close');
}

function assertCounters(usage: Usage): void {
  for (const field of ['cpuMs', 'peakMemoryBytes', 'netRxBytes', 'netTxBytes'] as const) {
    const value = usage[field];
    assert.ok(Number.isFinite(value) && value >= 0, `${field} = ${value}`);
  }
}

async function eventually(what: string, check: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await sleep(20);
  }
}

async function assertGone(subject: DriverSubject, sandbox: Sandbox): Promise<void> {
  if (!subject.processes) return;
  assert.ok(sandbox.pid, 'it had a pid');
  assert.equal(fs.existsSync(`/proc/${sandbox.pid}`), false, `process ${sandbox.pid} is gone`);
  assert.deepEqual(await processesOf(sandbox.id), [], 'no process of the instance is left');
}

interface DriverCase {
  name: string;
  /** Whether the case applies to the subject at all (not a missing mechanism: a feature it lacks). */
  applies?(subject: DriverSubject): boolean;
  run(subject: DriverSubject, key: string): Promise<void>;
}

const EVENT = { greeting: 'hello', list: [1, 2, 3], nested: { ok: true }, text: 'ünïcødé' };

export const driverCases: DriverCase[] = [
  {
    name: 'capabilities name the driver and report every mechanism active',
    run: (subject, key) =>
      withDriver(subject, key, async ({ driver }) => {
        const report = driver.capabilities();
        assert.equal(report.driver, driver.name);
        assert.deepEqual(
          report.mechanisms.map((m) => m.name),
          subject.mechanisms,
        );
        const inactive = report.mechanisms.filter((m) => !m.active);
        assert.deepEqual(
          inactive.map((m) => `${m.name}: ${m.reason}`),
          [],
        );
      }),
  },
  {
    name: 'a new sandbox says ready first, and its process runs',
    run: (subject, key) =>
      withDriver(subject, key, async (node) => {
        const watch = await node.start('ready');
        const first = watch.seen.find((event) => event.kind === 'message');
        assert.deepEqual(first, { kind: 'message', message: { type: 'ready' } });
        assert.equal(watch.sandbox.id, `${key}-ready`);
        if (subject.processes) {
          assert.ok(watch.sandbox.pid && fs.existsSync(`/proc/${watch.sandbox.pid}`));
          assert.ok((await processesOf(watch.sandbox.id)).length > 0);
        }
      }),
  },
  {
    name: 'an invoke comes back as a result with the same value, matched by id',
    run: (subject, key) =>
      withDriver(subject, key, async (node) => {
        const watch = await node.start('echo');
        invoke(watch.sandbox, 'slow', { ...EVENT, sleepMs: 300 });
        invoke(watch.sandbox, 'quick', EVENT);
        assert.deepEqual(await watch.answer('quick'), {
          type: 'result',
          id: 'quick',
          value: EVENT,
        });
        const slow = await watch.answer('slow');
        assert.deepEqual(slow, { type: 'result', id: 'slow', value: { ...EVENT, sleepMs: 300 } });
        const order = watch.seen.flatMap((e) => (e.kind === 'message' ? [e.message] : []));
        assert.ok(order.indexOf(slow) > order.findIndex((m) => 'id' in m && m.id === 'quick'));
      }),
  },
  {
    name: 'a handler that throws answers with a HandlerError, and the sandbox keeps serving',
    run: (subject, key) =>
      withDriver(subject, key, async (node) => {
        const watch = await node.start('fail');
        invoke(watch.sandbox, 'bad', { fail: 'no such thing' });
        const answer = await watch.answer('bad');
        assert.equal(answer.type, 'error');
        assert.equal(answer.type === 'error' && answer.code, 'HandlerError');
        assert.equal(answer.type === 'error' && answer.message, 'no such thing');
        invoke(watch.sandbox, 'good', { n: 1 });
        assert.deepEqual(await watch.answer('good'), {
          type: 'result',
          id: 'good',
          value: { n: 1 },
        });
        assert.deepEqual(watch.exits(), []);
      }),
  },
  {
    name: 'an instance that exits with code 3 reports code 3 and its stderr, and answers nothing',
    run: (subject, key) =>
      withDriver(subject, key, async (node) => {
        const watch = await node.start('crash');
        invoke(watch.sandbox, 'crash', { crash: true });
        const exit = await watch.exit();
        assert.deepEqual(
          { code: exit.code, signal: exit.signal, oomKilled: exit.oomKilled },
          { code: 3, signal: null, oomKilled: false },
        );
        assert.match(exit.stderrTail, /boom/);
        assert.ok(
          watch.seen.some((e) => e.kind === 'output' && e.stream === 'stderr' && e.line === 'boom'),
          "the stderr line also reached 'output'",
        );
        assert.deepEqual(watch.answers('crash'), []);
        await assertGone(subject, watch.sandbox);
      }),
  },
  {
    name: 'destroy kills the instance: one exit with SIGKILL, and its process is gone',
    run: (subject, key) =>
      withDriver(subject, key, async (node) => {
        const watch = await node.start('kill');
        invoke(watch.sandbox, 'busy', { sleepMs: 60_000 });
        await watch.sandbox.destroy();
        const exits = watch.exits();
        assert.equal(exits.length, 1, 'the exit is out by the time destroy resolves');
        assert.deepEqual(
          { code: exits[0].code, signal: exits[0].signal, oomKilled: exits[0].oomKilled },
          { code: null, signal: 'SIGKILL', oomKilled: false },
        );
        assert.deepEqual(watch.answers('busy'), []);
        await assertGone(subject, watch.sandbox);
      }),
  },
  {
    name: 'destroy twice, even at once, ends the instance with one exit',
    run: (subject, key) =>
      withDriver(subject, key, async (node) => {
        const watch = await node.start('twice');
        await Promise.all([watch.sandbox.destroy(), watch.sandbox.destroy()]);
        await watch.sandbox.destroy();
        await sleep(100);
        assert.equal(watch.exits().length, 1);
      }),
  },
  {
    name: 'destroy after the instance exited on its own adds no exit, and later sends are ignored',
    run: (subject, key) =>
      withDriver(subject, key, async (node) => {
        const watch = await node.start('exited');
        invoke(watch.sandbox, 'crash', { crash: true });
        await watch.exit();
        await watch.sandbox.destroy();
        invoke(watch.sandbox, 'late', EVENT);
        await sleep(200);
        assert.equal(watch.exits().length, 1);
        assert.deepEqual(watch.afterExit(), []);
      }),
  },
  {
    name: 'nothing arrives after the exit, not even from an invocation still running',
    run: (subject, key) =>
      withDriver(subject, key, async (node) => {
        const watch = await node.start('silent');
        invoke(watch.sandbox, 'running', { sleepMs: 300 });
        await sleep(50);
        await watch.sandbox.destroy();
        await sleep(600);
        assert.deepEqual(watch.afterExit(), []);
      }),
  },
  {
    name: 'a sandbox destroyed before it is ready exits once and says nothing after',
    run: (subject, key) =>
      withDriver(subject, key, async (node) => {
        const watch = await node.create('early');
        await watch.sandbox.destroy();
        await sleep(300);
        assert.equal(watch.exits().length, 1);
        assert.deepEqual(watch.afterExit(), []);
        await assertGone(subject, watch.sandbox);
      }),
  },
  {
    name: "a line the instance prints on stdout reaches 'output'",
    run: (subject, key) =>
      withDriver(subject, key, async (node) => {
        const watch = await node.start('talk');
        invoke(watch.sandbox, 'talk', {});
        await watch.until('its output line', (e) =>
          e.kind === 'output' && e.stream === 'stdout' && e.line === 'handling talk'
            ? e
            : undefined,
        );
        assert.equal((await watch.answer('talk')).type, 'result');
      }),
  },
  {
    name: 'usage counters are numbers ≥ 0, and CPU time grows with a CPU-bound invoke',
    run: (subject, key) =>
      withDriver(subject, key, async (node) => {
        const watch = await node.start('usage');
        const before = await watch.sandbox.usage();
        assertCounters(before);
        const spinMs = 400;
        invoke(watch.sandbox, 'spin', { spinMs });
        await watch.answer('spin');
        const after = await watch.sandbox.usage({ resetPeak: true });
        assertCounters(after);
        // The handler spins until it has used spinMs of CPU; /proc counts in 10 ms ticks.
        const grew = after.cpuMs - before.cpuMs;
        assert.ok(grew >= spinMs * 0.9, `CPU grew by ${grew} ms over a ${spinMs} ms spin`);
        if (subject.processes) assert.ok(after.peakMemoryBytes > 0, 'a process uses memory');
        assertCounters(await watch.sandbox.usage());
      }),
  },
  {
    name: 'an instance over its memory limit exits with oomKilled, and answers nothing',
    applies: (subject) => subject.memoryLimit,
    run: (subject, key) =>
      withDriver(subject, key, async (node) => {
        const watch = await node.start('oom');
        invoke(watch.sandbox, 'oom', { oom: true });
        const exit = await watch.exit();
        assert.equal(exit.oomKilled, true, JSON.stringify(exit));
        assert.deepEqual(watch.answers('oom'), []);
      }),
  },
  {
    name: 'a frozen sandbox answers nothing and uses no CPU until thawed, then answers',
    applies: (subject) => subject.freezer === true,
    run: (subject, key) =>
      withDriver(subject, key, async (node) => {
        const watch = await node.start('frozen');
        const { sandbox } = watch;
        assert.equal(sandbox.freezable, true);
        await sandbox.freeze!();
        const before = await sandbox.usage();
        invoke(sandbox, 'held', EVENT);
        await sleep(300);
        assert.deepEqual(watch.answers('held'), [], 'a frozen instance does not run');
        const after = await sandbox.usage();
        // Two reads of the same frozen cgroup: nothing at all may have run in between.
        assert.equal(after.cpuMs, before.cpuMs, 'no CPU time while frozen');
        await sandbox.thaw!();
        assert.deepEqual(await watch.answer('held'), { type: 'result', id: 'held', value: EVENT });
      }),
  },
  {
    name: 'destroy ends a frozen sandbox: one exit with SIGKILL, and its process is gone',
    applies: (subject) => subject.freezer === true,
    run: (subject, key) =>
      withDriver(subject, key, async (node) => {
        const watch = await node.start('frozen-kill');
        await watch.sandbox.freeze!();
        await watch.sandbox.destroy();
        const exits = watch.exits();
        assert.equal(exits.length, 1);
        assert.equal(exits[0].signal, 'SIGKILL');
        await assertGone(subject, watch.sandbox);
      }),
  },
  {
    name: 'a fresh driver reconciles away what a crashed one left, and new sandboxes work after it',
    async run(subject, key) {
      const crashed = await subject.crash(key);
      assert.ok(crashed.length > 0);
      if (subject.processes) {
        for (const id of crashed) {
          await eventually(`instance ${id} dies with its driver`, async () => {
            return (await processesOf(id)).length === 0;
          });
        }
      }
      const left = await subject.instanceLeftovers(key);
      if (subject.crashLeavesTraces) assert.ok(left.length > 0, 'the crash left something');
      await withDriver(subject, key, async (node) => {
        const now = await subject.instanceLeftovers(key);
        assert.deepEqual(
          left.filter((trace) => now.includes(trace)),
          [],
          'reconcile removed the crashed instances',
        );
        const watch = await node.start('after-crash');
        invoke(watch.sandbox, 'after', EVENT);
        assert.deepEqual(await watch.answer('after'), {
          type: 'result',
          id: 'after',
          value: EVENT,
        });
      });
    },
  },
];

/** Runs one case, then removes what a failure may have left. */
async function runCase(c: DriverCase, subject: DriverSubject, key: string): Promise<void> {
  try {
    await c.run(subject, key);
  } finally {
    await subject.cleanup?.(key);
  }
}

/** Runs the named cases in this process (the child side of an isolated run). */
export async function runDriverCases(
  subject: DriverSubject,
  plan: PlannedCase[],
): Promise<Record<string, CaseOutcome>> {
  await subject.setup?.();
  return runPlanned(plan, async (name, key) => {
    const body = driverCases.find((c) => c.name === name);
    assert.ok(body, `no driver case "${name}"`);
    await runCase(body, subject, key);
  });
}

/**
 * Registers every driver case that applies to `subject`. With `isolated`,
 * they all run in one child inside a test namespace (a driver with the
 * network layer builds a bridge, which must never be in this host's
 * namespace); otherwise here.
 */
export function describeDriverCases(
  subject: DriverSubject,
  options: { isolated?: SubjectRef } = {},
): void {
  const base = 'c' + randomBytes(3).toString('hex');
  const keyed = driverCases
    .filter((c) => c.applies?.(subject) ?? true)
    .map((c, i) => ({ ...c, key: `${base}${String.fromCharCode(97 + i)}` }));
  const isolated =
    options.isolated &&
    isolatedRun(
      options.isolated,
      keyed.map(({ name, key }) => ({ name, key })),
      keyed.map((c) => subject.nodeTag(c.key)),
    );
  describe(`SandboxDriver conformance: ${subject.name}`, () => {
    let setUp: Promise<void> | undefined;
    for (const c of keyed) {
      test(c.name, async (t) => {
        if (subject.missing && !requireRoot(t, subject.missing)) return;
        if (isolated) return assertOutcome(t, await isolated(), c.name);
        setUp ??= subject.setup?.() ?? Promise.resolve();
        await setUp;
        await runCase(c, subject, c.key);
      });
    }
    if (isolated) {
      test(CLEAN_RUN_TEST, async (t) => {
        if (subject.missing && !requireRoot(t, subject.missing)) return;
        assertCleanOutcomes(await isolated());
      });
    }
  });
}
