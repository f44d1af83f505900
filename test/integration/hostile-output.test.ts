import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { request } from 'undici';
import { spawnDaemon, type Daemon } from '../../src/harness/index.ts';
import { storedLogBytes, type LogRowSizes } from '../../src/store/index.ts';

/**
 * What an instance sends back is hostile input: garbage on its protocol
 * pipe, error codes it may not claim, results and lines far over the
 * limits, log floods. Each attack here fails only the attacker's invocation
 * (with a registered code) while a neighbour function keeps serving, and
 * the daemon's memory stays bounded.
 */

const EXAMPLES = path.resolve(import.meta.dirname, '../../examples');
const MiB = 1024 * 1024;
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'petri-hostile-'));
const codeRoot = path.join(root, 'code');
let daemon: Daemon;

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: unknown;
}

interface ErrorBody {
  code: string;
  message: string;
  details?: Record<string, unknown>;
}

async function call(on: Daemon, method: 'GET' | 'PUT' | 'POST', url: string, body?: unknown) {
  const response = await request(on.url + url, {
    method,
    body: body === undefined ? undefined : JSON.stringify(body),
    headers: { ...on.headers, 'content-type': 'application/json' },
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
  } satisfies Reply;
}

function errorOf(reply: Reply): ErrorBody {
  return (reply.body as { error: ErrorBody }).error;
}

/** Writes a node function whose index.mjs is `source` and deploys it. */
async function deployCode(
  on: Daemon,
  name: string,
  source: string,
  spec: Record<string, unknown> = {},
): Promise<void> {
  const dir = path.join(codeRoot, name);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'index.mjs'), source);
  await deployDir(on, name, dir, { runtime: 'node', ...spec });
}

async function deployDir(
  on: Daemon,
  name: string,
  dir: string,
  spec: Record<string, unknown>,
): Promise<void> {
  const reply = await call(on, 'PUT', `/v1/functions/${name}`, {
    name,
    ...spec,
    source: { path: dir },
  });
  assert.ok(reply.status === 200 || reply.status === 201, JSON.stringify(reply.body));
}

function invoke(name: string, event: unknown = {}, on: Daemon = daemon): Promise<Reply> {
  return call(on, 'POST', `/v1/functions/${name}/invoke`, event);
}

function invocationId(reply: Reply): string {
  return String(reply.headers['x-petri-invocation-id']);
}

async function logsOf(name: string, id: string): Promise<{ line: string; stream: string }[]> {
  // Log lines are written in batches, and what a cap dropped once output stops trailing (1 s).
  await sleep(1300);
  const reply = await call(
    daemon,
    'GET',
    `/v1/functions/${name}/logs?invocation=${id}&limit=10000`,
  );
  return (reply.body as { logs: { line: string; stream: string }[] }).logs;
}

/** The daemon process's resident memory, in bytes. */
function daemonRss(): number {
  const status = fs.readFileSync(`/proc/${daemon.child.pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
}

/** Runs `attack` while sampling the daemon's RSS; returns its result and the RSS growth. */
async function withRss<T>(attack: () => Promise<T>): Promise<{ result: T; growth: number }> {
  const before = daemonRss();
  let peak = before;
  const sampler = setInterval(() => (peak = Math.max(peak, daemonRss())), 10);
  try {
    const result = await attack();
    peak = Math.max(peak, daemonRss());
    return { result, growth: peak - before };
  } finally {
    clearInterval(sampler);
  }
}

/** The neighbour answers, and one of its invocations in flight during an attack survives it. */
async function neighbourServes(during: Promise<Reply>): Promise<void> {
  const inFlight = await during;
  assert.equal(inFlight.status, 200, 'the in-flight neighbour invocation succeeded');
  const after = await invoke('neighbour', { again: true });
  assert.equal(after.status, 200);
  assert.deepEqual(after.body, { again: true });
  assert.equal((await call(daemon, 'GET', '/healthz')).status, 200);
}

/** A frame with `body` as its bytes, as hex (what the writer function takes). */
function frameHex(body: string | Buffer, length?: number): string {
  const bytes = typeof body === 'string' ? Buffer.from(body) : body;
  const prefix = Buffer.alloc(4);
  prefix.writeUInt32BE(length ?? bytes.length);
  return Buffer.concat([prefix, bytes]).toString('hex');
}

/**
 * Waits until the handler's own stdout is flushed (a Node handler's stdout
 * is written asynchronously), so a test can count every line it printed.
 */
const SETTLE = 'function settle() { return new Promise((r) => process.stdout.write("", r)); }\n';

/**
 * Writes straight onto its protocol pipe: `hex` as raw bytes, or `frame` as
 * a well-formed frame around that text, with "{id}" replaced by its own
 * invocation id and "{x:N}" by N x's; then `thenBytes` more bytes. Then it
 * waits, and returns "survived" if it is still alive.
 */
const RAW_WRITER = `
import fs from 'node:fs';
/** fd 3 is non-blocking: retry until the daemon has taken every byte (or killed us). */
function writeAll(bytes) {
  for (let offset = 0; offset < bytes.length; ) {
    try {
      offset += fs.writeSync(3, bytes, offset);
    } catch (err) {
      if (err.code !== 'EAGAIN') throw err;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 2);
    }
  }
}
export async function handler(event, context) {
  if (event.hex) writeAll(Buffer.from(event.hex, 'hex'));
  if (event.frame) {
    const text = event.frame
      .replace('{id}', context.invocationId)
      .replace(/\\{x:(\\d+)\\}/, (_, n) => 'x'.repeat(Number(n)));
    const body = Buffer.from(text);
    const prefix = Buffer.alloc(4);
    prefix.writeUInt32BE(body.length);
    writeAll(Buffer.concat([prefix, body]));
  }
  if (event.thenBytes) writeAll(Buffer.alloc(event.thenBytes, 120));
  await new Promise((resolve) => setTimeout(resolve, event.waitMs ?? 3000));
  return 'survived';
}
`;

before(async () => {
  fs.mkdirSync(codeRoot);
  daemon = await spawnDaemon({ stateDir: path.join(root, 'state') });
  await deployDir(daemon, 'neighbour', path.join(EXAMPLES, 'echo'), { runtime: 'node' });
  await deployCode(daemon, 'raw-writer', RAW_WRITER);
  await deployCode(
    daemon,
    'slow-neighbour',
    'export async function handler(e) { await new Promise((r) => setTimeout(r, e.ms)); return e; }\n',
  );
  assert.equal((await invoke('neighbour', { warm: 1 })).status, 200);
});

after(async () => {
  await daemon?.close();
  fs.rmSync(root, { recursive: true, force: true });
});

describe('a daemon no instance can crash or stall', () => {
  const garbage: [string, () => string, RegExp][] = [
    // The high bit makes the length prefix at least 2 GiB: random, and over any limit.
    [
      '5 random bytes',
      () => {
        const bytes = randomBytes(5);
        bytes[0] |= 0x80;
        return bytes.toString('hex');
      },
      /a frame of \d+ bytes \(the limit is \d+\)/,
    ],
    ['a huge length prefix', () => 'ffffffff' + '78'.repeat(1000), /a frame of 4294967295 bytes/],
    ['a valid length with non-JSON', () => frameHex('this is not json'), /not JSON/],
    [
      'JSON that fails the schema',
      () => frameHex('{"type":"result","value":"no id"}'),
      /not a protocol message \(id: /,
    ],
    ['an unknown frame type', () => frameHex('{"type":"takeover"}'), /not a protocol message/],
  ];
  for (const [name, bytes, reason] of garbage) {
    it(`kills only the instance that writes ${name} to fd 3, with BadFrame`, async () => {
      const neighbour = invoke('slow-neighbour', { ms: 400 });
      await sleep(50);
      const reply = await invoke('raw-writer', { hex: bytes() });
      assert.equal(reply.status, 502, JSON.stringify(reply.body));
      assert.equal(errorOf(reply).code, 'BadFrame');
      assert.match(String(errorOf(reply).details!.reason), reason);
      await neighbourServes(neighbour);
      const next = await invoke('raw-writer', { waitMs: 0 });
      assert.equal(next.body, 'survived');
      assert.equal(next.headers['x-petri-start'], 'cold', 'the bad instance was killed');
    });
  }

  it('refuses a 50 MB frame from its length prefix, without reading the body', async () => {
    const { result: reply, growth } = await withRss(() =>
      invoke('raw-writer', { hex: '03200000', thenBytes: 50 * MiB }),
    );
    assert.equal(errorOf(reply).code, 'BadFrame');
    assert.ok(growth < 16 * MiB, `the daemon grew by ${growth} bytes`);
  });

  it('reports a code an instance may not claim as HandlerError, naming the code sent', async () => {
    for (const sentCode of ['NoSuchCode', 'QueueFull', 'Internal']) {
      const frame = JSON.stringify({
        type: 'error',
        id: '{id}',
        code: sentCode,
        message: `claims ${sentCode}`,
      });
      const reply = await invoke('raw-writer', { frame, waitMs: 0 });
      assert.equal(reply.status, 502);
      assert.equal(errorOf(reply).code, 'HandlerError');
      assert.equal(errorOf(reply).message, `claims ${sentCode}`);
      assert.equal(errorOf(reply).details!.sentCode, sentCode);
    }
    // A well-formed frame is no breach: the instance keeps serving.
    const next = await invoke('raw-writer', { waitMs: 0 });
    // warm, or paused if the idle instance was frozen meanwhile: either way the same one kept serving.
    assert.match(String(next.headers['x-petri-start']), /^(warm|paused)$/);
  });

  it('fails a 50 MB result with ResponseTooLarge at the source, keeping the instance', async () => {
    await deployCode(
      daemon,
      'big-result',
      'export async function handler(e) { return e.small ? "small" : "x".repeat(50 * 1024 * 1024); }\n',
      { memoryMb: 512 },
    );
    assert.equal((await invoke('big-result', { small: true })).body, 'small');
    const neighbour = invoke('slow-neighbour', { ms: 300 });
    const { result: reply, growth } = await withRss(() => invoke('big-result'));
    assert.equal(reply.status, 502);
    assert.equal(errorOf(reply).code, 'ResponseTooLarge');
    assert.match(errorOf(reply).message, /52428802 bytes of JSON, over the 6291456-byte/);
    assert.ok(growth < 16 * MiB, `the daemon grew by ${growth} bytes`);
    await neighbourServes(neighbour);
    const again = await invoke('big-result', { small: true });
    assert.match(String(again.headers['x-petri-start']), /^(warm|paused)$/);
  });

  it('refuses an over-limit result frame from a host that sends one anyway', async () => {
    const frame = `{"type":"result","id":"{id}","value":"{x:${6 * MiB + 1000}}"}`;
    const reply = await invoke('raw-writer', { frame, waitMs: 0 });
    assert.equal(errorOf(reply).code, 'ResponseTooLarge');
    assert.match(errorOf(reply).message, /over the 6291456-byte response limit/);
    const next = await invoke('raw-writer', { waitMs: 0 });
    assert.match(
      String(next.headers['x-petri-start']),
      /^(warm|paused)$/,
      'a well-formed frame does not kill',
    );
  });

  it('stops an exec command printing past the response limit', async () => {
    const dir = path.join(codeRoot, 'exec-flood');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'run.sh'), '#!/bin/sh\ncat > /dev/null\nexec yes\n');
    await deployDir(daemon, 'exec-flood', dir, { runtime: 'exec', command: ['sh', 'run.sh'] });
    const reply = await invoke('exec-flood');
    assert.equal(errorOf(reply).code, 'ResponseTooLarge');
    assert.match(errorOf(reply).message, /printed more than the 6291456-byte response limit/);
  });

  it('cuts a 100 MB single-line print at 16 KB, the daemon holding no more of it', async () => {
    await deployCode(
      daemon,
      'big-line',
      'export async function handler() { process.stdout.write("x".repeat(100 * 1024 * 1024) + "\\n"); await settle(); return "printed"; }\n' +
        SETTLE,
      { memoryMb: 512 },
    );
    const neighbour = invoke('slow-neighbour', { ms: 300 });
    const { result: reply, growth } = await withRss(() => invoke('big-line'));
    assert.equal(reply.body, 'printed');
    assert.ok(growth < 64 * MiB, `the daemon grew by ${growth} bytes`);
    await neighbourServes(neighbour);
    const lines = await logsOf('big-line', invocationId(reply));
    assert.equal(lines.length, 1);
    assert.equal(
      lines[0].line,
      'x'.repeat(16 * 1024) + `…[truncated ${100 * MiB - 16 * 1024} bytes]`,
    );
  });

  it('keeps 1 MB of an invocation log flood and counts the rest as dropped', async () => {
    await deployCode(
      daemon,
      'flood',
      'export async function handler(e) { const line = "f".repeat(999); for (let i = 0; i < e.lines; i++) console.log(line); await settle(); return e.lines; }\n' +
        SETTLE,
    );
    const reply = await invoke('flood', { lines: 5000 });
    assert.equal(reply.body, 5000);
    const lines = await logsOf('flood', invocationId(reply));
    // Each line counts its 999 bytes plus 64 against the 1 MiB cap.
    const kept = Math.floor(MiB / (999 + 64));
    assert.equal(lines.length, kept + 1);
    const dropped = 5000 - kept;
    assert.deepEqual(lines.at(-1), {
      ...lines.at(-1),
      stream: 'stderr',
      line: `[petri: ${dropped} lines / ${dropped * 999} bytes dropped]`,
    });
    const record = (await call(daemon, 'GET', `/v1/invocations/${invocationId(reply)}`)).body as {
      logsDropped: { lines: number; bytes: number };
    };
    assert.deepEqual(record.logsDropped, { lines: dropped, bytes: dropped * 999 });
  });

  it('reports BigInt, circular and throwing results as BadResponse with the function’s stack', async () => {
    await deployCode(
      daemon,
      'unserialisable',
      [
        'export async function handler(e) {',
        '  if (e.kind === "bigint") return { ok: true, totals: [1, { sum: 10n }] };',
        '  if (e.kind === "circular") { const node = { name: "loop" }; node.self = node; return node; }',
        '  return { toJSON() { throw new RangeError("no JSON for you"); } };',
        '}',
        '',
      ].join('\n'),
    );
    const bigint = errorOf(await invoke('unserialisable', { kind: 'bigint' }));
    assert.equal(bigint.code, 'BadResponse');
    assert.match(bigint.message, /BigInt \(at result\.totals\[1\]\.sum\)/);
    const circular = errorOf(await invoke('unserialisable', { kind: 'circular' }));
    assert.equal(circular.code, 'BadResponse');
    assert.match(circular.message, /circular structure[\s\S]*'self' closes the circle/);
    const throwing = errorOf(await invoke('unserialisable', { kind: 'throws' }));
    assert.equal(throwing.code, 'BadResponse');
    assert.match(throwing.message, /no JSON for you/);
    const stack = String(throwing.details!.stack);
    assert.match(
      stack,
      /RangeError: no JSON for you\n\s+at Object\.toJSON \(.*bundle\.mjs:\d+:\d+\)/,
    );
    for (const error of [bigint, circular, throwing]) {
      assert.doesNotMatch(
        String(error.details?.stack),
        /host\.mjs|node:internal/,
        'no Petri frames',
      );
    }
    assert.equal((await invoke('neighbour', { after: 'bigint' })).status, 200);
  });
});

describe('a node whose logs are over their bound', () => {
  let small: Daemon;
  const stateDir = path.join(root, 'small-state');

  before(async () => {
    const configFile = path.join(root, 'small.json');
    fs.writeFileSync(
      configFile,
      JSON.stringify({
        logs: { invocationBytes: 256 * 1024, maxBytes: 512 * 1024, expiryIntervalMs: 100 },
      }),
    );
    small = await spawnDaemon({ stateDir, configFile });
  });

  after(async () => {
    await small?.close();
  });

  it('deletes the oldest lines to stay under logs.maxBytes, keeping the newest', async () => {
    await deployCode(
      small,
      'flood',
      'export async function handler(e) { const line = "g".repeat(999); for (let i = 0; i < 1000; i++) console.log(line); await settle(); return e.n; }\n' +
        SETTLE,
    );
    const ids: string[] = [];
    for (let n = 0; n < 8; n++) ids.push(invocationId(await invoke('flood', { n }, small)));
    await sleep(1500); // the caps' last lines (1 s), a flush, then an expiry run
    const db = new Database(path.join(stateDir, 'petri.db'), { readonly: true });
    try {
      const total = (db.prepare('SELECT bytes FROM log_usage').get() as { bytes: number }).bytes;
      const recounted = (
        db
          .prepare(
            `SELECT octet_length(line) AS line,
               octet_length(function_name) + COALESCE(octet_length(invocation_id), 0) AS indexed,
               octet_length(instance_id) + length(stream) AS other FROM logs`,
          )
          .all() as LogRowSizes[]
      ).reduce((sum, row) => sum + storedLogBytes(row), 0);
      assert.equal(recounted, total, 'the running count matches the rows');
      // Eight invocations wrote about 2.8 MiB on disk; expiry keeps at most 512 KiB.
      assert.ok(total <= 512 * 1024, `the store holds ${total} bytes of log`);
      const perInvocation = db
        .prepare(
          `SELECT invocation_id AS id, COUNT(*) AS n FROM logs WHERE line NOT LIKE '[petri:%'
           GROUP BY invocation_id`,
        )
        .all() as { id: string; n: number }[];
      const counts = new Map(perInvocation.map((row) => [row.id, row.n]));
      assert.equal(counts.get(ids[0]), undefined, 'the oldest invocation’s lines are gone');
      assert.ok((counts.get(ids.at(-1)!) ?? 0) > 200, 'the newest invocation’s lines are kept');
    } finally {
      db.close();
    }
  });
});
