import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { parseSpec } from '../../src/spec/index.ts';
import { MIGRATIONS, Store, type InvocationRecord } from '../../src/store/index.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

function tempFile(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'petri-store-'));
  dirs.push(dir);
  return path.join(dir, 'petri.db');
}

function invocation(id: string, over: Partial<InvocationRecord> = {}): InvocationRecord {
  return {
    id,
    functionName: 'f',
    version: 1,
    mode: 'sync',
    status: 'succeeded',
    receivedAt: 1000,
    ...over,
  };
}

describe('store', () => {
  it('applies every migration once, in WAL mode, and reopens without re-running them', () => {
    const file = tempFile();
    const store = Store.open(file);
    assert.equal(store.schemaVersion(), MIGRATIONS.at(-1)!.version);
    store.close();
    const raw = new Database(file);
    assert.equal(raw.pragma('journal_mode', { simple: true }), 'wal');
    raw.close();
    const again = Store.open(file);
    assert.equal(again.schemaVersion(), MIGRATIONS.at(-1)!.version);
    again.close();
  });

  it('keeps function versions and returns the latest', () => {
    const store = Store.open(tempFile());
    const spec = parseSpec({ name: 'f', runtime: 'node' });
    store.saveFunctionVersion({
      name: 'f',
      version: 1,
      spec,
      codeDir: '/a',
      createdAt: 1,
      updatedAt: 1,
    });
    store.saveFunctionVersion({
      name: 'f',
      version: 2,
      spec: { ...spec, memoryMb: 256 },
      codeDir: '/b',
      createdAt: 1,
      updatedAt: 2,
    });
    const latest = store.getFunction('f')!;
    assert.equal(latest.version, 2);
    assert.equal(latest.spec.memoryMb, 256);
    assert.equal(latest.createdAt, 1);
    store.deleteFunction('f');
    assert.equal(store.getFunction('f'), undefined);
    assert.equal(store.lastVersion('f'), 2, 'versions are never reused');
    store.close();
  });

  it('buffers invocation records off the hot path and serves them before and after the flush', () => {
    const file = tempFile();
    const store = Store.open(file);
    store.recordInvocation(invocation('a', { status: 'running' }));
    store.recordInvocation(
      invocation('a', { status: 'succeeded', result: { ok: true }, totalMs: 3 }),
    );
    assert.equal(store.getInvocation('a')?.status, 'succeeded', 'served from the buffer');
    const raw = new Database(file, { readonly: true });
    assert.equal(
      (raw.prepare('SELECT COUNT(*) AS n FROM invocations').get() as { n: number }).n,
      0,
      'not written yet',
    );
    store.flush();
    assert.equal(
      (raw.prepare('SELECT COUNT(*) AS n FROM invocations').get() as { n: number }).n,
      1,
    );
    raw.close();
    assert.deepEqual(store.getInvocation('a')?.result, { ok: true });
    store.close();
  });

  it('lists invocations newest first, filtered by function and time', () => {
    const store = Store.open(tempFile());
    store.recordInvocation(invocation('1', { receivedAt: 1 }));
    store.recordInvocation(invocation('2', { receivedAt: 2, functionName: 'g' }));
    store.recordInvocation(invocation('3', { receivedAt: 3 }));
    assert.deepEqual(
      store.listInvocations({ limit: 10 }).map((r) => r.id),
      ['3', '2', '1'],
    );
    assert.deepEqual(
      store.listInvocations({ limit: 10, functionName: 'f' }).map((r) => r.id),
      ['3', '1'],
    );
    assert.deepEqual(
      store.listInvocations({ limit: 10, since: 2 }).map((r) => r.id),
      ['3', '2'],
    );
    assert.deepEqual(
      store.listInvocations({ limit: 1 }).map((r) => r.id),
      ['3'],
    );
    store.close();
  });

  it('marks invocations left queued or running as failed with NodeRestarted', () => {
    const file = tempFile();
    const store = Store.open(file);
    store.recordInvocationNow(invocation('q', { status: 'queued', mode: 'async' }));
    store.recordInvocationNow(invocation('r', { status: 'running', mode: 'async' }));
    store.recordInvocationNow(invocation('done'));
    store.close();
    const reopened = Store.open(file);
    assert.equal(reopened.failUnfinished('NodeRestarted', 'restarted', 5000), 2);
    for (const id of ['q', 'r']) {
      const record = reopened.getInvocation(id)!;
      assert.equal(record.status, 'failed');
      assert.equal(record.error?.code, 'NodeRestarted');
      assert.equal(record.totalMs, 4000);
    }
    assert.equal(reopened.getInvocation('done')?.status, 'succeeded');
    reopened.close();
  });

  it('keeps log lines and instance events in order', () => {
    const store = Store.open(tempFile());
    for (let i = 0; i < 5; i++) {
      store.recordLog({
        functionName: 'f',
        version: 1,
        instanceId: 'i',
        invocationId: i % 2 ? 'x' : undefined,
        stream: 'stdout',
        line: `l${i}`,
        at: i,
      });
    }
    store.recordInstanceEvent({
      instanceId: 'i',
      functionName: 'f',
      version: 1,
      event: 'starting',
      at: 1,
    });
    store.recordInstanceEvent({
      instanceId: 'i',
      functionName: 'f',
      version: 1,
      event: 'idle',
      at: 2,
      details: { pid: 3 },
    });
    assert.deepEqual(
      store.listLogs({ functionName: 'f', limit: 3 }).map((l) => l.line),
      ['l2', 'l3', 'l4'],
    );
    assert.deepEqual(
      store.listLogs({ functionName: 'f', limit: 9, invocationId: 'x' }).map((l) => l.line),
      ['l1', 'l3'],
    );
    assert.deepEqual(
      store.listInstanceEvents('i').map((e) => e.event),
      ['starting', 'idle'],
    );
    assert.deepEqual(store.listInstanceEvents('i')[1].details, { pid: 3 });
    store.close();
  });
});

describe('invocation ids', () => {
  it('are UUIDv7: valid UUIDs that sort by creation time', async () => {
    const { timeOrderedId } = await import('../../src/node/ids.ts');
    const early = timeOrderedId(1_700_000_000_000);
    const late = timeOrderedId(1_700_000_000_001);
    assert.match(early, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.ok(early < late);
    assert.equal(parseInt(early.replace(/-/g, '').slice(0, 12), 16), 1_700_000_000_000);
  });
});
