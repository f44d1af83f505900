import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { parseSpec } from '../../src/spec/index.ts';
import {
  LOG_ROW_BYTES,
  MIGRATIONS,
  Store,
  logLineCost,
  type InvocationRecord,
} from '../../src/store/index.ts';

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

describe('log retention', () => {
  const DAY = 24 * 3600 * 1000;

  /** `count` lines of `bytes` each, for function `fn`, `at` the given time. */
  function writeLines(store: Store, fn: string, count: number, bytes: number, at: number): void {
    for (let i = 0; i < count; i++) {
      store.recordLog({
        functionName: fn,
        version: 1,
        instanceId: 'i',
        stream: 'stdout',
        line: String(i % 10).repeat(bytes),
        at,
      });
    }
    store.flush();
  }

  function tableBytes(file: string): number {
    const raw = new Database(file, { readonly: true });
    try {
      const row = raw
        .prepare(`SELECT COALESCE(SUM(octet_length(line) + ${LOG_ROW_BYTES}), 0) AS b FROM logs`)
        .get() as { b: number };
      return row.b;
    } finally {
      raw.close();
    }
  }

  it('counts every written line, its bytes plus a row cost, across a reopen', () => {
    const file = tempFile();
    let store = Store.open(file);
    writeLines(store, 'f', 10, 100, 1);
    writeLines(store, 'g', 5, 3, 2);
    assert.equal(store.storedLogBytes(), 10 * 164 + 5 * 67);
    assert.equal(logLineCost('é'), 2 + LOG_ROW_BYTES);
    store.close();
    assert.equal(tableBytes(file), 10 * 164 + 5 * 67);
    store = Store.open(file);
    assert.equal(store.storedLogBytes(), 10 * 164 + 5 * 67, 'kept in the store, not recounted');
    store.close();
  });

  it('deletes lines older than maxAgeMs and keeps the rest', async () => {
    const file = tempFile();
    const store = Store.open(file);
    const now = 100 * DAY;
    writeLines(store, 'old', 2500, 10, now - 8 * DAY);
    writeLines(store, 'new', 10, 10, now - 6 * DAY);
    const retention = { maxAgeMs: 7 * DAY, maxBytes: 1 << 30, expiryIntervalMs: 60_000 };
    const expired = await store.expireLogs(retention, now);
    assert.deepEqual(expired, { rows: 2500, bytes: 2500 * (10 + LOG_ROW_BYTES) });
    assert.equal(store.listLogs({ functionName: 'old', limit: 10 }).length, 0);
    assert.equal(store.listLogs({ functionName: 'new', limit: 100 }).length, 10);
    assert.equal(store.storedLogBytes(), 10 * (10 + LOG_ROW_BYTES));
    store.close();
    assert.equal(tableBytes(file), 10 * (10 + LOG_ROW_BYTES));
  });

  it('deletes the oldest lines down to 7/8 of maxBytes once over it, in steps', async () => {
    const file = tempFile();
    const store = Store.open(file);
    // 5000 lines of 1000 + 64 bytes: about 5.3 MB against a 1 MiB bound.
    writeLines(store, 'f', 5000, 1000, 1);
    const maxBytes = 1024 * 1024;
    const retention = { maxAgeMs: 365 * DAY, maxBytes, expiryIntervalMs: 60_000 };
    let turns = 0;
    let done = false;
    const count = (): void => {
      turns += 1;
      if (!done) setImmediate(count);
    };
    setImmediate(count);
    const expired = await store.expireLogs(retention, 2);
    done = true;
    const left = store.storedLogBytes();
    assert.ok(left <= (maxBytes * 7) / 8, `${left} bytes left`);
    assert.ok(left > (maxBytes * 7) / 8 - 1064, 'no more than needed is deleted');
    assert.equal(expired.bytes + left, 5000 * 1064);
    assert.equal(tableBytes(file), left);
    const kept = store.listLogs({ functionName: 'f', limit: 10_000 });
    assert.equal(kept.length, left / 1064);
    assert.equal(kept.at(-1)!.line, '9'.repeat(1000), 'the newest line is kept');
    // 4200-odd rows go in steps of 1000: other work ran between them.
    assert.ok(turns >= 4, `the event loop turned ${turns} times during expiry`);
    // Under the bound, nothing more goes.
    assert.deepEqual(await store.expireLogs(retention, 2), { rows: 0, bytes: 0 });
    store.close();
  });

  it('runs expiry on its own once an eighth of maxBytes is written', async () => {
    const store = Store.open(tempFile());
    const maxBytes = 256 * 1024;
    store.startLogExpiry({ maxAgeMs: 365 * DAY, maxBytes, expiryIntervalMs: 3_600_000 });
    for (let round = 0; round < 20; round++) {
      writeLines(store, 'f', 100, 300, Date.now()); // 36 KB a round, 720 KB in all
      await new Promise((resolve) => setImmediate(resolve));
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.ok(store.storedLogBytes() <= maxBytes, `${store.storedLogBytes()} bytes kept`);
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
