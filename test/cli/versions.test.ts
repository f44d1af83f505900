import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { runCli } from '../../src/cli/program.ts';
import type { CliIo } from '../../src/cli/verb.ts';
import { functionView, NOW, startFakeNode, type FakeNode } from './fake-node.ts';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
  bytes: Buffer;
}

let node: FakeNode;
let dir: string;

async function cli(args: string[], io: Partial<CliIo> = {}): Promise<Run> {
  let stdout = '';
  let stderr = '';
  const chunks: Uint8Array[] = [];
  const code = await runCli(['--url', node.url, ...args], {
    stdout: (t) => (stdout += t),
    stderr: (t) => (stderr += t),
    stdoutBytes: (data) => chunks.push(data),
    now: () => NOW,
    ...io,
  });
  return { code, stdout, stderr, bytes: Buffer.concat(chunks) };
}

before(async () => {
  node = await startFakeNode();
  dir = await mkdtemp(join(tmpdir(), 'petri-cli-versions-'));
  // hello's petri.json: GREETING gone, B added, memory changed, timeout left to its default.
  await writeFile(
    join(dir, 'petri.json'),
    JSON.stringify({ name: 'hello', runtime: 'node', memoryMb: 256, env: { B: '2' } }),
  );
});
after(async () => {
  await node.close();
  await rm(dir, { recursive: true, force: true });
});
beforeEach(() => {
  node.requests.length = 0;
  node.routes.clear();
});

const INVOKE = 'POST /v1/functions/hello/invoke';
const HEADERS = { 'x-petri-invocation-id': 'inv-1', 'x-petri-version': '3' };

describe('invoke results as they are', () => {
  it('prints a text result exactly, without adding a newline for a pipe', async () => {
    node.routes.set(INVOKE, () => ({
      raw: 'hello\nworld',
      headers: { ...HEADERS, 'content-type': 'text/plain; charset=utf-8' },
    }));
    const run = await cli(['invoke', 'hello']);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, 'hello\nworld');
    const json = await cli(['--json', 'invoke', 'hello']);
    assert.deepEqual(JSON.parse(json.stdout), {
      invocationId: 'inv-1',
      version: 3,
      kind: 'text',
      result: 'hello\nworld',
    });
  });

  it('writes a binary result to a pipe, to --out, as base64 under --json, never to a terminal', async () => {
    const payload = Buffer.from([0, 255, 10, 13, 128, 1]);
    node.routes.set(INVOKE, () => ({
      bytes: payload,
      headers: { ...HEADERS, 'content-type': 'application/octet-stream' },
    }));
    const piped = await cli(['invoke', 'hello']);
    assert.equal(piped.code, 0, piped.stderr);
    assert.deepEqual(piped.bytes, payload);
    const out = join(dir, 'result.bin');
    const written = await cli(['invoke', 'hello', '--out', out]);
    assert.equal(written.code, 0, written.stderr);
    assert.equal(written.stdout, '');
    assert.deepEqual(await readFile(out), payload);
    const json = JSON.parse((await cli(['--json', 'invoke', 'hello'])).stdout);
    assert.equal(json.encoding, 'base64');
    assert.deepEqual(Buffer.from(json.result, 'base64'), payload);
    const tty = await cli(['invoke', 'hello'], { stdoutIsTTY: true });
    assert.equal(tty.code, 1);
    assert.match(tty.stderr, /6 bytes of binary data: pass --out FILE/);
    assert.equal(tty.bytes.length, 0);
  });

  it('sends a qualifier as ?version or ?alias', async () => {
    node.routes.set(INVOKE, () => ({ body: 1, headers: HEADERS }));
    await cli(['invoke', 'hello:3']);
    await cli(['invoke', 'hello:live']);
    await cli(['invoke', 'hello', '--qualifier', 'canary']);
    await cli(['invoke', 'hello:live', '--async']);
    assert.deepEqual(
      node.requests.map((r) => [r.path, r.query.toString()]),
      [
        ['/v1/functions/hello/invoke', 'version=3'],
        ['/v1/functions/hello/invoke', 'alias=live'],
        ['/v1/functions/hello/invoke', 'alias=canary'],
        ['/v1/functions/hello/invoke', 'mode=async&alias=live'],
      ],
    );
    const both = await cli(['--json', 'invoke', 'hello:3', '--qualifier', '4']);
    assert.equal(JSON.parse(both.stdout).error.code, 'InvalidRequest');
  });
});

describe('configuration without code', () => {
  it('config --set and --unset send a merge patch', async () => {
    node.routes.set('PATCH /v1/functions/hello', () => ({ body: functionView({ version: 4 }) }));
    const run = await cli([
      'config',
      'hello',
      '--set',
      'memoryMb=256',
      '--set',
      'env.PORT=8080',
      '--set',
      'keepAlive.ms=0',
      '--unset',
      'maxInstances',
      '--unset',
      'env.OLD',
    ]);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, 'configured hello version 4\n');
    assert.deepEqual(node.requests[0]?.body, {
      memoryMb: 256,
      env: { PORT: '8080', OLD: null },
      keepAlive: { ms: 0 },
      maxInstances: null,
    });
    const nothing = await cli(['config', 'hello']);
    assert.equal(nothing.code, 1);
    assert.match(nothing.stderr, /nothing to change/);
  });

  it('deploy --config-only patches the deployed spec towards petri.json, sending no code', async () => {
    node.routes.set('GET /v1/functions/hello', () => ({ body: functionView() }));
    node.routes.set('PATCH /v1/functions/hello', () => ({ body: functionView({ version: 2 }) }));
    const run = await cli(['deploy', dir, '--config-only']);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, 'configured hello version 2\n');
    const patch = node.requests.find((r) => r.method === 'PATCH')?.body;
    assert.deepEqual(patch, {
      handler: null,
      timeoutMs: null,
      concurrency: null,
      keepAlive: null,
      network: null,
      snapshot: null,
      queue: null,
      memoryMb: 256,
      env: { GREETING: null, B: '2' },
    });
    assert.ok(!node.requests.some((r) => r.method === 'PUT'), 'no code sent');
  });
});

describe('versions, aliases and url', () => {
  it('lists versions and aliases, sets and removes an alias', async () => {
    node.routes.set('GET /v1/functions/hello/versions', () => ({
      body: {
        versions: [
          {
            version: 1,
            spec: { memoryMb: 128, timeoutMs: 3000 },
            createdAt: NOW,
            codeDigest: 'abcdef0123456789',
            current: false,
            aliases: ['live'],
          },
          {
            version: 2,
            spec: { memoryMb: 256, timeoutMs: 3000 },
            createdAt: NOW,
            codeDigest: 'abcdef0123456789',
            current: true,
            aliases: [],
          },
        ],
      },
    }));
    const alias = {
      name: 'live',
      functionName: 'hello',
      version: 1,
      canary: { version: 2, weight: 0.1 },
      createdAt: NOW,
      updatedAt: NOW,
    };
    node.routes.set('PUT /v1/functions/hello/aliases/live', () => ({ body: alias }));
    node.routes.set('GET /v1/functions/hello/aliases', () => ({ body: { aliases: [alias] } }));
    node.routes.set('GET /v1/functions/hello/aliases/live', () => ({ body: alias }));
    node.routes.set('DELETE /v1/functions/hello/aliases/live', () => ({
      body: { name: 'live', functionName: 'hello', deleted: true },
    }));
    const versions = await cli(['versions', 'hello']);
    assert.match(versions.stdout, /^VERSION\s+CURRENT\s+MEMORY/);
    assert.match(versions.stdout, /\n1\s+128 MB\s+3000 ms\s+abcdef012345\s+live/);
    assert.match(versions.stdout, /\n2\s+\*\s+256 MB/);
    const set = await cli([
      'alias',
      'set',
      'hello',
      'live',
      '1',
      '--canary',
      '2',
      '--weight',
      '0.1',
    ]);
    assert.equal(set.stdout, 'alias live of hello -> version 1 and 2 for 10% of calls\n');
    assert.deepEqual(node.requests.at(-1)?.body, {
      version: 1,
      canary: { version: 2, weight: 0.1 },
    });
    assert.match((await cli(['alias', 'ls', 'hello'])).stdout, /live\s+1\s+2 \(10%\)/);
    assert.match((await cli(['alias', 'get', 'hello', 'live'])).stdout, /canary:\s+2 \(10%\)/);
    assert.equal(
      (await cli(['alias', 'rm', 'hello', 'live'])).stdout,
      'removed alias live of hello\n',
    );
    const lonely = await cli(['--json', 'alias', 'set', 'hello', 'live', '1', '--weight', '0.5']);
    assert.equal(JSON.parse(lonely.stdout).error.code, 'InvalidRequest');
  });

  it('url prints the function URL of a function that exists', async () => {
    node.routes.set('GET /v1/functions/hello', () => ({ body: functionView() }));
    assert.equal((await cli(['url', 'hello'])).stdout, `${node.url}/fn/hello\n`);
    assert.deepEqual(JSON.parse((await cli(['--json', 'url', 'hello'])).stdout), {
      name: 'hello',
      url: `${node.url}/fn/hello`,
    });
    const missing = await cli(['--json', 'url', 'nope']);
    assert.equal(missing.code, 1);
  });
});

describe('--json usage errors', () => {
  it('are one JSON line on stdout, nothing on stderr', async () => {
    for (const args of [
      ['--json', 'invoke'],
      ['--json', 'alias', 'set', 'hello', 'live', '1', '--weight', 'lots'],
      ['--json', 'config', 'hello', '--set', 'nokey'],
      ['--json', 'deploy', dir, '--memory', 'lots'],
    ]) {
      const run = await cli(args);
      assert.notEqual(run.code, 0, args.join(' '));
      assert.equal(run.stderr, '', args.join(' '));
      const lines = run.stdout.trimEnd().split('\n');
      assert.equal(lines.length, 1, run.stdout);
      const body = JSON.parse(lines[0]!);
      assert.equal(body.error.code, 'InvalidRequest', args.join(' '));
      assert.doesNotMatch(body.error.message, /^error:/);
    }
    assert.equal(node.requests.length, 0);
  });
});
