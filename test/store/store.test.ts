import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { parseSpec } from '../../src/spec/index.ts';
import {
  MIGRATIONS,
  Store,
  logRowSizes,
  storedLogBytes,
  type InvocationRecord,
  type LogRowSizes,
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

  const INVOCATION = '01a23349-61de-781d-8e8d-cbfd5e2435cb';
  /** What a line of `bytes` written by `writeLines` for `fn` takes on disk, by the store's model. */
  const stored = (bytes: number, fn = 'f'): number =>
    storedLogBytes(
      logRowSizes({
        functionName: fn,
        version: 1,
        invocationId: INVOCATION,
        instanceId: `${fn}-1-0e1f2a3b`,
        stream: 'stdout',
        line: 'x'.repeat(bytes),
        at: 0,
      }),
    );

  /** `count` lines of `bytes` each, for function `fn`, `at` the given time. */
  function writeLines(store: Store, fn: string, count: number, bytes: number, at: number): void {
    for (let i = 0; i < count; i++) {
      store.recordLog({
        functionName: fn,
        version: 1,
        invocationId: INVOCATION,
        instanceId: `${fn}-1-0e1f2a3b`,
        stream: 'stdout',
        line: String(i % 10).repeat(bytes),
        at,
      });
    }
    store.flush();
  }

  /** Recounts the logs table from its rows, by the store's model. */
  function tableBytes(file: string): number {
    const raw = new Database(file, { readonly: true });
    try {
      const rows = raw
        .prepare(
          `SELECT octet_length(line) AS line,
             octet_length(function_name) + octet_length(invocation_id) AS indexed,
             octet_length(instance_id) + length(stream) AS other
           FROM logs`,
        )
        .all() as LogRowSizes[];
      return rows.reduce((sum, row) => sum + storedLogBytes(row), 0);
    } finally {
      raw.close();
    }
  }

  it('counts what log lines take on disk, within 10 % of the file, for short to 16 KB lines', () => {
    for (const fn of ['f', 'a-function-with-a-much-longer-name']) {
      for (const bytes of [0, 40, 300, 1000, 2000, 5000, 16 * 1024]) {
        const file = tempFile();
        const store = Store.open(file);
        const count = Math.ceil((2 * 1024 * 1024) / (bytes + 100));
        const pages = (): number => {
          const raw = new Database(file, { readonly: true });
          try {
            return Number(raw.pragma('page_count', { simple: true }));
          } finally {
            raw.close();
          }
        };
        store.flush();
        const before = pages();
        writeLines(store, fn, count, bytes, 1);
        const grown = (pages() - before) * 4096;
        const counted = store.logBytes();
        assert.ok(
          Math.abs(counted / grown - 1) < 0.1,
          `${fn}, ${bytes}-byte lines: counted ${counted}, the file grew ${grown}`,
        );
        store.close();
      }
    }
  });

  it('keeps the count in the store across a reopen, and recounts an older store once', () => {
    const file = tempFile();
    let store = Store.open(file);
    writeLines(store, 'f', 10, 100, 1);
    writeLines(store, 'g', 5, 3, 2);
    const expected = 10 * stored(100) + 5 * stored(3, 'g');
    assert.equal(store.logBytes(), expected);
    store.close();
    assert.equal(tableBytes(file), expected);
    store = Store.open(file);
    assert.equal(store.logBytes(), expected, 'kept in the store');
    store.close();
    const raw = new Database(file);
    raw.exec('DELETE FROM log_usage'); // as a store from before the count was kept
    raw.close();
    store = Store.open(file);
    assert.equal(store.logBytes(), expected, 'recounted from the rows');
    store.close();
  });

  it('expires finished invocations by age, then the oldest past maxInvocations, never unfinished ones', async () => {
    const store = Store.open(tempFile());
    const now = 100 * DAY;
    for (let i = 0; i < 1500; i += 1) {
      store.recordInvocation(invocation(`old-${i}`, { receivedAt: now - 8 * DAY + i }));
    }
    store.recordInvocation(invocation('old-queued', { status: 'queued', receivedAt: 1 }));
    store.recordInvocation(invocation('old-running', { status: 'running', receivedAt: 2 }));
    for (let i = 0; i < 300; i += 1) {
      store.recordInvocation(invocation(`new-${i}`, { receivedAt: now - DAY + i }));
    }
    store.recordInstanceEvent({
      instanceId: 'i-old',
      functionName: 'f',
      version: 1,
      event: 'dead',
      at: 5,
    });
    store.recordInstanceEvent({
      instanceId: 'i-new',
      functionName: 'f',
      version: 1,
      event: 'ready',
      at: now,
    });
    const retention = { maxAgeMs: 7 * DAY, maxInvocations: 200, expiryIntervalMs: 60_000 };
    const expired = await store.expireHistory(retention, now);
    // 1500 by age, then the oldest 102 recent ones (the bound counts the two unfinished, which stay).
    assert.deepEqual(expired, { invocations: 1602, instanceEvents: 1 });
    assert.equal(store.getInvocation('old-0'), undefined);
    assert.equal(store.getInvocation('new-101'), undefined, 'the oldest recent ones went');
    assert.equal(store.getInvocation('new-102')?.status, 'succeeded');
    assert.equal(store.getInvocation('old-queued')?.status, 'queued');
    assert.equal(store.getInvocation('old-running')?.status, 'running');
    assert.equal(store.listInvocations({ limit: 10_000 }).length, 200);
    assert.equal(store.listInstanceEvents('i-old').length, 0);
    assert.equal(store.listInstanceEvents('i-new').length, 1);
    assert.deepEqual(await store.expireHistory(retention, now), {
      invocations: 0,
      instanceEvents: 0,
    });
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
    assert.deepEqual(expired, { rows: 2500, bytes: 2500 * stored(10, 'old') });
    assert.equal(store.listLogs({ functionName: 'old', limit: 10 }).length, 0);
    assert.equal(store.listLogs({ functionName: 'new', limit: 100 }).length, 10);
    assert.equal(store.logBytes(), 10 * stored(10, 'new'));
    store.close();
    assert.equal(tableBytes(file), 10 * stored(10, 'new'));
  });

  it('deletes the oldest lines down to 7/8 of maxBytes once over it, in steps', async () => {
    const file = tempFile();
    const store = Store.open(file);
    // 4000 lines of 1000 bytes: about 5.7 MB on disk against a 1 MiB bound.
    writeLines(store, 'f', 4000, 1000, 1);
    const perLine = stored(1000);
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
    const left = store.logBytes();
    assert.ok(left <= (maxBytes * 7) / 8, `${left} bytes left`);
    assert.ok(left > (maxBytes * 7) / 8 - perLine, 'no more than needed is deleted');
    assert.equal(expired.bytes + left, 4000 * perLine);
    assert.equal(tableBytes(file), left);
    const kept = store.listLogs({ functionName: 'f', limit: 10_000 });
    assert.equal(kept.length, left / perLine);
    assert.equal(kept.at(-1)!.line, '9'.repeat(1000), 'the newest line is kept');
    // 3000-odd rows go in steps of 1000: other work ran between them.
    assert.ok(turns >= 3, `the event loop turned ${turns} times during expiry`);
    // Under the bound, nothing more goes.
    assert.deepEqual(await store.expireLogs(retention, 2), { rows: 0, bytes: 0 });
    store.close();
  });

  it('runs expiry on its own once an eighth of maxBytes is written', async () => {
    const store = Store.open(tempFile());
    const maxBytes = 256 * 1024;
    store.startLogExpiry({ maxAgeMs: 365 * DAY, maxBytes, expiryIntervalMs: 3_600_000 });
    for (let round = 0; round < 20; round++) {
      writeLines(store, 'f', 100, 200, Date.now()); // about 40 KB a round
      await new Promise((resolve) => setImmediate(resolve));
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.ok(store.logBytes() <= maxBytes, `${store.logBytes()} bytes kept`);
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

  it('stay well-formed and distinct across refills of their random pool', async () => {
    const { timeOrderedId } = await import('../../src/node/ids.ts');
    const ids = Array.from({ length: 2000 }, () => timeOrderedId(1_700_000_000_000));
    for (const id of ids)
      assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.equal(new Set(ids).size, ids.length);
    // The random part is random: every variant digit shows up.
    assert.equal(new Set(ids.map((id) => id[19])).size, 4);
  });
});
