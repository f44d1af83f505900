import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { runCli } from '../../src/cli/program.ts';
import type { CliIo } from '../../src/cli/verb.ts';
import {
  functionView,
  invocationView,
  nodeView,
  NOW,
  startFakeNode,
  type FakeNode,
} from './fake-node.ts';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

let node: FakeNode;
let dir: string;

async function cli(args: string[], io: Partial<CliIo> = {}): Promise<Run> {
  let stdout = '';
  let stderr = '';
  const code = await runCli(['--url', node.url, ...args], {
    stdout: (t) => (stdout += t),
    stderr: (t) => (stderr += t),
    now: () => NOW,
    ...io,
  });
  return { code, stdout, stderr };
}

/** The real entry point in a child process: proves main.ts wires the verbs and exit codes. */
async function spawnCli(args: string[]): Promise<Run> {
  const main = join(import.meta.dirname, '../../src/cli/main.ts');
  const { PETRI_URL: _ignored, ...env } = process.env;
  try {
    const { stdout, stderr } = await promisify(execFile)(
      process.execPath,
      ['--import', 'tsx', main, ...args],
      { env },
    );
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

before(async () => {
  node = await startFakeNode();
  dir = await mkdtemp(join(tmpdir(), 'petri-cli-'));
  await writeFile(
    join(dir, 'petri.json'),
    JSON.stringify({ name: 'hello', runtime: 'node', memoryMb: 128, env: { A: '1' } }),
  );
  await writeFile(join(dir, 'index.js'), 'export async function handler() { return 1; }\n');
  await writeFile(join(dir, 'event.json'), '{"from": "file"}');
});

after(async () => {
  await node.close();
  await rm(dir, { recursive: true, force: true });
});

beforeEach(() => {
  node.requests.length = 0;
  node.routes.clear();
});

describe('deploy', () => {
  beforeEach(() => {
    node.routes.set('PUT /v1/functions/hello', () => ({
      status: 201,
      body: functionView({ version: 4 }),
    }));
  });

  it('sends the folder path to a local node and prints the new version', async () => {
    const run = await cli(['deploy', dir]);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, 'deployed hello version 4\n');
    assert.equal(node.requests.length, 1);
    const body = node.requests[0].body as Record<string, unknown>;
    assert.deepEqual(body.source, { path: dir });
    assert.equal(body.runtime, 'node');
    assert.equal(node.requests[0].headers['content-type'], 'application/json');
  });

  it('lets flags override petri.json, merging env, keepAlive and network', async () => {
    node.routes.set('PUT /v1/functions/other', () => ({ body: functionView({ name: 'other' }) }));
    const run = await cli([
      'deploy',
      dir,
      '--name',
      'other',
      '--memory',
      '256',
      '--timeout',
      '5000',
      '--concurrency',
      '4',
      '--max-instances',
      '3',
      '--handler',
      'main.run',
      '--env',
      'B=2',
      '--env',
      'C=x=y',
      '--keep-alive',
      '0',
      '--egress',
    ]);
    assert.equal(run.code, 0, run.stderr);
    const { source: _source, ...spec } = node.requests[0].body as Record<string, unknown>;
    assert.deepEqual(spec, {
      name: 'other',
      runtime: 'node',
      handler: 'main.run',
      memoryMb: 256,
      timeoutMs: 5000,
      concurrency: 4,
      maxInstances: 3,
      env: { A: '1', B: '2', C: 'x=y' },
      keepAlive: { ms: 0 },
      network: { egress: true },
    });
  });

  it('sends a base64 tar.gz with --archive, holding petri.json at the root', async () => {
    const run = await cli(['deploy', dir, '--archive']);
    assert.equal(run.code, 0, run.stderr);
    const source = (node.requests[0].body as { source: { archive?: string; path?: string } })
      .source;
    assert.equal(source.path, undefined);
    assert.ok(source.archive);
    const listing = await listArchive(source.archive);
    assert.ok(listing.includes('./petri.json'), listing.join(','));
    assert.ok(listing.includes('./index.js'));
  });

  it('sends a tar.gz instead when the node does not allow deploys from that folder', async () => {
    node.routes.set('PUT /v1/functions/hello', (req) => {
      const source = (req.body as { source: { path?: string } }).source;
      if (source.path === undefined) return { status: 201, body: functionView({ version: 5 }) };
      const message = `source.path "${source.path}" is outside them`;
      return { status: 403, body: { error: { code: 'SourceNotAllowed', message } } };
    });
    const run = await cli(['deploy', dir]);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, 'deployed hello version 5\n');
    const sources = node.requests.map((r) => Object.keys((r.body as { source: object }).source));
    assert.deepEqual(sources, [['path'], ['archive']]);
  });

  it('prints the FunctionView with --json', async () => {
    const run = await cli(['--json', 'deploy', dir]);
    assert.equal(run.code, 0);
    assert.deepEqual(JSON.parse(run.stdout), functionView({ version: 4 }));
  });

  it('fails clearly without contacting the node when petri.json is missing', async () => {
    const empty = await mkdtemp(join(tmpdir(), 'petri-cli-empty-'));
    try {
      const run = await cli(['deploy', empty]);
      assert.equal(run.code, 1);
      assert.equal(run.stderr, `Error InvalidSpec: no petri.json in ${empty}\n`);
      assert.equal(node.requests.length, 0);
    } finally {
      await rm(empty, { recursive: true });
    }
  });

  it('prints InvalidSpec issues one per line and exits 1', async () => {
    node.routes.set('PUT /v1/functions/hello', () => ({
      status: 400,
      body: {
        error: {
          code: 'InvalidSpec',
          message: 'invalid function spec: memoryMb too small; runtime invalid',
          details: {
            issues: [
              { field: 'memoryMb', message: 'too small' },
              { field: 'runtime', message: 'invalid' },
            ],
          },
        },
      },
    }));
    const run = await cli(['deploy', dir]);
    assert.equal(run.code, 1);
    assert.equal(run.stdout, '');
    assert.equal(
      run.stderr,
      'Error InvalidSpec: invalid function spec: memoryMb too small; runtime invalid\n' +
        '  memoryMb: too small\n' +
        '  runtime: invalid\n',
    );
  });
});

describe('invoke', () => {
  beforeEach(() => {
    node.routes.set('POST /v1/functions/hello/invoke', (req) =>
      req.query.get('mode') === 'async'
        ? { status: 202, body: { invocationId: 'inv-async' } }
        : {
            body: { echo: req.body },
            headers: {
              'x-petri-invocation-id': 'inv-7',
              'x-petri-start': 'cold',
              'x-petri-duration-ms': '41.5',
            },
          },
    );
  });

  it('sends {} by default and prints the result as pretty JSON', async () => {
    const run = await cli(['invoke', 'hello']);
    assert.equal(run.code, 0, run.stderr);
    assert.deepEqual(node.requests[0].body, {});
    assert.equal(run.stdout, '{\n  "echo": {}\n}\n');
    assert.equal(run.stderr, '', 'nothing on a non-TTY stderr');
  });

  it('reads --data @file and shows start path and timing on a TTY stderr', async () => {
    const run = await cli(['invoke', 'hello', '--data', `@${join(dir, 'event.json')}`], {
      stderrIsTTY: true,
    });
    assert.equal(run.code, 0, run.stderr);
    assert.deepEqual(node.requests[0].body, { from: 'file' });
    assert.match(run.stderr, /start cold .*42 ms.*invocation inv-7/);
  });

  it('rejects invalid JSON data with InvalidRequest without contacting the node', async () => {
    const run = await cli(['invoke', 'hello', '--data', '{nope']);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /^Error InvalidRequest: --data is not valid JSON/);
    assert.equal(node.requests.length, 0);
  });

  it('prints invocationId, start, durationMs and result with --json', async () => {
    const run = await cli(['invoke', 'hello', '--data', '[1,2]', '--json']);
    assert.deepEqual(JSON.parse(run.stdout), {
      invocationId: 'inv-7',
      start: 'cold',
      durationMs: 41.5,
      result: { echo: [1, 2] },
    });
  });

  it('queues with --async and prints the invocation id', async () => {
    const run = await cli(['invoke', 'hello', '--async']);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(node.requests[0].query.get('mode'), 'async');
    assert.equal(run.stdout, 'inv-async\n');
  });

  it('prints the error code and message of a failed invocation and exits 1', async () => {
    node.routes.set('POST /v1/functions/hello/invoke', () => ({
      status: 502,
      body: { error: { code: 'HandlerError', message: 'boom', details: { stack: 'at x' } } },
    }));
    const run = await cli(['invoke', 'hello']);
    assert.equal(run.code, 1);
    assert.equal(run.stdout, '');
    assert.equal(run.stderr, 'Error HandlerError: boom\n  stack: at x\n');
  });
});

describe('ls, get, rm', () => {
  it('ls prints a table sorted by name', async () => {
    node.routes.set('GET /v1/functions', () => ({
      body: { functions: [functionView({ name: 'zeta' }), functionView()] },
    }));
    const run = await cli(['ls']);
    assert.equal(run.code, 0, run.stderr);
    const lines = run.stdout.trimEnd().split('\n');
    assert.match(lines[0], /^NAME\s+VERSION\s+RUNTIME\s+MEMORY\s+IDLE\s+BUSY\s+QUEUE\s+UPDATED$/);
    assert.match(lines[1], /^hello\s+1\s+node\s+128 MB\s+2\s+1\s+3\s+2m ago$/);
    assert.match(lines[2], /^zeta\s/);
  });

  it('ls --json prints the API body', async () => {
    const body = { functions: [functionView()] };
    node.routes.set('GET /v1/functions', () => ({ body }));
    const run = await cli(['ls', '--json']);
    assert.deepEqual(JSON.parse(run.stdout), body);
  });

  it('get prints the spec flattened and the instances', async () => {
    node.routes.set('GET /v1/functions/hello', () => ({ body: functionView() }));
    const run = await cli(['get', 'hello']);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^instances:\s+idle 2, paused 0, busy 1, starting 0, stopping 0$/m);
    assert.match(run.stdout, /^keepAlive\.ms:\s+600000$/m);
    assert.match(run.stdout, /^env\.GREETING:\s+hi$/m);
    assert.match(run.stdout, /^queue length:\s+3$/m);
  });

  it('get of an unknown function prints FunctionNotFound and exits 1', async () => {
    node.routes.set('GET /v1/functions/nope', () => ({
      status: 404,
      body: { error: { code: 'FunctionNotFound', message: 'no function named nope' } },
    }));
    const run = await cli(['get', 'nope']);
    assert.equal(run.code, 1);
    assert.equal(run.stderr, 'Error FunctionNotFound: no function named nope\n');
  });

  it('rm deletes and confirms', async () => {
    node.routes.set('DELETE /v1/functions/hello', () => ({
      body: { name: 'hello', deleted: true },
    }));
    const run = await cli(['rm', 'hello']);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(node.requests[0].method, 'DELETE');
    assert.equal(run.stdout, 'removed hello\n');
  });
});

describe('logs', () => {
  const line = (at: number, text: string) => ({
    at,
    invocationId: 'inv-1',
    instanceId: 'i-1',
    stream: 'stdout' as const,
    line: text,
  });

  it('prints lines oldest first and passes --limit and --invocation', async () => {
    node.routes.set('GET /v1/functions/hello/logs', () => ({
      body: { logs: [line(NOW, 'one'), { ...line(NOW + 1, 'two'), stream: 'stderr' }] },
    }));
    const run = await cli(['logs', 'hello', '--limit', '5', '--invocation', 'inv-1']);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(node.requests[0].query.get('limit'), '5');
    assert.equal(node.requests[0].query.get('invocation'), 'inv-1');
    assert.equal(
      run.stdout,
      '2025-01-02T03:04:05.000Z stdout inv-1 one\n' + '2025-01-02T03:04:05.001Z stderr inv-1 two\n',
    );
  });

  it('--follow polls with since and skips lines it already printed', async () => {
    const pages = [
      [line(NOW, 'one')],
      [line(NOW, 'one'), line(NOW + 5, 'two')], // an inclusive `since` repeats "one"
      [line(NOW + 9, 'three')],
    ];
    const controller = new AbortController();
    node.routes.set('GET /v1/functions/hello/logs', () => {
      const page = pages.shift() ?? [];
      if (pages.length === 0) setImmediate(() => controller.abort());
      return { body: { logs: page } };
    });
    const run = await cli(['logs', 'hello', '--follow'], {
      signal: controller.signal,
      pollIntervalMs: 5,
    });
    assert.equal(run.code, 0, run.stderr);
    assert.deepEqual(
      run.stdout
        .trimEnd()
        .split('\n')
        .map((l) => l.split(' ').at(-1)),
      ['one', 'two', 'three'],
    );
    assert.equal(node.requests[0].query.get('since'), null);
    assert.equal(node.requests[1].query.get('since'), String(NOW));
    assert.equal(node.requests[2].query.get('since'), String(NOW + 5));
  });
});

describe('invocations', () => {
  it('prints a table and passes --function and --limit', async () => {
    node.routes.set('GET /v1/invocations', () => ({
      body: {
        invocations: [
          invocationView(),
          invocationView({
            id: 'inv-2',
            status: 'failed',
            startPath: undefined,
            error: { code: 'Timeout', message: 'too slow' },
            resources: {},
          }),
        ],
      },
    }));
    const run = await cli(['invocations', '--function', 'hello', '--limit', '2']);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(node.requests[0].query.get('function'), 'hello');
    assert.equal(node.requests[0].query.get('limit'), '2');
    const lines = run.stdout.trimEnd().split('\n');
    assert.match(lines[0], /^ID\s+FUNCTION\s+STATUS\s+START\s+TOTAL_MS\s+CPU_MS\s+PEAK_MEM/);
    assert.match(lines[0], /NET_IN\s+NET_OUT\s+ERROR$/);
    assert.match(
      lines[1],
      /^inv-1\s+hello\s+succeeded\s+warm\s+12\s+7\s+48 MiB\s+1\.5 KiB\s+200 B\s+-$/,
    );
    assert.match(lines[2], /^inv-2\s+hello\s+failed\s+-\s+.*Timeout$/);
  });

  it('invocation <id> shows timings and the result', async () => {
    node.routes.set('GET /v1/invocations/inv-1', () => ({ body: invocationView() }));
    const run = await cli(['invocation', 'inv-1']);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^total:\s+12 ms$/m);
    assert.match(run.stdout, /result:\n\{\n {2}"ok": true\n\}/);
  });

  it('invocation <id> lists the phases it announced, in order', async () => {
    const microtasks = [
      { name: 'read', class: 'io', startMs: 0.2, durationMs: 40, waitedMs: 0 },
      { name: 'sort', class: 'cpu', startMs: 40.2, durationMs: 90.5, waitedMs: 12 },
    ];
    node.routes.set('GET /v1/invocations/inv-1', () => ({
      body: invocationView({ microtasks, microtasksDropped: 3 }),
    }));
    const run = await cli(['invocation', 'inv-1']);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^MICROTASK\s+CLASS\s+START_MS\s+DURATION_MS\s+WAITED_MS$/m);
    assert.match(run.stdout, /^read\s+io\s+0\.2\s+40\s+0$/m);
    assert.match(run.stdout, /^sort\s+cpu\s+40\s+91\s+12$/m);
    assert.match(run.stdout, /3 more announcements past the per-invocation cap/);
  });
});

describe('status', () => {
  it('prints node facts and the isolation mechanisms', async () => {
    node.routes.set('GET /v1/node', () => ({ body: nodeView() }));
    const run = await cli(['status']);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^memory:\s+256 MB in use of 4096 MB$/m);
    assert.match(run.stdout, /^uptime:\s+1m 30s$/m);
    assert.match(run.stdout, /^groups:\s+1 running, 3 members \(running 3, waiting 0,/m);
    assert.match(run.stdout, /^daemon node\.js:\s+v24\.22\.3$/m);
    assert.match(run.stdout, /^instance node\.js:\s+v20\.20\.2 \(\/usr\/bin\/node\)$/m);
    assert.match(run.stdout, /^MECHANISM\s+ACTIVE\s+REASON$/m);
    assert.match(run.stdout, /^cgroup-cpu\s+yes\s+-$/m);
    assert.match(run.stdout, /^netns\s+no\s+not root$/m);
    assert.match(run.stdout, /^prewarm:\s+none configured$/m);
  });

  it('prints each prewarm set with its ready runtimes and held memory', async () => {
    const set = {
      runtime: 'node' as const,
      memoryMb: 256,
      egress: false,
      mode: 'reactive' as const,
      ready: 2,
      starting: 1,
      target: 3,
      bound: 4,
    };
    node.routes.set('GET /v1/node', () => ({
      body: { ...nodeView(), prewarm: { sets: [set], memoryMb: 512 } },
    }));
    const run = await cli(['status']);
    assert.equal(run.code, 0, run.stderr);
    assert.match(
      run.stdout,
      /^prewarm:\s+node 256 MB reactive: 2\/3 ready, 1 starting, 4 bound \(512 MB held\)$/m,
    );
  });

  it('says when an older node does not report its Node versions', async () => {
    const {
      nodeVersion: _n,
      instanceNodeBinary: _b,
      instanceNodeVersion: _v,
      ...older
    } = nodeView();
    node.routes.set('GET /v1/node', () => ({ body: older }));
    const run = await cli(['status']);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^daemon node\.js:\s+not reported$/m);
    assert.match(run.stdout, /^instance node\.js:\s+not reported$/m);
  });

  it('--json prints the API body', async () => {
    node.routes.set('GET /v1/node', () => ({ body: nodeView() }));
    const run = await cli(['--json', 'status']);
    assert.deepEqual(JSON.parse(run.stdout), nodeView());
  });
});

describe('failures', () => {
  it('reports a non-registry error body with the HTTP status', async () => {
    node.routes.set('GET /v1/functions', () => ({ status: 502, raw: '<html>bad gateway</html>' }));
    const run = await cli(['ls']);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /^Error Internal: node answered HTTP 502 for GET \/v1\/functions/);
  });

  it('exits non-zero on a usage error', async () => {
    const run = await cli(['deploy', dir, '--memory', 'lots']);
    assert.notEqual(run.code, 0);
    assert.match(run.stderr, /--memory <mb>' argument 'lots' is invalid/);
    assert.equal(node.requests.length, 0);
  });
});

describe('--json failures', () => {
  /** Asserts exit 1, nothing on stderr, and returns the one JSON line on stdout. */
  function failure(run: Run): unknown {
    assert.equal(run.code, 1, run.stdout);
    assert.equal(run.stderr, '');
    assert.equal(run.stdout.split('\n').length, 2, 'one line');
    return JSON.parse(run.stdout);
  }

  it('invoke prints the error body and the invocation id the node named', async () => {
    node.routes.set('POST /v1/functions/hello/invoke', () => ({
      status: 502,
      headers: { 'x-petri-invocation-id': 'inv-9', 'x-petri-start': 'warm' },
      body: { error: { code: 'HandlerError', message: 'boom', details: { stack: 'at x' } } },
    }));
    const run = await cli(['--json', 'invoke', 'hello']);
    assert.deepEqual(failure(run), {
      error: { code: 'HandlerError', message: 'boom', details: { stack: 'at x' } },
      invocationId: 'inv-9',
    });
  });

  it('a failure before contacting the node has its code and no invocation id', async () => {
    const parsed = failure(await cli(['invoke', 'hello', '--data', '{nope', '--json']));
    assert.equal(node.requests.length, 0);
    assert.deepEqual(Object.keys(parsed as object), ['error']);
    const { error } = parsed as { error: { code: string; message: string } };
    assert.equal(error.code, 'InvalidRequest');
    assert.match(error.message, /^--data is not valid JSON/);
  });

  it('every verb answers an API error as JSON', async () => {
    const missing = { error: { code: 'FunctionNotFound', message: 'no function named nope' } };
    node.routes.set('GET /v1/functions/nope', () => ({ status: 404, body: missing }));
    node.routes.set('DELETE /v1/functions/nope', () => ({ status: 404, body: missing }));
    node.routes.set('GET /v1/functions/nope/logs', () => ({ status: 404, body: missing }));
    for (const verb of [['get'], ['rm'], ['logs'], ['logs', '--follow']]) {
      assert.deepEqual(failure(await cli(['--json', ...verb, 'nope'])), missing, verb.join(' '));
    }
  });

  it('names an unreachable node NodeUnreachable', async () => {
    // The later --url wins over the fake node's.
    const parsed = failure(await cli(['--url', 'http://127.0.0.1:9', '--json', 'status']));
    const { error } = parsed as { error: { code: string; message: string } };
    assert.equal(error.code, 'NodeUnreachable');
    assert.match(error.message, /^cannot reach Petri node at http:\/\/127\.0\.0\.1:9: /);
  });
});

describe('the petri process (main.ts)', () => {
  it('exits 1 with "Error <Code>: <message>" on an API error', async () => {
    node.routes.set('DELETE /v1/functions/nope', () => ({
      status: 404,
      body: { error: { code: 'FunctionNotFound', message: 'no function named nope' } },
    }));
    const run = await spawnCli(['--url', node.url, 'rm', 'nope']);
    assert.equal(run.code, 1);
    assert.equal(run.stderr, 'Error FunctionNotFound: no function named nope\n');
  });

  it('says it cannot reach the node when nothing listens', async () => {
    const run = await spawnCli(['--url', 'http://127.0.0.1:9', 'status']);
    assert.equal(run.code, 1);
    assert.equal(run.stdout, '');
    assert.match(
      run.stderr,
      /^Error: cannot reach Petri node at http:\/\/127\.0\.0\.1:9: .*ECONNREFUSED/,
    );
  });

  it('prints the API JSON with --json', async () => {
    node.routes.set('GET /v1/functions', () => ({ body: { functions: [] } }));
    const run = await spawnCli(['--url', node.url, '--json', 'ls']);
    assert.equal(run.code, 0, run.stderr);
    assert.deepEqual(JSON.parse(run.stdout), { functions: [] });
  });
});

async function listArchive(base64: string): Promise<string[]> {
  const file = join(dir, '..', `petri-cli-test-${process.pid}.tgz`);
  await writeFile(file, Buffer.from(base64, 'base64'));
  try {
    const { stdout } = await promisify(execFile)('tar', ['-tzf', file]);
    return stdout.trim().split('\n');
  } finally {
    await rm(file, { force: true });
  }
}
