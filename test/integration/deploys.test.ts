import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { spawnDaemon, type Daemon } from '../../src/harness/index.ts';
import { announceLargeBody } from '../helpers/large-body.ts';
import { archiveOf, gzipBomb } from '../helpers/tar.ts';
import { tempDir } from '../helpers/tmp.ts';

const MiB = 1024 * 1024;
const EXAMPLES = path.resolve(import.meta.dirname, '../../examples');
const stateDir = tempDir('petri-deploys-');
let daemon: Daemon;

interface Reply {
  status: number;
  body: { error?: { code: string; message: string; details?: { entry?: string } } } & Record<
    string,
    unknown
  >;
}

async function call(
  method: 'GET' | 'PUT' | 'POST' | 'DELETE' | 'PATCH',
  url: string,
  body?: unknown,
) {
  const response = await request(daemon.url + url, {
    method,
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    headers: { ...daemon.headers, 'content-type': 'application/json' },
  });
  const text = await response.body.text();
  return { status: response.statusCode, body: text ? JSON.parse(text) : {} } as Reply;
}

async function neighbourServes(): Promise<void> {
  const reply = await call('POST', '/v1/functions/echo/invoke', { still: 'serving' });
  assert.equal(reply.status, 200, JSON.stringify(reply.body));
  assert.deepEqual(reply.body, { still: 'serving' });
}

/** Bytes the daemon has passed to write(2) so far. */
function daemonBytesWritten(): number {
  const io = fs.readFileSync(`/proc/${daemon.child.pid}/io`, 'utf8');
  return Number(/^wchar: (\d+)$/m.exec(io)![1]);
}

async function until(condition: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

before(async () => {
  const configFile = path.join(tempDir('petri-deploys-config-'), 'config.json');
  fs.writeFileSync(
    configFile,
    JSON.stringify({
      deploy: { maxArchiveBytes: 2 * MiB, maxCodeBytes: 8 * MiB, keepVersions: 2 },
    }),
  );
  daemon = await spawnDaemon({ stateDir, configFile });
  // The examples folder is allowed by default, as `npm start` needs.
  const spec = JSON.parse(fs.readFileSync(path.join(EXAMPLES, 'echo', 'petri.json'), 'utf8'));
  const deployed = await call('PUT', '/v1/functions/echo', {
    ...spec,
    source: { path: path.join(EXAMPLES, 'echo') },
  });
  assert.equal(deployed.status, 201, JSON.stringify(deployed.body));
});

after(async () => {
  await daemon?.close();
});

describe('deploys against a real daemon', () => {
  it('refuses source.path "/etc" and "/" with SourceNotAllowed (403), never a 500', async () => {
    for (const dir of ['/etc', '/']) {
      const reply = await call('PUT', '/v1/functions/stolen', {
        runtime: 'exec',
        command: ['cat', 'shadow'],
        source: { path: dir },
      });
      assert.equal(reply.status, 403, JSON.stringify(reply.body));
      assert.equal(reply.body.error?.code, 'SourceNotAllowed');
      assert.ok(reply.body.error?.message.includes(`"${dir}"`));
    }
    assert.ok(!fs.existsSync(path.join(stateDir, 'functions', 'stolen')));
    await neighbourServes();
  });

  it('refuses an archive holding a FIFO, naming the entry', async () => {
    const archive = archiveOf([
      { name: 'index.js', data: 'x' },
      { name: 'lib/pipe', type: '6' },
    ]);
    const reply = await call('PUT', '/v1/functions/fifo', {
      runtime: 'exec',
      command: ['true'],
      source: { archive },
    });
    assert.equal(reply.status, 400);
    assert.equal(reply.body.error?.code, 'InvalidSpec');
    assert.equal(reply.body.error?.details?.entry, 'lib/pipe');
    await neighbourServes();
  });

  it('stops a gzip bomb at the cap: the state dir does not grow', async () => {
    const before = daemonBytesWritten();
    const reply = await call('PUT', '/v1/functions/bomb', {
      runtime: 'exec',
      command: ['true'],
      source: { archive: gzipBomb(1024, MiB) },
    });
    const written = daemonBytesWritten() - before;
    assert.equal(reply.status, 400);
    assert.match(reply.body.error!.message, /holds more than 8 MB/);
    assert.ok(written < 8 * MiB + 2 * MiB, `the daemon wrote ${written} bytes for an 8 MB cap`);
    assert.ok(!fs.existsSync(path.join(stateDir, 'functions', 'bomb')));
    await neighbourServes();
  });

  it('answers an archive far over the compressed cap with PayloadTooLarge', async () => {
    // Announce the whole body but send only its start (see announceLargeBody).
    const reply = await announceLargeBody(daemon, 'PUT', '/v1/functions/huge', 5 * MiB);
    assert.match(reply, /^HTTP\/1\.1 413/);
    assert.match(reply, /"code":"PayloadTooLarge"/);
    await neighbourServes();
  });

  it('prunes old versions and frees every version on DELETE once its instance stops', async () => {
    const dir = tempDir('petri-deploys-fn-');
    const fnDir = path.join(stateDir, 'functions', 'gone');
    for (let v = 1; v <= 3; v++) {
      fs.writeFileSync(
        path.join(dir, 'index.mjs'),
        `export async function handler() { return { v: ${v} }; }\n`,
      );
      const reply = await call('PUT', '/v1/functions/gone', {
        runtime: 'node',
        source: { path: dir },
      });
      assert.ok(reply.status < 300, JSON.stringify(reply.body));
    }
    assert.deepEqual(fs.readdirSync(fnDir).sort(), ['v2', 'v3']);
    const invoked = await call('POST', '/v1/functions/gone/invoke', {});
    assert.deepEqual(invoked.body, { v: 3 });
    const removed = await call('DELETE', '/v1/functions/gone');
    assert.equal(removed.status, 200);
    await until(() => !fs.existsSync(fnDir), 'the function folder to go');
    await neighbourServes();
  });

  it('serves versions by alias (kept warm across config-only versions), canary and rollback', async () => {
    const archive = archiveOf([
      { name: 'index.mjs', data: 'export const handler = () => ({ v: process.env.V });\n' },
    ]);
    const created = await call('PUT', '/v1/functions/ver', {
      runtime: 'node',
      env: { V: 'one' },
      source: { archive },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const invoke = async (query = '') => {
      const response = await request(`${daemon.url}/v1/functions/ver/invoke${query}`, {
        method: 'POST',
        body: '{}',
        headers: daemon.headers,
      });
      const body = (await response.body.json()) as { v?: string };
      assert.equal(response.statusCode, 200, JSON.stringify(body));
      const header = (name: string) => String(response.headers[name]);
      return { v: body.v, version: header('x-petri-version'), start: header('x-petri-start') };
    };
    const patched = await call('PATCH', '/v1/functions/ver', { env: { V: 'two' } });
    assert.equal(patched.body.version, 2, JSON.stringify(patched.body));
    assert.deepEqual(await invoke(), { v: 'two', version: '2', start: 'cold' });
    assert.equal((await call('PUT', '/v1/functions/ver/aliases/live', { version: 1 })).status, 201);
    assert.deepEqual(await invoke('?alias=live'), { v: 'one', version: '1', start: 'cold' });
    // Two more config-only versions: v1 is past keepVersions (2), yet the alias keeps it warm.
    for (const V of ['three', 'four']) await call('PATCH', '/v1/functions/ver', { env: { V } });
    // Kept: served by its idle instance, running or (after the pause grace) thawed.
    const kept = await invoke('?alias=live');
    assert.deepEqual({ ...kept, start: undefined }, { v: 'one', version: '1', start: undefined });
    assert.ok(['warm', 'paused'].includes(kept.start), kept.start);
    const versions = (await call('GET', '/v1/functions/ver/versions')).body.versions as {
      version: number;
      codeDigest: string;
    }[];
    assert.deepEqual(
      versions.map((v) => v.version),
      [1, 3, 4],
    );
    assert.equal(new Set(versions.map((v) => v.codeDigest)).size, 1, 'one code digest');
    await call('PUT', '/v1/functions/ver/aliases/live', {
      version: 1,
      canary: { version: 4, weight: 0.5 },
    });
    const seen: string[] = [];
    for (let i = 0; i < 10; i += 1) seen.push((await invoke('?alias=live')).version);
    assert.equal(seen.filter((v) => v === '4').length, 5, seen.join());
    // Rollback is moving the alias; v1 then goes (no alias names it, past keepVersions).
    await call('PUT', '/v1/functions/ver/aliases/live', { version: 3 });
    assert.deepEqual(await invoke('?alias=live'), { v: 'three', version: '3', start: 'cold' });
    await until(() => !fs.existsSync(path.join(stateDir, 'functions', 'ver', 'v1')), 'v1 pruned');
    const gone = await call('POST', '/v1/functions/ver/invoke?version=1', {});
    assert.equal(gone.body.error?.code, 'VersionNotFound');
    await call('DELETE', '/v1/functions/ver');
    await neighbourServes();
  });
});
