import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { PetriError } from '../../src/errors.ts';
import { MIGRATIONS, Store } from '../../src/store/index.ts';
import { deployBody, fakeNode, handlerDir, type FakeNode } from '../helpers/node.ts';
import { tempDir } from '../helpers/tmp.ts';

let fake: FakeNode;

before(async () => {
  fake = await fakeNode({ deploy: { keepVersions: 2 } });
});
after(async () => {
  await fake.close();
});

/** Deploys `name` with `memoryMb` (each new value makes a new version) and returns its version. */
async function deploy(name: string, memoryMb: number): Promise<number> {
  const { view } = await fake.node.deploy(name, deployBody(handlerDir(), { memoryMb }));
  return view.version;
}

function liveOf(name: string, version: number): number {
  return fake.driver
    .live()
    .filter((s) => s.spec.functionName === name && s.spec.version === version).length;
}

async function refused(
  promise: Promise<unknown> | (() => unknown),
  code: string,
): Promise<PetriError> {
  try {
    await (typeof promise === 'function' ? promise() : promise);
  } catch (err) {
    assert.ok(err instanceof PetriError, String(err));
    assert.equal(err.code, code, err.message);
    return err;
  }
  assert.fail(`expected ${code}`);
}

function versionDirExists(name: string, version: number): boolean {
  return fs.existsSync(path.join(fake.dir, 'functions', name, `v${version}`));
}

describe('versions', () => {
  it('invokes a given version; one no alias names runs on an instance that stops after it', async () => {
    await deploy('pick', 128);
    await deploy('pick', 192);
    const old = await fake.node.invoke('pick', { n: 1 }, { version: 1 });
    assert.equal(old.record.status, 'succeeded');
    assert.equal(old.record.version, 1);
    const current = await fake.node.invoke('pick', { n: 2 });
    assert.equal(current.record.version, 2);
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(liveOf('pick', 1), 0, 'not kept warm');
    assert.equal(liveOf('pick', 2), 1);
    const listed = fake.node.listVersions('pick');
    assert.deepEqual(
      listed.map((v) => [v.version, v.current, v.spec.memoryMb]),
      [
        [1, false, 128],
        [2, true, 192],
      ],
    );
    await refused(() => fake.node.invoke('pick', {}, { version: 9 }), 'VersionNotFound');
    await refused(() => fake.node.invoke('pick', {}, { alias: 'nope' }), 'AliasNotFound');
  });

  it('keeps a version an alias names on disk and warm across deploys; rollback moves the alias', async () => {
    await deploy('roll', 128);
    const { view, created } = await fake.node.setAlias('roll', 'live', { version: 1 });
    assert.equal(created, true);
    assert.equal(view.version, 1);
    const first = await fake.node.invoke('roll', {}, { alias: 'live' });
    assert.equal(first.record.startPath, 'cold');
    for (const memoryMb of [160, 192, 224]) await deploy('roll', memoryMb);
    // v1 is older than keepVersions (2) but the alias keeps it, and its idle instance.
    assert.ok(versionDirExists('roll', 1));
    assert.equal(versionDirExists('roll', 2), false, 'v2 pruned');
    assert.equal(liveOf('roll', 1), 1, 'not drained by the deploys');
    const again = await fake.node.invoke('roll', {}, { alias: 'live' });
    assert.equal(again.record.version, 1);
    assert.equal(again.record.startPath, 'warm');
    // Forward to v4, then roll back to v3: invocations follow the alias.
    await fake.node.setAlias('roll', 'live', { version: 4 });
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(liveOf('roll', 1), 0, 'v1 drained once no alias names it');
    assert.equal(versionDirExists('roll', 1), false, 'and pruned');
    await refused(fake.node.setAlias('roll', 'live', { version: 1 }), 'VersionNotFound');
    assert.equal((await fake.node.invoke('roll', {}, { alias: 'live' })).record.version, 4);
    const back = await fake.node.setAlias('roll', 'live', { version: 3 });
    assert.equal(back.created, false);
    assert.equal((await fake.node.invoke('roll', {}, { alias: 'live' })).record.version, 3);
    assert.deepEqual(
      fake.node.listVersions('roll').map((v) => [v.version, v.aliases]),
      [
        [3, ['live']],
        [4, []],
      ],
    );
    await fake.node.deleteAlias('roll', 'live');
    await refused(() => fake.node.getAlias('roll', 'live'), 'AliasNotFound');
    await refused(fake.node.deleteAlias('roll', 'live'), 'AliasNotFound');
  });

  it('splits an alias with a canary by its weight', async () => {
    await deploy('canary', 128);
    await deploy('canary', 160);
    await fake.node.setAlias('canary', 'prod', { version: 1, canary: { version: 2, weight: 0.2 } });
    const counts = new Map<number, number>();
    for (let i = 0; i < 1000; i += 1) {
      const { record } = await fake.node.invoke('canary', { i }, { alias: 'prod' });
      assert.equal(record.status, 'succeeded');
      counts.set(record.version, (counts.get(record.version) ?? 0) + 1);
    }
    const canary = counts.get(2) ?? 0;
    assert.ok(Math.abs(canary - 200) <= 20, `canary got ${canary} of 1000`);
    assert.equal((counts.get(1) ?? 0) + canary, 1000);
    // Both versions stay warm: one instance each served all of it.
    assert.equal(liveOf('canary', 1), 1);
    assert.equal(liveOf('canary', 2), 1);
  });

  it('caps and queues each version on its own: a queued old version does not hold up the current one', async () => {
    await fake.node.deploy('queues', deployBody(handlerDir(), { maxInstances: 1 }));
    await fake.node.deploy('queues', deployBody(handlerDir(), { maxInstances: 1, memoryMb: 160 }));
    const order: string[] = [];
    const run = (label: string, version: number | undefined, sleepMs: number) =>
      fake.node
        .invoke('queues', { sleepMs }, version === undefined ? {} : { version })
        .then(({ record }) => {
          assert.equal(record.status, 'succeeded', JSON.stringify(record.error));
          order.push(`${label}@${record.version}`);
        });
    // The first call takes v1's one slot at once (its start is counted), so the second queues.
    const busy = run('first', 1, 400);
    const queued = run('queued', 1, 0);
    const current = run('current', undefined, 0);
    await Promise.all([busy, queued, current]);
    assert.deepEqual(order, ['current@2', 'first@1', 'queued@1']);
  });

  it('refuses bad alias bodies and names', async () => {
    await deploy('bad-alias', 128);
    for (const body of [
      {},
      { version: 0 },
      { version: 1, canary: { version: 1, weight: 0.5 } },
      { version: 1, extra: 1 },
      { version: 1, canary: { version: 2, weight: 2 } },
    ]) {
      await refused(fake.node.setAlias('bad-alias', 'a', body), 'InvalidRequest');
    }
    await refused(fake.node.setAlias('bad-alias', '123', { version: 1 }), 'InvalidRequest');
    await refused(
      fake.node.setAlias('bad-alias', 'a', { version: 1, canary: { version: 7, weight: 0.5 } }),
      'VersionNotFound',
    );
    await refused(fake.node.setAlias('missing', 'a', { version: 1 }), 'FunctionNotFound');
  });

  it('drops aliases with their function, and a redeploy does not see the old versions', async () => {
    await deploy('gone', 128);
    await deploy('gone', 160);
    await fake.node.setAlias('gone', 'a', { version: 1 });
    await fake.node.removeFunction('gone');
    await deploy('gone', 128);
    assert.deepEqual(fake.node.listAliases('gone'), []);
    assert.deepEqual(
      fake.node.listVersions('gone').map((v) => v.version),
      [3],
    );
    await refused(() => fake.node.invoke('gone', {}, { version: 1 }), 'VersionNotFound');
  });
});

describe('PATCH (configuration without code)', () => {
  it('makes a new version with the same code digest and the patched spec', async () => {
    await fake.node.deploy('conf', deployBody(handlerDir(), { env: { A: '1', B: '2' } }));
    const view = await fake.node.patchFunction('conf', {
      memoryMb: 256,
      env: { B: null, C: '3' },
      keepAlive: { ms: 5000 },
    });
    assert.equal(view.version, 2);
    assert.equal(view.spec.memoryMb, 256);
    assert.deepEqual(view.spec.env, { A: '1', C: '3' });
    assert.equal(view.spec.keepAlive.ms, 5000);
    const [v1, v2] = fake.node.listVersions('conf');
    assert.ok(v1?.codeDigest && v1.codeDigest === v2?.codeDigest, 'same code digest');
    const { record, value } = await fake.node.invoke('conf', { hi: 1 });
    assert.equal(record.version, 2);
    assert.deepEqual(value, { hi: 1 });
    // The same spec again: no new version; null brings a default back.
    assert.equal((await fake.node.patchFunction('conf', { memoryMb: 256 })).version, 2);
    assert.equal((await fake.node.patchFunction('conf', { memoryMb: null })).spec.memoryMb, 128);
  });

  it('answers invalid values and code fields with InvalidSpec naming each', async () => {
    await fake.node.deploy('conf-bad', deployBody(handlerDir()));
    const err = await refused(
      // As the API parses it: `__proto__` is a key of the body, not its prototype.
      fake.node.patchFunction(
        'conf-bad',
        JSON.parse(
          '{"memoryMb": 1, "runtime": "exec", "source": {"path": "/tmp"}, "__proto__": {"memoryMb": 512}}',
        ),
      ),
      'InvalidSpec',
    );
    const fields = (err.details as { issues: { field: string }[] }).issues.map((i) => i.field);
    for (const field of ['memoryMb', 'runtime', 'source', '(root)'])
      assert.ok(fields.includes(field), fields.join());
    await refused(fake.node.patchFunction('conf-bad', [1]), 'InvalidSpec');
    await refused(
      fake.node.patchFunction('conf-bad', { keepAlive: { policy: 'adaptive' } }),
      'InvalidSpec',
    );
    await refused(fake.node.patchFunction('nope', { memoryMb: 256 }), 'FunctionNotFound');
    assert.equal(fake.node.getFunction('conf-bad').version, 1, 'no version made');
  });
});

describe('the store', () => {
  it('keeps aliases and code digests across a reopen', () => {
    const file = path.join(tempDir('petri-store-'), 'petri.db');
    const spec = { name: 'f' } as never;
    let store = Store.open(file);
    store.saveFunctionVersion({
      name: 'f',
      version: 1,
      spec,
      codeDir: '/x',
      createdAt: 1,
      updatedAt: 1,
      codeDigest: 'abc',
    });
    store.saveAlias({
      functionName: 'f',
      name: 'prod',
      version: 1,
      canary: { version: 2, weight: 0.25 },
      createdAt: 1,
      updatedAt: 2,
    });
    store.close();
    store = Store.open(file);
    assert.equal(store.schemaVersion(), MIGRATIONS.at(-1)?.version);
    assert.equal(store.getFunction('f')?.codeDigest, 'abc');
    assert.deepEqual(store.allAliases(), [
      {
        functionName: 'f',
        name: 'prod',
        version: 1,
        canary: { version: 2, weight: 0.25 },
        createdAt: 1,
        updatedAt: 2,
      },
    ]);
    assert.equal(store.deleteAlias('f', 'prod'), true);
    assert.deepEqual(store.listAliases('f'), []);
    store.close();
  });
});

describe('a restart', () => {
  it('loads aliases back and keeps their versions', async () => {
    const { PetriNode } = await import('../../src/node/index.ts');
    const { pino } = await import('pino');
    const first = await fakeNode({ deploy: { keepVersions: 1 } });
    const code = handlerDir();
    await first.node.deploy('again', deployBody(code));
    // keepVersions is 1: only the alias keeps v1 once v2 is made.
    await first.node.setAlias('again', 'live', { version: 1 });
    await first.node.patchFunction('again', { memoryMb: 160 });
    await first.node.setAlias('again', 'live', { version: 1, canary: { version: 2, weight: 0.5 } });
    await first.node.close(); // closes the store too; the state dir stays
    const store = Store.open(path.join(first.dir, 'petri.db'));
    const node = new PetriNode({
      config: first.config,
      store,
      driver: first.driver,
      log: pino({ level: 'silent' }),
    });
    try {
      await node.start();
      assert.deepEqual(node.getAlias('again', 'live').canary, { version: 2, weight: 0.5 });
      assert.ok(fs.existsSync(path.join(first.dir, 'functions', 'again', 'v1')), 'v1 kept');
      const picked: number[] = [];
      for (let i = 0; i < 4; i += 1)
        picked.push((await node.invoke('again', {}, { alias: 'live' })).record.version);
      assert.deepEqual(picked.sort(), [1, 1, 2, 2]);
    } finally {
      await node.close();
      fs.rmSync(first.dir, { recursive: true, force: true });
    }
  });
});
