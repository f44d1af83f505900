import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseConfig } from '../../src/config.ts';
import { PetriError } from '../../src/errors.ts';
import { ManualClock } from '../../src/node/clock.ts';
import { GroupManager, type MembershipEvent } from '../../src/node/groups.ts';
import type { Instance } from '../../src/node/instance.ts';
import type { GroupMembership, SandboxExit } from '../../src/sandbox/index.ts';
import { parseSpec } from '../../src/spec/index.ts';
import type { FunctionRecord } from '../../src/store/index.ts';

/** A member instance with an address and an exit the test can trigger. */
interface FakeMember {
  instance: Instance;
  membership: GroupMembership;
  exit(code: number): void;
  stopped: boolean;
}

function record(name: string, runtime: 'service' | 'node' = 'service'): FunctionRecord {
  const spec = parseSpec({ name, runtime, command: ['serve'], memoryMb: 128 });
  return { name, version: 1, spec, codeDir: '/x', createdAt: 0, updatedAt: 0 };
}

function setup(options: { budgetMb?: number; failRank?: number } = {}) {
  const clock = new ManualClock();
  let freeMb = options.budgetMb ?? 1024;
  const started: FakeMember[] = [];
  let address = 2;
  const groups = new GroupManager({
    config: parseConfig({}).groups,
    clock,
    requireFunction: (name) => {
      if (name === 'plain') return record(name, 'node');
      if (name !== 'svc') throw new PetriError('FunctionNotFound', name);
      return record(name);
    },
    startMember: async (_record, membership, onCreated) => {
      const listeners: ((exit: SandboxExit) => void)[] = [];
      const fake: FakeMember = {
        membership,
        stopped: false,
        exit: (code) => {
          for (const listener of listeners)
            listener({ code, signal: null, oomKilled: false, stderrTail: '' });
        },
        instance: undefined as unknown as Instance,
      };
      fake.instance = {
        id: `svc-${membership.rank}`,
        sandbox: {
          address: `10.213.0.${address++}`,
          on: (_event: string, listener: (exit: SandboxExit) => void) => listeners.push(listener),
        },
        stop: async () => {
          fake.stopped = true;
          fake.exit(137);
        },
      } as unknown as Instance;
      started.push(fake);
      onCreated(fake.instance);
      await Promise.resolve();
      if (membership.rank === options.failRank) throw new PetriError('Timeout', 'did not start');
      return fake.instance;
    },
    reserveMemory: (mb) => {
      if (mb > freeMb) return false;
      freeMb -= mb;
      return true;
    },
    releaseMemory: (mb) => {
      freeMb += mb;
    },
    coordinator: async () => 'http://10.213.0.1:7946',
  });
  return { groups, clock, started, freeMb: () => freeMb };
}

describe('GroupManager', () => {
  it('holds every join until the barrier is reached, then tells each its rank and peers', async () => {
    const { groups, started } = setup();
    await groups.create({ function: 'svc', size: 3, barrier: 3, name: 'g' });
    const addressOf = (rank: number) => started[rank].instance.sandbox.address!;
    let released = 0;
    const joins = [0, 1].map((rank) =>
      groups.join('g', rank).then((answer) => {
        released += 1;
        return answer;
      }),
    );
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(released, 0, 'two of three joined: the barrier holds');
    assert.equal(groups.get('g').members[0].state, 'waiting');
    const last = await groups.join('g', 2);
    const answers = [...(await Promise.all(joins)), last];
    assert.deepEqual(
      answers.map((a) => [a.rank, a.size, a.address]),
      [0, 1, 2].map((rank) => [rank, 3, addressOf(rank)]),
    );
    assert.deepEqual(
      last.members.map((m) => m.address),
      [0, 1, 2].map(addressOf),
    );
    assert.deepEqual(
      groups.get('g').members.map((m) => m.state),
      ['running', 'running', 'running'],
    );
  });

  it('admits all or nothing: too big is CapacityExceeded; a failed member stops the rest', async () => {
    const small = setup({ budgetMb: 300 });
    await assert.rejects(small.groups.create({ function: 'svc', size: 3 }), {
      code: 'CapacityExceeded',
    });
    assert.equal(small.started.length, 0, 'nothing started');
    const failing = setup({ failRank: 1 });
    await assert.rejects(failing.groups.create({ function: 'svc', size: 3, name: 'f' }), {
      code: 'Timeout',
    });
    assert.ok(
      failing.started.every((m) => m.stopped),
      'every started member was stopped',
    );
    assert.equal(failing.freeMb(), 1024, 'all memory back');
    assert.throws(() => failing.groups.get('f'), { code: 'GroupNotFound' });
  });

  it('streams joins and leaves; scaling adds new ranks and removes the highest', async () => {
    const { groups, started, freeMb } = setup();
    await groups.create({ function: 'svc', size: 2, name: 'g' });
    const events: MembershipEvent[] = [];
    groups.subscribe('g', (event) => events.push(event));
    await Promise.all([groups.join('g', 0), groups.join('g', 1)]);
    const up = await groups.scale('g', { size: 4 });
    assert.deepEqual(
      up.members.map((m) => m.rank),
      [0, 1, 2, 3],
    );
    await groups.join('g', 3); // the barrier (1) is open: at once
    await groups.scale('g', { size: 1 });
    started[0].exit(0);
    assert.deepEqual(
      events.map((e) => `${e.type} ${e.rank}`),
      ['join 0', 'join 1', 'join 3', 'leave 3', 'leave 1', 'leave 0'],
    );
    assert.deepEqual(
      events.at(-2)!.members.map((m) => m.rank),
      [0],
    );
    assert.equal(groups.get('g').members[0].state, 'exited');
    await groups.remove('g');
    assert.equal(freeMb(), 1024);
  });

  it('counts members by state apart from the pool, and ends streams when the group goes', async () => {
    const { groups, started } = setup();
    assert.deepEqual(groups.memberCounts(), {
      groups: 0,
      members: { starting: 0, waiting: 0, running: 0, exited: 0, stopping: 0 },
    });
    await groups.create({ function: 'svc', size: 3, barrier: 2, name: 'g' });
    await Promise.all([groups.join('g', 0), groups.join('g', 1)]);
    started[1].exit(1);
    assert.deepEqual(groups.memberCounts(), {
      groups: 1,
      members: { starting: 0, waiting: 1, running: 1, exited: 1, stopping: 0 },
    });
    assert.deepEqual(groups.members('g'), {
      group: 'g',
      size: 3,
      members: [{ rank: 0, address: started[0].instance.sandbox.address }],
    });
    let ended = 0;
    const unsubscribe = groups.subscribe(
      'g',
      () => undefined,
      () => (ended += 1),
    );
    groups.subscribe(
      'g',
      () => undefined,
      () => (ended += 10),
    );
    unsubscribe();
    await groups.remove('g');
    assert.equal(ended, 10, 'only the subscriber still listening hears the end');
    assert.equal(groups.memberCounts().groups, 0);
  });

  it('ends the group after its lifetime, on the injected clock', async () => {
    const { groups, clock, started } = setup();
    await groups.create({ function: 'svc', size: 2, name: 'g', maxDurationMs: 5000 });
    clock.advance(4999);
    assert.equal(groups.list().length, 1);
    clock.advance(1);
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(groups.list().length, 0);
    assert.ok(started.every((m) => m.stopped));
  });

  it('refuses what it cannot do with registered codes', async () => {
    const { groups } = setup();
    const cases: [unknown, string][] = [
      [{ function: 'plain', size: 1 }, 'InvalidRequest'],
      [{ function: 'svc', size: 2, barrier: 3 }, 'InvalidRequest'],
      [{ function: 'svc', size: 1000 }, 'InvalidRequest'],
      [{ function: 'svc', size: 1, maxDurationMs: 48 * 3_600_000 }, 'InvalidRequest'],
      [{ function: 'nope', size: 1 }, 'FunctionNotFound'],
    ];
    for (const [body, code] of cases) await assert.rejects(groups.create(body), { code });
    await groups.create({ function: 'svc', size: 1, name: 'g' });
    await assert.rejects(groups.create({ function: 'svc', size: 1, name: 'g' }), {
      code: 'GroupExists',
    });
  });
});

describe('spec: service runtime and inbound', () => {
  it('accepts inbound true, false or a port list (sorted, without repeats)', () => {
    const base = { name: 's', runtime: 'service', command: ['x'] };
    assert.equal(parseSpec({ ...base, network: { inbound: true } }).network.inbound, true);
    assert.deepEqual(
      parseSpec({ ...base, network: { inbound: [80, 22, 80] } }).network.inbound,
      [22, 80],
    );
    for (const inbound of [[], [0], [70000], 'all']) {
      assert.throws(() => parseSpec({ ...base, network: { inbound } }), { code: 'InvalidSpec' });
    }
    assert.throws(() => parseSpec({ name: 's', runtime: 'service' }), /command is required/);
  });
});
