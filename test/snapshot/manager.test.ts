/**
 * FileSnapshotManager against a scripted driver: what a hostile builder may
 * leave in its writable folder (a link to a node file, a hard link, a FIFO,
 * an oversized blob, nothing) fails the build with a reason and copies
 * nothing; a good blob goes to the first tier with room; drop and close
 * remove the files. The real builder runs in test/integration/restore.test.ts.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { SnapshotsConfigSchema } from '../../src/config.ts';
import { SNAPSHOT_TIER_POLICIES } from '../../src/policy/index.ts';
import type { Sandbox, SandboxDriver, SandboxExit, SandboxSpec } from '../../src/sandbox/index.ts';
import { FileSnapshotManager, type SnapshotStatus } from '../../src/snapshot/index.ts';
import { parseSpec } from '../../src/spec/index.ts';
import type { FunctionRecord } from '../../src/store/index.ts';
import { tempDir } from '../helpers/tmp.ts';

type Builder = (out: string) => Partial<SandboxExit> | void;

/** A driver whose "builder" runs `script` on the writable folder, then exits. */
function scriptedDriver(script: Builder): SandboxDriver & { specs: SandboxSpec[] } {
  const specs: SandboxSpec[] = [];
  return {
    name: 'scripted',
    specs,
    capabilities: () => ({ driver: 'scripted', mechanisms: [] }),
    reconcile: async () => {},
    close: async () => {},
    create: async (spec) => {
      specs.push(spec);
      const exit: SandboxExit = {
        code: 0,
        signal: null,
        oomKilled: false,
        stderrTail: '',
        ...(script(spec.writableDir!) ?? {}),
      };
      const listeners: ((exit: SandboxExit) => void)[] = [];
      setImmediate(() => listeners.forEach((listener) => listener(exit)));
      const sandbox: Partial<Sandbox> = {
        id: spec.instanceId,
        on: ((event: string, listener: (exit: SandboxExit) => void) => {
          if (event === 'exit') listeners.push(listener);
        }) as Sandbox['on'],
        destroy: async () => {},
      };
      return sandbox as Sandbox;
    },
  };
}

async function setup(
  script: Builder,
  config: {
    tiers?: { name: string; dir: string; capacityMb: number }[];
    maxBytes?: number;
    tierPolicy?: string;
  } = {},
  now: () => number = () => performance.now(),
) {
  const root = tempDir('petri-snapshots-');
  const code = path.join(root, 'fn', 'v1', 'code');
  fs.mkdirSync(code, { recursive: true });
  fs.writeFileSync(
    path.join(code, 'index.mjs'),
    'export async function handler(e) { return e; }\n',
  );
  const secret = path.join(root, 'secret');
  fs.writeFileSync(secret, 'the node owner only');
  const small = path.join(root, 'small');
  const big = path.join(root, 'big');
  const driver = scriptedDriver(script);
  const dirs: Record<string, string> = { small, big };
  const parsed = SnapshotsConfigSchema.parse({
    ...config,
    tiers: (
      config.tiers ?? [
        { name: 'small', dir: small, capacityMb: 1 },
        { name: 'big', dir: big, capacityMb: 64 },
      ]
    ).map((tier) => ({ ...tier, dir: dirs[tier.name]! })),
  });
  const manager = new FileSnapshotManager({
    config: parsed,
    tierPolicy: SNAPSHOT_TIER_POLICIES[parsed.tierPolicy](),
    stateDir: root,
    driver,
    sandboxSpec: (record, nodeArgs, writableDir) =>
      ({ instanceId: `${record.name}-build`, nodeArgs, writableDir }) as SandboxSpec,
    log: pino({ level: 'silent' }),
    now,
  });
  await manager.reconcile(); // as the node does at start
  for (const dir of [small, big]) fs.mkdirSync(dir);
  const record: FunctionRecord = {
    name: 'fn',
    version: 1,
    spec: parseSpec({ name: 'fn', runtime: 'node', snapshot: true }),
    codeDir: path.dirname(code),
    createdAt: 0,
    updatedAt: 0,
  };
  return { manager, record, driver, secret, small, big };
}

async function settled(manager: FileSnapshotManager): Promise<SnapshotStatus> {
  for (;;) {
    const status = manager.status('fn', 1)!;
    if (status.state !== 'building') return status;
    await sleep(10);
  }
}

const blob = (out: string) => path.join(out, 'snapshot.blob');

describe('FileSnapshotManager', () => {
  it('places a good blob on the first tier with room and runs the builder on the bundled entry', async () => {
    const { manager, record, driver, small, big } = await setup((out) => {
      fs.writeFileSync(blob(out), Buffer.alloc(2 * 1024 * 1024, 7));
    });
    manager.build(record);
    const status = await settled(manager);
    assert.equal(status.state, 'ready', status.reason);
    assert.equal(status.tier, 'big', 'a 2 MB blob does not fit the 1 MB tier');
    assert.equal(status.bytes, 2 * 1024 * 1024);
    assert.deepEqual(fs.readdirSync(small), []);
    assert.equal(manager.blobFor('fn', 1), path.join(big, 'fn-1.blob'));
    const [spec] = driver.specs;
    assert.deepEqual(spec.nodeArgs!.slice(0, 2), ['--snapshot-blob', blob(spec.writableDir!)]);
    assert.equal(spec.nodeArgs![2], '--build-snapshot');
    assert.ok(
      spec.nodeArgs![3].endsWith('entry.cjs') && !spec.nodeArgs![3].startsWith(spec.writableDir!),
    );
    await manager.drop('fn');
    assert.deepEqual(fs.readdirSync(big), []);
    assert.equal(manager.status('fn', 1), undefined);
  });

  const hostile: [string, (out: string, secret: string) => void, RegExp][] = [
    ['a symlink to a node file', (out, secret) => fs.symlinkSync(secret, blob(out)), /ELOOP/],
    ['a hard link', (out, secret) => fs.linkSync(secret, blob(out)), /not a plain file/],
    ['a FIFO', (out) => execFileSync('mkfifo', [blob(out)]), /not a plain file/],
    ['nothing', () => {}, /left no snapshot \(ENOENT\)/],
  ];
  for (const [what, make, reason] of hostile) {
    it(`refuses ${what} as the blob and copies nothing`, async () => {
      const { manager, record, secret, small, big } = await setup((out) => make(out, secret));
      manager.build(record);
      const status = await settled(manager);
      assert.equal(status.state, 'failed');
      assert.match(status.reason!, reason);
      assert.equal(manager.blobFor('fn', 1), undefined);
      assert.deepEqual([...fs.readdirSync(small), ...fs.readdirSync(big)], []);
    });
  }

  it('refuses a blob over maxBytes, and says why a builder failed', async () => {
    const over = await setup((out) => fs.writeFileSync(blob(out), Buffer.alloc(4096)), {
      maxBytes: 1024,
    });
    over.manager.build(over.record);
    assert.match(
      (await settled(over.manager)).reason!,
      /4096 bytes, over snapshots.maxBytes \(1024\)/,
    );
    const failed = await setup(() => ({
      code: 70,
      stderrTail: 'open handles at the end of init: Timeout\n',
    }));
    failed.manager.build(failed.record);
    assert.equal(
      (await settled(failed.manager)).reason,
      'the snapshot builder exited with code 70: open handles at the end of init: Timeout',
    );
  });

  it('makes room by demoting the least recently restored snapshot, and evicts what no tier keeps', async () => {
    let clock = 0;
    const { manager, record, small, big } = await setup(
      (out) => fs.writeFileSync(blob(out), Buffer.alloc(2 * 1024 * 1024, 1)),
      {
        tiers: [
          { name: 'small', dir: '', capacityMb: 3 },
          { name: 'big', dir: '', capacityMb: 4 },
        ],
      },
      () => (clock += 1),
    );
    const built = async (version: number) => {
      manager.build({ ...record, version });
      while (manager.status('fn', version)?.state === 'building') await sleep(5);
      return manager.status('fn', version)!;
    };
    assert.equal((await built(1)).tier, 'small');
    assert.equal((await built(2)).tier, 'small', 'the newest goes to the fast tier');
    assert.equal(manager.status('fn', 1)!.tier, 'big');
    assert.equal(manager.status('fn', 1)!.demotions, 1);
    assert.equal(manager.blobFor('fn', 1), path.join(big, 'fn-1.blob'));
    const beforeMove = manager.blobFor('fn', 2)!;
    // fn/1 restored after fn/2 was placed: fn/2 is now the least recently used.
    manager.recordRestore('fn', 1, 40);
    manager.recordRestore('fn', 1, 60);
    assert.equal(manager.status('fn', 1)!.meanRestoreMs, 50);
    await built(3);
    assert.equal(manager.status('fn', 2)!.tier, 'big');
    // A restore that read fn/2's old path as it moved failed: not the snapshot's fault.
    manager.markBroken('fn', 2, 'ENOENT', beforeMove);
    assert.equal(manager.status('fn', 2)!.state, 'ready');
    await built(4);
    // fn/3 went to big, which had to drop one: fn/2 was used least recently.
    assert.deepEqual(
      [manager.status('fn', 1)!.tier, manager.status('fn', 3)!.tier, manager.status('fn', 4)!.tier],
      ['big', 'big', 'small'],
    );
    const evicted = manager.status('fn', 2)!;
    assert.equal(evicted.state, 'evicted');
    assert.match(evicted.reason!, /evicted from tier big .*lru-demote/);
    assert.equal(manager.blobFor('fn', 2), undefined);
    assert.deepEqual(fs.readdirSync(small), ['fn-4.blob']);
    assert.deepEqual(fs.readdirSync(big).sort(), ['fn-1.blob', 'fn-3.blob']);
    const { policy, tiers } = manager.tierStatus();
    assert.equal(policy, 'lru-demote');
    assert.deepEqual(
      tiers.map((t) => [t.name, t.usedBytes / 2 ** 20, t.snapshots]),
      [
        ['small', 2, ['fn/4']],
        ['big', 4, ['fn/1', 'fn/3']],
      ],
    );
    await manager.close();
  });

  it('with no-eviction a snapshot that fits no tier fails its build and moves nothing', async () => {
    const { manager, record, small } = await setup(
      (out) => fs.writeFileSync(blob(out), Buffer.alloc(2 * 1024 * 1024, 1)),
      {
        tiers: [{ name: 'small', dir: '', capacityMb: 3 }],
        tierPolicy: 'no-eviction',
      },
    );
    manager.build(record);
    assert.equal((await settled(manager)).tier, 'small');
    manager.build({ ...record, version: 2 });
    while (manager.status('fn', 2)?.state === 'building') await sleep(5);
    assert.match(
      manager.status('fn', 2)!.reason!,
      /no snapshot tier keeps 2097152 bytes \(no-eviction\)/,
    );
    assert.equal(manager.status('fn', 1)!.state, 'ready');
    assert.deepEqual(fs.readdirSync(small), ['fn-1.blob']);
    await manager.close();
  });

  it('close removes every snapshot; reconcile empties the tiers of an earlier run', async () => {
    const { manager, record, big } = await setup((out) =>
      fs.writeFileSync(blob(out), 'x'.repeat(2e6)),
    );
    manager.build(record);
    assert.equal((await settled(manager)).state, 'ready');
    fs.writeFileSync(path.join(big, 'old-3.blob'), 'left by a crash');
    await manager.reconcile();
    assert.deepEqual(fs.readdirSync(big), []);
    manager.build({ ...record, version: 2 });
    for (;;) {
      if (manager.status('fn', 2)?.state !== 'building') break;
      await sleep(10);
    }
    await manager.close();
    assert.deepEqual(fs.readdirSync(big), []);
  });
});
