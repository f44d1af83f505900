/**
 * The restore start path against a real daemon (root: bwrap, cgroups,
 * network): a function deployed with `snapshot: true` gets a Node startup
 * snapshot built in its own sandbox, on the first tier with room, and new
 * instances restore it (`x-petri-start: restore`) with its module-level
 * state; a build that cannot finish leaves the function cold-only with the
 * reason shown; a new version drops the old snapshot; a restart after a
 * crash empties the tiers and builds again; stop removes them all.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { request } from 'undici';
import { spawnDaemon, type Daemon } from '../../src/harness/index.ts';
import { requireRoot } from '../helpers/root.ts';

const codeRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'petri-restore-code-'));
const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'petri-restore-'));
const tmpfsTier = fs.mkdtempSync(path.join('/dev/shm', 'petri-restore-tier-'));
const diskTier = path.join(stateDir, 'tier-disk');
let daemon: Daemon | undefined;
/** The first daemon, whose test namespace the restarted one shares. */
let first: Daemon | undefined;

/** Builds a table at module level (the init a snapshot keeps) and says who ran the init. */
const HEAVY = `
import { readdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
const table = new Map();
for (let i = 0; i < 300000; i++) table.set('k' + i, i * 2);
const initInstance = process.env.PETRI_INSTANCE_ID;
const initGreeting = process.env.GREETING;
export async function handler(event) {
  return {
    size: table.size,
    initInstance,
    initGreeting,
    instance: process.env.PETRI_INSTANCE_ID,
    greeting: process.env.GREETING,
    echo: event,
    // What this instance sees of the folder its snapshot came from (node --snapshot-blob FILE).
    besideBlob: readdirSync(dirname(readFileSync('/proc/self/cmdline', 'utf8').split('\\0')[2])),
  };
}
`;

interface SnapshotView {
  state: string;
  reason?: string;
  bytes?: number;
  buildMs?: number;
  tier?: string;
  restores: number;
  lastRestoreMs?: number;
  meanRestoreMs?: number;
}

async function call(method: 'GET' | 'PUT' | 'POST' | 'PATCH', url: string, body?: unknown) {
  const response = await request(daemon!.url + url, {
    method,
    body: body === undefined ? undefined : JSON.stringify(body),
    headers: { ...daemon!.headers, 'content-type': 'application/json' },
  });
  const text = await response.body.text();
  return { status: response.statusCode, headers: response.headers, json: JSON.parse(text) };
}

async function deploy(name: string, source: string, extra: object = {}): Promise<void> {
  const dir = path.join(codeRoot, name);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'index.mjs'), source);
  const reply = await call('PUT', `/v1/functions/${name}`, {
    runtime: 'node',
    memoryMb: 128,
    snapshot: true,
    source: { path: dir },
    ...extra,
  });
  assert.ok(reply.status < 300, JSON.stringify(reply.json));
}

async function settledSnapshot(
  name: string,
  ms = Number(process.env.SNAP_WAIT ?? 60_000),
): Promise<SnapshotView> {
  const deadline = Date.now() + ms;
  for (;;) {
    const view = (await call('GET', `/v1/functions/${name}`)).json as { snapshot?: SnapshotView };
    assert.ok(view.snapshot, `GET /v1/functions/${name} shows a snapshot`);
    if (view.snapshot.state !== 'building') return view.snapshot;
    if (Date.now() >= deadline) console.error(daemon!.output().slice(-4000));
    assert.ok(Date.now() < deadline, `the snapshot of ${name} settles within ${ms} ms`);
    await sleep(100);
  }
}

async function invoke(name: string, event: unknown) {
  const reply = await call('POST', `/v1/functions/${name}/invoke`, event);
  assert.equal(reply.status, 200, JSON.stringify(reply.json));
  return { start: String(reply.headers['x-petri-start']), body: reply.json };
}

/** The instance's `starting` event details, from the node's store (written in batches). */
async function startingEvent(instanceId: string): Promise<Record<string, unknown>> {
  const db = new Database(path.join(stateDir, 'petri.db'), { readonly: true });
  try {
    for (let i = 0; i < 100; i++) {
      const row = db
        .prepare("SELECT details FROM instance_events WHERE instance_id = ? AND event = 'starting'")
        .get(instanceId) as { details: string } | undefined;
      if (row) return JSON.parse(row.details) as Record<string, unknown>;
      await sleep(50);
    }
  } finally {
    db.close();
  }
  throw new Error(`no starting event for ${instanceId}`);
}

function blobs(dir: string): string[] {
  return fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith('.blob')) : [];
}

after(async () => {
  await daemon?.close().catch(() => undefined);
  // The restarted daemon borrowed the first one's test namespace: the first removes it.
  if (first !== daemon) await first?.close().catch(() => undefined);
  for (const dir of [stateDir, codeRoot, tmpfsTier])
    fs.rmSync(dir, { recursive: true, force: true });
});

const configFile = path.join(stateDir, 'config.json');

describe('restore from a startup snapshot on a real node', () => {
  before(async () => {
    if (process.geteuid?.() !== 0) return;
    fs.writeFileSync(
      configFile,
      JSON.stringify({
        // Idle instances stop at once, so each invocation needs a new instance.
        keepAliveMs: 0,
        startPaths: { pause: false },
        snapshots: {
          tiers: [
            { name: 'tmpfs', dir: tmpfsTier, capacityMb: 64 },
            { name: 'disk', dir: diskTier, capacityMb: 1024 },
          ],
          buildTimeoutMs: 30_000,
        },
      }),
    );
    daemon = await spawnDaemon({ stateDir, configFile });
    first = daemon;
  });

  it('builds the snapshot in the background and restores new instances from it', async (t) => {
    if (!requireRoot(t)) return;
    await deploy('heavy', HEAVY, { env: { GREETING: 'hi' } });
    const snapshot = await settledSnapshot('heavy');
    assert.equal(snapshot.state, 'ready', snapshot.reason);
    assert.equal(snapshot.tier, 'tmpfs');
    assert.ok(snapshot.bytes! > 1024 * 1024, `a ${snapshot.bytes}-byte snapshot`);
    assert.ok(snapshot.buildMs! > 0);
    assert.deepEqual(blobs(tmpfsTier), ['heavy-1.blob']);
    const { start, body } = await invoke('heavy', { n: 1 });
    assert.equal(start, 'restore');
    assert.equal(body.size, 300000);
    assert.deepEqual(body.echo, { n: 1 });
    // The init ran once, in the builder's sandbox, with the function's env; the
    // restored process has its own identity and env.
    assert.notEqual(body.initInstance, body.instance);
    assert.equal(body.initGreeting, 'hi');
    assert.equal(body.greeting, 'hi');
    const after = await settledSnapshot('heavy');
    assert.ok(after.restores >= 1 && after.lastRestoreMs! > 0, JSON.stringify(after));
    assert.ok(after.meanRestoreMs! > 0, JSON.stringify(after));
    const node = (await call('GET', '/v1/node')).json as {
      snapshots: {
        policy: string;
        tiers: { name: string; usedBytes: number; snapshots: string[] }[];
      };
    };
    assert.equal(node.snapshots.policy, 'lru-demote');
    assert.deepEqual(
      node.snapshots.tiers.map((tier) => [tier.name, tier.usedBytes, tier.snapshots]),
      [
        ['tmpfs', snapshot.bytes, ['heavy/1']],
        ['disk', 0, []],
      ],
    );
  });

  it('a snapshot that does not restore is dropped, with the reason; its invocation starts cold and is recorded so', async (t) => {
    if (!requireRoot(t)) return;
    // Damaged on its tier (as by a failing disk): Node refuses to deserialise it.
    fs.writeFileSync(path.join(tmpfsTier, 'heavy-1.blob'), Buffer.alloc(4096, 1));
    // The invocation is served by a cold start, and says so: not a restore that worked.
    const failed = await call('POST', '/v1/functions/heavy/invoke', { n: 0 });
    assert.equal(failed.status, 200, JSON.stringify(failed.json));
    assert.equal(failed.headers['x-petri-start'], 'cold');
    assert.equal(failed.json.size, 300000);
    const snapshot = await settledSnapshot('heavy');
    assert.equal(snapshot.state, 'failed');
    assert.match(snapshot.reason!, /^restore failed: /);
    assert.deepEqual(blobs(tmpfsTier), []);
    const id = String(failed.headers['x-petri-invocation-id']);
    const record = (await call('GET', `/v1/invocations/${id}`)).json as {
      startPath: string;
      instanceId: string;
    };
    assert.equal(record.startPath, 'cold');
    // The cold instance's `starting` event names the restore that failed.
    const starting = await startingEvent(record.instanceId);
    assert.equal(starting.startPath, 'cold');
    assert.match(String(starting.restoreFailed), /./);
    const { start, body } = await invoke('heavy', { n: 1 });
    assert.equal(start, 'cold');
    assert.equal(body.size, 300000);
  });

  it('a build with a timer left at the end of init fails with the reason, and the function stays cold-only', async (t) => {
    if (!requireRoot(t)) return;
    await deploy(
      'ticking',
      'setInterval(() => {}, 1000);\nexport async function handler(e) { return e; }\n',
    );
    const snapshot = await settledSnapshot('ticking');
    assert.equal(snapshot.state, 'failed');
    assert.match(snapshot.reason!, /open handles at the end of init: Timeout/);
    const { start, body } = await invoke('ticking', { n: 2 });
    assert.equal(start, 'cold');
    assert.deepEqual(body, { n: 2 });
  });

  it("code that cannot be CommonJS (top-level await) fails the build with esbuild's reason", async (t) => {
    if (!requireRoot(t)) return;
    await deploy(
      'awaiting',
      'await Promise.resolve();\nexport async function handler(e) { return e; }\n',
    );
    const snapshot = await settledSnapshot('awaiting');
    assert.equal(snapshot.state, 'failed');
    assert.match(snapshot.reason!, /CommonJS.*[Tt]op-level await/);
    assert.equal((await invoke('awaiting', { n: 3 })).start, 'cold');
  });

  it('a new version drops the old snapshot and builds its own; an instance sees only its own', async (t) => {
    if (!requireRoot(t)) return;
    await deploy('peer', HEAVY);
    await deploy('heavy', HEAVY.replace('300000', '200000'), { env: { GREETING: 'hi' } });
    const snapshot = await settledSnapshot('heavy');
    assert.equal(snapshot.state, 'ready', snapshot.reason);
    assert.equal((await settledSnapshot('peer')).state, 'ready');
    assert.deepEqual([...blobs(tmpfsTier), ...blobs(diskTier)].sort(), [
      'heavy-2.blob',
      'peer-1.blob',
    ]);
    const { start, body } = await invoke('heavy', { n: 4 });
    assert.equal(start, 'restore');
    assert.equal(body.size, 200000);
    assert.deepEqual(body.besideBlob, ['heavy-2.blob'], "not the peer function's snapshot");
  });

  it('a configuration change (a new version without new code) builds its own snapshot with the new env', async (t) => {
    if (!requireRoot(t)) return;
    const reply = await call('PATCH', '/v1/functions/heavy', { env: { GREETING: 'hello' } });
    assert.equal(reply.status, 200, JSON.stringify(reply.json));
    const snapshot = await settledSnapshot('heavy');
    assert.equal(snapshot.state, 'ready', snapshot.reason);
    assert.deepEqual([...blobs(tmpfsTier), ...blobs(diskTier)].sort(), [
      'heavy-3.blob',
      'peer-1.blob',
    ]);
    const { start, body } = await invoke('heavy', { n: 6 });
    assert.equal(start, 'restore');
    assert.equal(body.initGreeting, 'hello');
  });

  it('after a crash the next start empties the tiers and builds the current version again', async (t) => {
    if (!requireRoot(t)) return;
    await daemon!.stop('SIGKILL');
    assert.deepEqual(blobs(tmpfsTier), ['heavy-3.blob', 'peer-1.blob'], 'a crash leaves them');
    fs.writeFileSync(path.join(tmpfsTier, 'stale-9.blob'), 'left by an older run');
    daemon = await spawnDaemon({ stateDir, configFile, testbed: daemon!.testbed });
    const snapshot = await settledSnapshot('heavy');
    assert.equal(snapshot.state, 'ready', snapshot.reason);
    assert.equal((await settledSnapshot('peer')).state, 'ready');
    assert.deepEqual(blobs(tmpfsTier).sort(), ['heavy-3.blob', 'peer-1.blob']);
    assert.equal((await invoke('heavy', { n: 5 })).start, 'restore');
  });

  it('a stop removes every snapshot and build folder', async (t) => {
    if (!requireRoot(t)) return;
    await daemon!.stop('SIGTERM');
    assert.deepEqual([...blobs(tmpfsTier), ...blobs(diskTier)], []);
    assert.equal(fs.existsSync(path.join(stateDir, 'snapshots', 'build')), false);
  });
});
