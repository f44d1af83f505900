import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { spawnDaemon, type Daemon } from '../../src/harness/index.ts';
import { announceLargeBody } from '../helpers/large-body.ts';
import { nodeTagFrom } from '../../src/net/index.ts';

const EXAMPLES = path.resolve(import.meta.dirname, '../../examples');
const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'petri-it-'));
const codeRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'petri-it-code-'));
let daemon: Daemon;
/** A namespace kept across the daemon's restart, removed at the end whatever happens. */
let keptTestbed: Daemon['testbed'];

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: unknown;
}

async function call(
  method: 'GET' | 'PUT' | 'POST' | 'DELETE',
  url: string,
  body?: unknown,
): Promise<Reply> {
  const response = await request(daemon.url + url, {
    method,
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    headers: { ...daemon.headers, 'content-type': 'application/json' },
  });
  const text = await response.body.text();
  return {
    status: response.statusCode,
    headers: response.headers,
    // A string result comes back as text/plain, anything else as JSON.
    body: /^text\/plain/.test(String(response.headers['content-type']))
      ? text
      : text
        ? JSON.parse(text)
        : undefined,
  };
}

function errorOf(reply: Reply): {
  code: string;
  message: string;
  details?: Record<string, unknown>;
} {
  return (
    reply.body as { error: { code: string; message: string; details?: Record<string, unknown> } }
  ).error;
}

/** Writes a function folder under codeRoot and returns its path. */
function fn(name: string, files: Record<string, string>): string {
  const dir = path.join(codeRoot, name);
  fs.mkdirSync(dir, { recursive: true });
  for (const [file, text] of Object.entries(files)) fs.writeFileSync(path.join(dir, file), text);
  return dir;
}

async function deploy(
  name: string,
  dir: string,
  spec: Record<string, unknown> = {},
): Promise<Reply> {
  const fromFile = fs.existsSync(path.join(dir, 'petri.json'))
    ? JSON.parse(fs.readFileSync(path.join(dir, 'petri.json'), 'utf8'))
    : { runtime: 'node' };
  const reply = await call('PUT', `/v1/functions/${name}`, {
    ...fromFile,
    name,
    ...spec,
    source: { path: dir },
  });
  assert.ok(reply.status === 201 || reply.status === 200, JSON.stringify(reply.body));
  return reply;
}

function invoke(name: string, event: unknown = {}): Promise<Reply> {
  return call('POST', `/v1/functions/${name}/invoke`, event);
}

function instanceProcesses(): string[] {
  try {
    return execFileSync('pgrep', ['-f', `${stateDir}/runtime/host.mjs`], { encoding: 'utf8' })
      .split('\n')
      .filter(Boolean);
  } catch {
    return [];
  }
}

before(async () => {
  daemon = await spawnDaemon({ stateDir });
});

after(async () => {
  await daemon?.close();
  await keptTestbed?.close();
  fs.rmSync(stateDir, { recursive: true, force: true });
  fs.rmSync(codeRoot, { recursive: true, force: true });
});

describe('a real daemon', () => {
  it('serves health and node facts', async () => {
    assert.deepEqual((await call('GET', '/healthz')).body, { status: 'ok' });
    const node = (await call('GET', '/v1/node')).body as {
      sandboxDriver: string;
      memoryBudgetMb: number;
      nodeVersion: string;
      instanceNodeBinary: string;
      instanceNodeVersion: string;
    };
    assert.equal(node.sandboxDriver, 'process');
    assert.ok(node.memoryBudgetMb > 0);
    // spawnDaemon runs this process's binary, and instances default to the daemon's.
    assert.equal(node.nodeVersion, process.version);
    assert.equal(node.instanceNodeBinary, process.execPath);
    assert.equal(node.instanceNodeVersion, process.version);
  });

  it('runs JS (ESM), TypeScript and CommonJS node handlers, cold then warm', async () => {
    await deploy('hello-js', path.join(EXAMPLES, 'hello-js'));
    await deploy('hello-ts', path.join(EXAMPLES, 'hello-ts'));
    await deploy('echo', path.join(EXAMPLES, 'echo'));
    const first = await invoke('hello-js', { name: 'Ada' });
    assert.equal(first.status, 200);
    assert.equal((first.body as { message: string }).message, 'Hello, Ada!');
    assert.equal(first.headers['x-petri-start'], 'cold');
    const second = await invoke('hello-js', { name: 'Bo' });
    // Reused: warm, or paused if more than the pause grace passed between the two.
    assert.match(String(second.headers['x-petri-start']), /^(warm|paused)$/);
    assert.deepEqual((await invoke('hello-ts', { numbers: [1, 2, 3] })).body, {
      sum: 6,
      by: 'hello-ts',
    });
    assert.deepEqual((await invoke('echo', { deep: { list: [1, null, 'x'] } })).body, {
      deep: { list: [1, null, 'x'] },
    });
  });

  it('runs an exec function once per request and an http function as a long-running server', async () => {
    await deploy('exec-python', path.join(EXAMPLES, 'exec-python'));
    const words = await invoke('exec-python', { text: 'a bb ccc' });
    assert.deepEqual(words.body, { words: 3, longest: 'ccc' });
    await deploy('http-server', path.join(EXAMPLES, 'http-server'));
    const one = await invoke('http-server', { text: 'hi' });
    const two = await invoke('http-server', { text: 'yo' });
    assert.deepEqual(one.body, { served: 1, upper: 'HI' });
    assert.deepEqual(two.body, { served: 2, upper: 'YO' }, 'the same server process served both');
  });

  it("captures the function's output lines per invocation", async () => {
    const reply = await invoke('hello-js', { name: 'Logs' });
    const id = reply.headers['x-petri-invocation-id'];
    await sleep(100);
    const logs = (await call('GET', `/v1/functions/hello-js/logs?invocation=${id}`)).body as {
      logs: { line: string; stream: string }[];
    };
    assert.deepEqual(
      logs.logs.map((l) => [l.stream, l.line]),
      [['stdout', 'greeting Logs']],
    );
  });

  it('records the timing breakdown and resources of each invocation', async () => {
    const reply = await invoke('echo', { x: 1 });
    await sleep(100);
    const record = (await call('GET', `/v1/invocations/${reply.headers['x-petri-invocation-id']}`))
      .body as {
      status: string;
      timings: Record<string, number>;
      resources: Record<string, number>;
    };
    assert.equal(record.status, 'succeeded');
    for (const key of ['queuedMs', 'initMs', 'executionMs', 'totalMs']) {
      assert.equal(typeof record.timings[key], 'number', key);
    }
    assert.ok(record.resources.peakMemoryBytes > 1_000_000, 'peak memory is measured');
  });

  it('runs async invocations and keeps their results', async () => {
    const accepted = await call('POST', '/v1/functions/echo/invoke?mode=async', { later: true });
    assert.equal(accepted.status, 202);
    const { invocationId } = accepted.body as { invocationId: string };
    let record: { status: string; result?: unknown } = { status: 'queued' };
    for (let i = 0; i < 50 && record.status !== 'succeeded'; i++) {
      await sleep(50);
      record = (await call('GET', `/v1/invocations/${invocationId}`)).body as typeof record;
    }
    assert.equal(record.status, 'succeeded');
    assert.deepEqual(record.result, { later: true });
  });

  it('reports InvalidSpec with every invalid field, and bundling errors at deploy', async () => {
    const bad = await call('PUT', '/v1/functions/bad', {
      runtime: 'node',
      memoryMb: 10,
      concurrency: 0,
      source: { path: codeRoot },
    });
    assert.equal(bad.status, 400);
    const fields = (errorOf(bad).details!.issues as { field: string }[]).map((i) => i.field).sort();
    assert.deepEqual(fields, ['concurrency', 'memoryMb']);
    const broken = fn('broken', { 'index.ts': 'export const handler = (: number) => 1;\n' });
    const reply = await call('PUT', '/v1/functions/broken', {
      runtime: 'node',
      source: { path: broken },
    });
    assert.equal(errorOf(reply).code, 'InvalidSpec');
    assert.match(errorOf(reply).message, /index\.ts:1:\d+/);
  });

  it('maps bad requests to FunctionNotFound, InvalidRequest and PayloadTooLarge', async () => {
    assert.equal(errorOf(await invoke('missing')).code, 'FunctionNotFound');
    const malformed = await call('POST', '/v1/functions/echo/invoke', '{"not json');
    assert.equal(malformed.status, 400);
    assert.equal(errorOf(malformed).code, 'InvalidRequest');
    // Announce 7 MB but send only the start: the node must answer from the header
    // alone (a client streaming the whole body may see the socket close under it).
    const huge = await announceLargeBody(
      daemon,
      'POST',
      '/v1/functions/echo/invoke',
      7 * 1024 * 1024,
    );
    assert.match(huge, /^HTTP\/1\.1 413/);
    assert.match(huge, /"code":"PayloadTooLarge"/);
    assert.equal((await invoke('echo', { still: 'serving' })).status, 200);
  });

  it('reports a thrown error as HandlerError with message and stack', async () => {
    const dir = fn('thrower', {
      'index.mjs': 'export async function handler() { throw new TypeError("bad input"); }\n',
    });
    await deploy('thrower', dir);
    const reply = await invoke('thrower');
    assert.equal(reply.status, 502);
    assert.equal(errorOf(reply).code, 'HandlerError');
    assert.equal(errorOf(reply).message, 'bad input');
    assert.match(String(errorOf(reply).details!.stack), /TypeError: bad input/);
  });

  it('kills an instance past its timeout with Timeout, then serves from a new one', async () => {
    const dir = fn('sleeper', {
      'index.mjs':
        'export async function handler(e) { await new Promise(r => setTimeout(r, e.ms)); return e.ms; }\n',
    });
    await deploy('sleeper', dir, { timeoutMs: 300 });
    const slow = await invoke('sleeper', { ms: 5000 });
    assert.equal(slow.status, 504);
    assert.equal(errorOf(slow).code, 'Timeout');
    const next = await invoke('sleeper', { ms: 1 });
    assert.equal(next.body, 1);
    assert.equal(next.headers['x-petri-start'], 'cold');
  });

  it('reports a crashing instance as InstanceCrashed with exit code and stderr tail', async () => {
    const dir = fn('crasher', {
      'index.mjs':
        'export async function handler() { console.error("about to die"); setTimeout(() => process.exit(7), 20); return new Promise(() => {}); }\n',
    });
    await deploy('crasher', dir);
    const reply = await invoke('crasher');
    assert.equal(errorOf(reply).code, 'InstanceCrashed');
    assert.equal(errorOf(reply).details!.exitCode, 7);
    assert.match(String(errorOf(reply).details!.stderr), /about to die/);
  });

  it('reports non-JSON exec output as BadResponse', async () => {
    const dir = fn('chatty', { 'run.sh': '#!/bin/sh\ncat > /dev/null\necho "this is not json"\n' });
    await deploy('chatty', dir, { runtime: 'exec', command: ['sh', 'run.sh'] });
    const reply = await invoke('chatty');
    assert.equal(errorOf(reply).code, 'BadResponse');
    assert.match(errorOf(reply).message, /this is not json/);
  });

  it('queues within bounds: QueueFull past the size, QueueTimeout past the wait', async () => {
    await deploy('single', path.join(codeRoot, 'sleeper'), {
      maxInstances: 1,
      queue: { maxSize: 1, maxWaitMs: 200 },
    });
    await invoke('single', { ms: 1 });
    const busy = invoke('single', { ms: 800 });
    await sleep(50);
    const queued = invoke('single', { ms: 1 });
    await sleep(20);
    const full = await invoke('single', { ms: 1 });
    assert.equal(full.status, 429);
    assert.equal(errorOf(full).code, 'QueueFull');
    const timedOut = await queued;
    assert.equal(errorOf(timedOut).code, 'QueueTimeout');
    assert.equal((await busy).status, 200);
  });

  it('fails to start with a clear error when its port is taken, leaving nothing behind', async () => {
    const otherDir = fs.mkdtempSync(path.join(os.tmpdir(), 'petri-it-busy-'));
    const port = new URL(daemon.url).port;
    try {
      await assert.rejects(
        spawnDaemon({ stateDir: otherDir, testbed: daemon.testbed, args: ['--port', port] }),
        /exited with 1 before listening:[\s\S]*Error: cannot listen on .*:\d+: the address is in use/,
      );
      const tag = nodeTagFrom(path.resolve(otherDir));
      const cgroups = execFileSync('find', ['/sys/fs/cgroup', '-type', 'd', '-name', `*${tag}*`], {
        encoding: 'utf8',
      });
      assert.equal(cgroups.trim(), '');
      assert.equal((await call('GET', '/healthz')).status, 200, 'the running node is unaffected');
    } finally {
      fs.rmSync(otherDir, { recursive: true, force: true });
    }
  });

  it('keeps functions across a crash and fails unfinished async invocations with NodeRestarted', async () => {
    await deploy('long-sleeper', path.join(codeRoot, 'sleeper'), { timeoutMs: 60_000 });
    const accepted = await call('POST', '/v1/functions/long-sleeper/invoke?mode=async', {
      ms: 20_000,
    });
    const { invocationId } = accepted.body as { invocationId: string };
    for (let i = 0; i < 100 && instanceProcesses().length === 0; i++) await sleep(50);
    // Wait until the record says running (the cold start may be slow on a busy machine).
    let status = '';
    for (let i = 0; i < 200 && status !== 'running'; i++) {
      await sleep(50);
      status = ((await call('GET', `/v1/invocations/${invocationId}`)).body as { status: string })
        .status;
    }
    assert.equal(status, 'running');
    const testbed = daemon.testbed;
    keptTestbed = testbed;
    await daemon.stop('SIGKILL');
    // Instances notice the daemon's pipe close and exit on their own.
    for (let i = 0; i < 40 && instanceProcesses().length > 0; i++) await sleep(50);
    assert.deepEqual(instanceProcesses(), [], 'no instance outlives its daemon');
    daemon = await spawnDaemon({ stateDir, testbed, token: daemon.token });
    const names = (
      (await call('GET', '/v1/functions')).body as { functions: { name: string }[] }
    ).functions.map((f) => f.name);
    for (const name of ['hello-js', 'hello-ts', 'echo', 'exec-python', 'http-server', 'sleeper']) {
      assert.ok(names.includes(name), name);
    }
    const record = (await call('GET', `/v1/invocations/${invocationId}`)).body as {
      status: string;
      error: { code: string };
    };
    assert.equal(record.status, 'failed');
    assert.equal(record.error.code, 'NodeRestarted');
    assert.equal((await invoke('echo', { again: 1 })).status, 200);
  });
});
