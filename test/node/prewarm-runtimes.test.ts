import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseConfig } from '../../src/config.ts';
import { PetriError } from '../../src/errors.ts';
import {
  ManualClock,
  PREWARM_REFILL_DELAY_MS,
  PREWARM_RETRY_MS,
  PrewarmRuntimes,
  type Instance,
  type PrewarmRuntimeDeps,
} from '../../src/node/index.ts';
import type { PrewarmSandbox, PrewarmSpec, SandboxSpec } from '../../src/sandbox/index.ts';
import { parseSpec } from '../../src/spec/index.ts';
import type { FunctionRecord } from '../../src/store/index.ts';
import { FakeDriver, FakeSandbox } from '../helpers/fake-driver.ts';

// The prewarm sets' bookkeeping on a fake driver and a manual clock: which
// functions match, refills, memory held, reactive growth and ttl, clean-up.

class PrewarmDriver extends FakeDriver {
  // Ready one tick after the start, as a real host answers on a later turn than its spawn.
  override startDelayMs = 1;
  readonly prewarms: (FakeSandbox & PrewarmSandbox)[] = [];
  async createPrewarm(spec: PrewarmSpec): Promise<PrewarmSandbox> {
    const full: SandboxSpec = {
      ...spec,
      functionName: '',
      version: 0,
      codeDir: '/slot',
      cwd: '/slot',
      entry: { runtime: 'node', bundle: '', exportName: '' },
      env: {},
    };
    const sandbox = Object.assign((await this.create(full)) as FakeSandbox, {
      codeMount: '/slot',
      bindCode: async () => undefined,
    });
    this.prewarms.push(sandbox);
    return sandbox;
  }
  prewarmUnsupported(): string | undefined {
    return undefined;
  }
}

function record(name: string, spec: object = {}): FunctionRecord {
  return {
    name,
    version: 1,
    spec: parseSpec({ name, runtime: 'node', memoryMb: 128, ...spec }),
    codeDir: '/nonexistent',
    createdAt: 0,
    updatedAt: 0,
  };
}

function setup(prewarm: unknown, budgetMb = 1024) {
  const clock = new ManualClock();
  const driver = new PrewarmDriver(clock);
  const memory = { reserved: 0, budget: budgetMb };
  const bound: { name: string; sandbox: PrewarmSandbox }[] = [];
  let made = 0;
  const config = parseConfig({ prewarm });
  const deps: PrewarmRuntimeDeps = {
    config: config.prewarm,
    driver,
    clock,
    startTimeoutMs: 1000,
    spec: (entry) => ({
      instanceId: `prewarm-${(made += 1)}`,
      runtime: 'node',
      resources: {
        cpu: 0.1,
        initCpu: 1,
        memoryMb: entry.memoryMb,
        bandwidthMbit: 10,
        burstBytes: 1,
        pidsMax: 1,
        tmpSizeMb: 1,
      },
      network: { inbound: false, egress: entry.egress },
    }),
    bind: async (rec, sandbox) => {
      bound.push({ name: rec.name, sandbox });
      return { id: sandbox.id } as unknown as Instance;
    },
    reserveMemory: (mb) => {
      if (memory.reserved + mb > memory.budget) return false;
      memory.reserved += mb;
      return true;
    },
    releaseMemory: (mb) => {
      memory.reserved -= mb;
    },
    warn: () => undefined,
  };
  const runtimes = new PrewarmRuntimes(deps);
  /** Runs timers due in the next `ms` (+ a few ticks of start), one due time at a time, letting promises run between. */
  const settle = async (ms = 0): Promise<void> => {
    const until = clock.now() + ms + 10;
    for (;;) {
      await new Promise((resolve) => setImmediate(resolve));
      const due = clock.nextDue();
      if (due === undefined || due > until) return;
      clock.advanceTo(due);
    }
  };
  return { clock, driver, memory, bound, runtimes, settle, deps };
}

const STATIC = [{ runtime: 'node', memoryMb: 128, count: 2 }];

describe('prewarmed runtimes', () => {
  it('keeps count ready, each holding its memory, and offers them only to matching functions', async () => {
    const { runtimes, memory, settle } = setup(STATIC);
    runtimes.start();
    await settle();
    assert.equal(runtimes.readyFor(record('f')), 2);
    assert.equal(memory.reserved, 256);
    assert.equal(runtimes.memoryMb(), 256);
    assert.equal(runtimes.readyFor(record('big', { memoryMb: 256 })), 0);
    assert.equal(runtimes.readyFor(record('out', { network: { egress: true } })), 0);
    assert.equal(runtimes.readyFor(record('in', { network: { inbound: [8080] } })), 0);
    assert.equal(runtimes.readyFor(record('x', { runtime: 'exec', command: ['true'] })), 0);
    assert.deepEqual(runtimes.views()[0], {
      runtime: 'node',
      memoryMb: 128,
      egress: false,
      mode: 'static',
      ready: 2,
      starting: 0,
      target: 2,
      bound: 0,
    });
  });

  it('a claim hands over the runtime and its memory; the set refills once the bind is done', async () => {
    const { runtimes, memory, bound, settle, driver } = setup(STATIC);
    runtimes.start();
    await settle();
    const claim = runtimes.claim(record('f'))!;
    assert.equal(claim.memoryMb, 128);
    assert.equal(runtimes.readyFor(record('f')), 1);
    // The caller now counts the claimed runtime's 128 MB itself.
    memory.reserved -= claim.memoryMb;
    await claim.start();
    assert.equal(bound[0]!.name, 'f');
    // The replacement waits a little, off the bound instance's first response.
    await settle();
    assert.equal(runtimes.readyFor(record('f')), 1);
    await settle(PREWARM_REFILL_DELAY_MS);
    assert.equal(runtimes.readyFor(record('f')), 2);
    assert.equal(memory.reserved, 256);
    assert.equal(driver.prewarms.length, 3);
    // A bound runtime is never offered again: the next bind gets another sandbox.
    const next = runtimes.claim(record('g'))!;
    memory.reserved -= next.memoryMb;
    await next.start();
    assert.notEqual(bound[1]!.sandbox.id, bound[0]!.sandbox.id);
  });

  it('a cancelled claim goes back to the set unbound', async () => {
    const { runtimes, memory, settle, driver } = setup(STATIC);
    runtimes.start();
    await settle();
    const claim = runtimes.claim(record('f'))!;
    memory.reserved -= claim.memoryMb;
    claim.cancel();
    assert.equal(runtimes.readyFor(record('f')), 2);
    assert.equal(memory.reserved, 256);
    assert.equal(driver.prewarms.length, 2);
  });

  it('starts only what free memory allows and tries again later', async () => {
    const { runtimes, memory, settle } = setup(STATIC, 128);
    runtimes.start();
    await settle();
    assert.equal(runtimes.readyFor(record('f')), 1);
    memory.budget = 256;
    await settle(PREWARM_RETRY_MS);
    assert.equal(runtimes.readyFor(record('f')), 2);
  });

  it('a ready runtime that dies leaves the set, gives its memory back and is replaced', async () => {
    const { runtimes, memory, settle, driver } = setup(STATIC);
    runtimes.start();
    await settle();
    await driver.prewarms[0]!.destroy();
    assert.equal(runtimes.readyFor(record('f')), 1);
    assert.equal(memory.reserved, 128);
    await settle(PREWARM_RETRY_MS);
    assert.equal(runtimes.readyFor(record('f')), 2);
  });

  it('reactive: grows by one per bind up to max, and shrinks to min after ttl unbound', async () => {
    const { runtimes, memory, settle } = setup([
      { runtime: 'node', memoryMb: 128, count: 1, reactive: { min: 1, max: 3, ttlMs: 5000 } },
    ]);
    runtimes.start();
    await settle();
    for (let i = 0; i < 3; i++) {
      const claim = runtimes.claim(record('f'))!;
      memory.reserved -= claim.memoryMb;
      await claim.start();
      await settle(PREWARM_REFILL_DELAY_MS);
    }
    assert.equal(runtimes.views()[0]!.target, 3);
    assert.equal(runtimes.readyFor(record('f')), 3);
    await settle(5000);
    const view = runtimes.views()[0]!;
    assert.equal(view.ready, 1);
    assert.equal(view.target, 1);
    assert.equal(memory.reserved, 128);
    await settle(50_000);
    assert.equal(runtimes.views()[0]!.ready, 1, 'never below min');
  });

  it('close stops every unbound runtime and gives all memory back', async () => {
    const { runtimes, memory, settle, driver } = setup(STATIC);
    runtimes.start();
    await settle();
    await runtimes.close();
    assert.equal(driver.live().length, 0);
    assert.equal(memory.reserved, 0);
    assert.equal(runtimes.readyFor(record('f')), 0);
  });

  it('a driver that cannot make prewarmed runtimes makes the config invalid', () => {
    const config = parseConfig({ prewarm: STATIC });
    assert.throws(
      () =>
        new PrewarmRuntimes({
          ...setup([]).deps,
          config: config.prewarm,
          driver: new FakeDriver(),
        }),
      (err: unknown) => err instanceof PetriError && err.code === 'InvalidConfig',
    );
  });
});
