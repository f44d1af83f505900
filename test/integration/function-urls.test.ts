/**
 * Function URLs against a real daemon: the same requests to a plain server
 * and to that server behind Petri give the same responses (minus the
 * documented proxy differences), Lambda-format events and responses for
 * node and exec functions, auth per spec, and the records' method, path and
 * status.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { spawnDaemon, type Daemon } from '../../src/harness/index.ts';

const SERVER = path.resolve(import.meta.dirname, '../helpers/conformance-server.mjs');
const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'petri-fnurl-'));
const codeRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'petri-fnurl-code-'));
let daemon: Daemon;
let plain: ChildProcess;
let plainUrl: string;

interface Reply {
  status: number;
  headers: [string, string][];
  body: Buffer;
}

type Method = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'DELETE' | 'PATCH' | 'OPTIONS';

interface Case {
  name: string;
  method: Method;
  path: string;
  headers?: Record<string, string | string[]>;
  body?: Buffer | string | Readable;
}

/** Headers that describe the connection or the moment, and Petri's own: not compared. */
const RESPONSE_DIFFERENCES = new Set([
  'date',
  'connection',
  'keep-alive',
  'transfer-encoding',
  'x-petri-invocation-id',
  'x-petri-version',
]);
/** What the proxy adds to or changes in the request the server sees. */
const REQUEST_DIFFERENCES = new Set([
  'host',
  'connection',
  'keep-alive',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-petri-invocation-id',
]);

function pairs(raw: string[], drop: Set<string>): [string, string][] {
  const out: [string, string][] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if (!drop.has(raw[i].toLowerCase())) out.push([raw[i].toLowerCase(), raw[i + 1]]);
  }
  return out;
}

async function send(base: string, c: Case, extra: Record<string, string> = {}): Promise<Reply> {
  const response = await request(base + c.path, {
    method: c.method,
    headers: { ...c.headers, ...extra },
    body: c.body,
  });
  const body = Buffer.from(await response.body.arrayBuffer());
  const raw: string[] = [];
  for (const [name, value] of Object.entries(response.headers)) {
    for (const v of Array.isArray(value) ? value : [value ?? '']) raw.push(name, v);
  }
  return { status: response.statusCode, headers: pairs(raw, RESPONSE_DIFFERENCES), body };
}

/** The echo route's view of the request, without what a proxy legitimately changes. */
function comparable(reply: Reply): unknown {
  const type = reply.headers.find(([name]) => name === 'content-type')?.[1] ?? '';
  if (!type.includes('json') || reply.body.length === 0) return reply;
  const echoed = JSON.parse(reply.body.toString()) as { headers: string[] };
  // The echo's length differs by the request headers the proxy adds.
  const headers = reply.headers.filter(([name]) => name !== 'content-length');
  return {
    ...reply,
    headers,
    body: { ...echoed, headers: pairs(echoed.headers, REQUEST_DIFFERENCES) },
  };
}

function fn(name: string, files: Record<string, string>): string {
  const dir = path.join(codeRoot, name);
  fs.mkdirSync(dir, { recursive: true });
  for (const [file, text] of Object.entries(files)) fs.writeFileSync(path.join(dir, file), text);
  return dir;
}

async function deploy(name: string, spec: Record<string, unknown>, dir: string): Promise<void> {
  const response = await request(`${daemon.url}/v1/functions/${name}`, {
    method: 'PUT',
    headers: { ...daemon.headers, 'content-type': 'application/json' },
    body: JSON.stringify({ ...spec, source: { path: dir } }),
  });
  const text = await response.body.text();
  assert.ok(response.statusCode < 300, text);
}

async function json(url: string, init: { method?: Method; body?: string } = {}) {
  const response = await request(daemon.url + url, {
    method: init.method ?? 'GET',
    headers: daemon.headers,
    body: init.body,
  });
  const text = await response.body.text();
  return { status: response.statusCode, headers: response.headers, text };
}

interface RawExchange {
  /** What the node sent back, whole, up to its close. */
  received: string;
  /** Whether all of the body went out before the node closed (false: the write failed). */
  bodySent: boolean;
  /** Whether the connection ended in an error (a reset) rather than a close. */
  reset: boolean;
}

/**
 * A client that writes a declared body as fast as the connection takes it
 * and reads whatever comes back meanwhile, as a browser or curl does: a
 * failing write does not stop it reading the answer.
 */
function rawPost(base: string, urlPath: string, bodyBytes: number): Promise<RawExchange> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve) => {
    // Half-open: it goes on sending after the node's FIN, and ends its side once the body is out.
    const socket = net.connect({ host: hostname, port: Number(port), allowHalfOpen: true });
    const chunks: Buffer[] = [];
    let reset = false;
    let left = bodyBytes;
    const chunk = Buffer.alloc(64 * 1024, 1);
    const pump = (): void => {
      while (left > 0 && !socket.destroyed) {
        const piece = chunk.subarray(0, Math.min(chunk.length, left));
        left -= piece.length;
        if (!socket.write(piece)) return void socket.once('drain', pump);
      }
      if (left === 0) socket.end();
    };
    socket.on('data', (data: Buffer) => chunks.push(data));
    socket.on('error', () => (reset = true));
    socket.on('close', () =>
      resolve({ received: Buffer.concat(chunks).toString('latin1'), bodySent: left === 0, reset }),
    );
    socket.write(
      `POST ${urlPath} HTTP/1.1\r\nhost: ${hostname}\r\ncontent-length: ${bodyBytes}\r\n\r\n`,
    );
    pump();
  });
}

/** Asserts a raw exchange got the registered 413 and a `Connection: close`. */
function assertRefused(exchange: RawExchange): void {
  const [head = '', body = ''] = exchange.received.split('\r\n\r\n');
  assert.match(head, /^HTTP\/1\.1 413 /, exchange.received.slice(0, 200));
  assert.match(head, /\r\nconnection: close/i);
  assert.equal(JSON.parse(body).error.code, 'PayloadTooLarge');
}

before(async () => {
  const serverDir = fn('conformance', { 'server.mjs': fs.readFileSync(SERVER, 'utf8') });
  daemon = await spawnDaemon({ stateDir });
  await deploy(
    'conf',
    { runtime: 'http', command: ['node', 'server.mjs'], concurrency: 8 },
    serverDir,
  );
  plain = spawn(process.execPath, [path.join(serverDir, 'server.mjs')], {
    env: { ...process.env, PORT: '0' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise<string>((resolve) =>
    plain.stdout!.on('data', (chunk: Buffer) => {
      const match = /listening on (\d+)/.exec(chunk.toString());
      if (match) resolve(match[1]);
    }),
  );
  plainUrl = `http://127.0.0.1:${port}`;
});

after(async () => {
  plain?.kill();
  await daemon?.close();
  fs.rmSync(stateDir, { recursive: true, force: true });
  fs.rmSync(codeRoot, { recursive: true, force: true });
});

const BINARY = Buffer.from(Array.from({ length: 70_000 }, (_, i) => (i * 7) % 256));

const CASES: Case[] = [
  { name: 'a GET', method: 'GET', path: '/echo' },
  { name: 'the root', method: 'GET', path: '' },
  { name: 'a HEAD', method: 'HEAD', path: '/echo' },
  { name: 'an OPTIONS', method: 'OPTIONS', path: '/echo' },
  { name: 'a DELETE', method: 'DELETE', path: '/echo/item/7' },
  {
    name: 'a POST with JSON',
    method: 'POST',
    path: '/echo',
    headers: { 'content-type': 'application/json' },
    body: '{"a":[1,2]}',
  },
  { name: 'a PATCH with an empty body', method: 'PATCH', path: '/echo', body: '' },
  { name: 'a PUT without a body', method: 'PUT', path: '/echo' },
  {
    name: 'encoded characters and repeated query keys',
    method: 'GET',
    path: '/echo/a%20b/%2Fc/%C3%A9?x=1&x=2&y=%C3%A9&empty=&flag',
  },
  {
    name: 'headers with several values and cookies',
    method: 'GET',
    path: '/echo',
    headers: { 'x-many': ['a', 'b, c'], cookie: 'k1=v1; k2=v2', accept: 'text/html, */*;q=0.1' },
  },
  {
    name: 'a hop-by-hop request header and one the Connection header names',
    method: 'GET',
    path: '/echo',
    headers: { 'x-hop': 'secret', connection: 'x-hop' },
  },
  { name: 'a long path', method: 'GET', path: `/echo/${'segment/'.repeat(60)}end` },
  { name: 'a binary upload and download', method: 'POST', path: '/binary', body: BINARY },
  { name: 'a 204', method: 'GET', path: '/status/204' },
  { name: 'a 304', method: 'GET', path: '/status/304', headers: { 'if-none-match': '"v1"' } },
  { name: "the function's own 418", method: 'GET', path: '/status/418' },
  { name: 'a redirect (not followed)', method: 'GET', path: '/redirect' },
  { name: 'an answer after a 103 early hint', method: 'GET', path: '/early-hints' },
  { name: 'several set-cookie headers', method: 'GET', path: '/cookies' },
  { name: 'a 2 MiB streamed response', method: 'GET', path: '/big' },
];

describe('function URLs of an http function', () => {
  for (const c of CASES) {
    it(`relay ${c.name} as the server answers it`, async () => {
      const direct = await send(plainUrl, c);
      const proxied = await send(`${daemon.url}/fn/conf`, c);
      assert.deepEqual(comparable(proxied), comparable(direct));
    });
  }

  it('drop the hop-by-hop response headers and those Connection names', async () => {
    const reply = await send(`${daemon.url}/fn/conf`, { name: '', method: 'GET', path: '/hop' });
    const names = reply.headers.map(([name]) => name);
    assert.ok(!names.includes('x-private'), names.join());
    assert.ok(!names.includes('keep-alive'));
    assert.equal(reply.body.toString(), 'hop');
  });

  it('record method, path and status, and keep the instance warm across requests', async () => {
    const response = await request(`${daemon.url}/fn/conf/status/418?q=1`);
    await response.body.text();
    const id = String(response.headers['x-petri-invocation-id']);
    // The record is written after the reply; poll briefly for it.
    let view: { http?: unknown; status?: string; startPath?: string } = {};
    for (let i = 0; i < 50 && view.status !== 'succeeded'; i++) {
      const got = await json(`/v1/invocations/${id}`);
      if (got.status === 200) view = JSON.parse(got.text);
      else await new Promise((r) => setTimeout(r, 20));
    }
    assert.deepEqual(view.http, { method: 'GET', path: '/status/418', status: 418 });
    assert.equal(view.status, 'succeeded');
    assert.equal(view.startPath, 'warm');
  });

  it('refuse a body over the payload limit with the registered 413', async () => {
    // The node answers as soon as the head declares too much, then reads and drops the rest
    // (bounded) before closing, so a client still writing gets the answer, not a reset.
    const exchange = await rawPost(daemon.url, '/fn/conf/echo', 7 * 1024 * 1024);
    assertRefused(exchange);
    assert.ok(exchange.bodySent && !exchange.reset, 'the node cut the upload instead of closing');
    const response = await request(`${daemon.url}/fn/conf/echo`, { method: 'POST', body: 'ok' });
    assert.equal(response.statusCode, 200);
    await response.body.text();
  });

  it('stream a chunked upload of 1 MiB to the server', async () => {
    const upload = Buffer.from(Array.from({ length: 1 << 20 }, (_, i) => (i * 13) % 256));
    const chunked = () => Readable.from([upload.subarray(0, 1000), upload.subarray(1000)]);
    const c: Case = { name: '', method: 'POST', path: '/binary' };
    const direct = await send(plainUrl, { ...c, body: chunked() });
    const proxied = await send(`${daemon.url}/fn/conf`, { ...c, body: chunked() });
    assert.equal(proxied.status, 200);
    assert.equal(proxied.body.length, upload.length);
    assert.deepEqual(proxied.body, direct.body);
  });

  it('refuse a chunked body that goes past the payload limit with 413', async () => {
    const chunk = Buffer.alloc(1024 * 1024, 2);
    const body = Readable.from(Array.from({ length: 7 }, () => chunk));
    const response = await request(`${daemon.url}/fn/conf/echo`, { method: 'POST', body });
    const text = await response.body.text();
    assert.equal(response.statusCode, 413);
    assert.equal(JSON.parse(text).error.code, 'PayloadTooLarge');
  });

  it('refuse a response declared past the response limit with 502, and cut one that goes past it', async () => {
    const declared = await request(`${daemon.url}/fn/conf/huge-declared`);
    const text = await declared.body.text();
    assert.equal(declared.statusCode, 502);
    assert.equal(JSON.parse(text).error.code, 'ResponseTooLarge');
    const streamed = await request(`${daemon.url}/fn/conf/huge`);
    assert.equal(streamed.statusCode, 200);
    const id = String(streamed.headers['x-petri-invocation-id']);
    const received = await streamed.body.arrayBuffer().then(
      (bytes) => bytes.byteLength,
      () => -1,
    );
    assert.ok(received < 7 * 1024 * 1024, `the client got ${received} bytes`);
    let view: { error?: { code?: string } } = {};
    for (let i = 0; i < 50 && !view.error; i++) {
      const got = await json(`/v1/invocations/${id}`);
      if (got.status === 200) view = JSON.parse(got.text);
      if (!view.error) await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(view.error?.code, 'ResponseTooLarge');
  });

  it('end a server that overruns its timeout with 504, and one that dies with 502', async () => {
    const dir = fn('conformance', { 'server.mjs': fs.readFileSync(SERVER, 'utf8') });
    await deploy(
      'hangs',
      { runtime: 'http', command: ['node', 'server.mjs'], timeoutMs: 500 },
      dir,
    );
    for (const [route, status, code] of [
      ['/hang', 504, 'Timeout'],
      ['/exit', 502, 'InstanceCrashed'],
      ['/status/99', 502, 'BadResponse'],
    ] as const) {
      const response = await request(`${daemon.url}/fn/hangs${route}`);
      const text = await response.body.text();
      assert.equal(response.statusCode, status, `${route}: ${text}`);
      assert.equal(JSON.parse(text).error.code, code, `${route}: ${text}`);
    }
    // The node kept serving: the next request gets a fresh instance.
    const after = await request(`${daemon.url}/fn/hangs/status/204`);
    assert.equal(after.statusCode, 204);
  });

  it("serve an unmodified static file server (Python's http.server)", async () => {
    const dir = fn('static', { 'hello.txt': 'hello from a file\n', 'data.bin': '\u0000\u0001' });
    const command = ['sh', '-c', 'exec python3 -m http.server "$PORT"'];
    await deploy('static', { runtime: 'http', command }, dir);
    const file = await request(`${daemon.url}/fn/static/hello.txt`);
    assert.equal(file.statusCode, 200);
    assert.equal(file.headers['content-type'], 'text/plain');
    assert.equal(await file.body.text(), 'hello from a file\n');
    const modified = String(file.headers['last-modified']);
    const cached = await request(`${daemon.url}/fn/static/hello.txt`, {
      headers: { 'if-modified-since': modified },
    });
    assert.equal(cached.statusCode, 304);
    await cached.body.text();
    const missing = await request(`${daemon.url}/fn/static/nope.txt`);
    assert.equal(missing.statusCode, 404);
    assert.match(await missing.body.text(), /File not found/);
    const folder = await request(`${daemon.url}/fn/static/`);
    assert.match(await folder.body.text(), /hello\.txt/);
  });

  it('answer an unknown function with the registered 404', async () => {
    const response = await request(`${daemon.url}/fn/nope/x`);
    assert.equal(response.statusCode, 404);
    assert.equal(JSON.parse(await response.body.text()).error.code, 'FunctionNotFound');
  });
});

const LAMBDA_HANDLER = `
export const handler = async (event, context) => {
  const path = event.rawPath;
  if (path === '/event') return { statusCode: 200, body: JSON.stringify({ event, id: context.invocationId }) };
  if (path === '/created') {
    return {
      statusCode: 201,
      headers: { 'content-type': 'text/plain', 'x-count': 3 },
      cookies: ['s=1; Path=/', 't=2'],
      body: 'made',
    };
  }
  if (path === '/binary') {
    const bytes = Buffer.from(event.body, 'base64').map((b) => 255 - b);
    return { statusCode: 200, headers: { 'content-type': 'image/png' }, body: Buffer.from(bytes).toString('base64'), isBase64Encoded: true };
  }
  if (path === '/plain') return { hello: 'world' };
  if (path === '/text') return 'just text';
  if (path === '/bytes') return Buffer.from([0, 1, 2, 255]);
  if (path === '/missing') return { statusCode: 404, body: 'no such thing' };
  if (path === '/bad-header') return { statusCode: 200, headers: { 'x-bad': 'a\\r\\nb' } };
  if (path === '/bad-status') return { statusCode: 99 };
  if (path === '/slow') { await new Promise((r) => setTimeout(r, 500)); return 'slow'; }
  if (path === '/throw') throw new Error('boom');
  return { statusCode: 204 };
};
`;

const EXEC_COMMAND = `
let input = '';
process.stdin.on('data', (c) => (input += c));
process.stdin.on('end', () => {
  const event = JSON.parse(input);
  const q = event.queryStringParameters ?? {};
  process.stdout.write(JSON.stringify({
    statusCode: 202,
    headers: { 'x-runtime': 'exec' },
    body: JSON.stringify({ path: event.rawPath, method: event.requestContext.http.method, q, body: event.body }),
  }));
});
`;

describe('function URLs of node and exec functions (Lambda format)', () => {
  before(async () => {
    await deploy(
      'lam',
      { runtime: 'node', handler: 'index.handler' },
      fn('lam', { 'index.mjs': LAMBDA_HANDLER }),
    );
    await deploy(
      'ex',
      { runtime: 'exec', command: ['node', 'run.mjs'] },
      fn('ex', { 'run.mjs': EXEC_COMMAND }),
    );
  });

  it('give a node handler the payload 2.0 event', async () => {
    const response = await request(`${daemon.url}/fn/lam/event?a=1&a=2&b=%C3%A9`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', cookie: 'c1=x; c2=y', 'x-many': ['p', 'q'] },
      body: '{"k":1}',
    });
    assert.equal(response.statusCode, 200);
    const { event, id } = JSON.parse(await response.body.text());
    assert.equal(id, response.headers['x-petri-invocation-id']);
    assert.equal(event.version, '2.0');
    assert.equal(event.rawPath, '/event');
    assert.equal(event.rawQueryString, 'a=1&a=2&b=%C3%A9');
    assert.deepEqual(event.queryStringParameters, { a: '1,2', b: 'é' });
    assert.deepEqual(event.cookies, ['c1=x', 'c2=y']);
    assert.equal(event.headers['x-many'], 'p,q');
    assert.equal(event.headers.cookie, undefined);
    assert.equal(event.requestContext.http.method, 'POST');
    assert.equal(event.requestContext.http.path, '/event');
    assert.equal(event.requestContext.requestId, id);
    assert.equal(event.body, '{"k":1}');
    assert.equal(event.isBase64Encoded, false);
  });

  it("send a structured response's status, headers and cookies", async () => {
    const response = await request(`${daemon.url}/fn/lam/created`);
    assert.equal(response.statusCode, 201);
    assert.equal(response.headers['content-type'], 'text/plain');
    assert.equal(response.headers['x-count'], '3');
    assert.deepEqual(response.headers['set-cookie'], ['s=1; Path=/', 't=2']);
    assert.equal(await response.body.text(), 'made');
  });

  it('carry binary bodies as base64 both ways', async () => {
    const bytes = Buffer.from([0, 1, 2, 200, 255]);
    const response = await request(`${daemon.url}/fn/lam/binary`, { method: 'PUT', body: bytes });
    assert.equal(response.headers['content-type'], 'image/png');
    assert.deepEqual(
      Buffer.from(await response.body.arrayBuffer()),
      Buffer.from([255, 254, 253, 55, 0]),
    );
  });

  it('answer plain values as Lambda does: JSON, text, and bytes', async () => {
    const plainValue = await request(`${daemon.url}/fn/lam/plain`);
    assert.equal(plainValue.headers['content-type'], 'application/json');
    assert.deepEqual(JSON.parse(await plainValue.body.text()), { hello: 'world' });
    const text = await request(`${daemon.url}/fn/lam/text`);
    assert.equal(await text.body.text(), 'just text');
    const bytes = await request(`${daemon.url}/fn/lam/bytes`);
    assert.equal(bytes.headers['content-type'], 'application/octet-stream');
    assert.deepEqual(Buffer.from(await bytes.body.arrayBuffer()), Buffer.from([0, 1, 2, 255]));
  });

  it("pass the function's own 404 and 204, and report platform errors as registered JSON", async () => {
    const missing = await request(`${daemon.url}/fn/lam/missing`);
    assert.equal(missing.statusCode, 404);
    assert.equal(await missing.body.text(), 'no such thing');
    const empty = await request(`${daemon.url}/fn/lam/anything`);
    assert.equal(empty.statusCode, 204);
    await empty.body.text();
    for (const [route, code] of [
      ['/throw', 'HandlerError'],
      ['/bad-header', 'BadResponse'],
      ['/bad-status', 'BadResponse'],
    ]) {
      const response = await request(`${daemon.url}/fn/lam${route}`);
      assert.equal(response.statusCode, 502, route);
      assert.equal(JSON.parse(await response.body.text()).error.code, code, route);
    }
  });

  it('refuse a body over the payload limit with the registered 413', async () => {
    const exchange = await rawPost(daemon.url, '/fn/lam/event', 7 * 1024 * 1024);
    assertRefused(exchange);
    assert.ok(exchange.bodySent && !exchange.reset, 'the node cut the upload instead of closing');
    const response = await request(`${daemon.url}/fn/lam/plain`);
    assert.equal(response.statusCode, 200);
    await response.body.text();
  });

  it('give an exec command the same event on stdin and take its response from stdout', async () => {
    const response = await request(`${daemon.url}/fn/ex/some/where?z=9`, {
      method: 'PATCH',
      headers: { 'content-type': 'text/plain' },
      body: 'hi',
    });
    assert.equal(response.statusCode, 202);
    assert.equal(response.headers['x-runtime'], 'exec');
    assert.deepEqual(JSON.parse(await response.body.text()), {
      path: '/some/where',
      method: 'PATCH',
      q: { z: '9' },
      body: 'hi',
    });
  });
});

describe('function URL auth', () => {
  before(async () => {
    const dir = fn('conformance', { 'server.mjs': fs.readFileSync(SERVER, 'utf8') });
    await deploy(
      'locked',
      { runtime: 'http', command: ['node', 'server.mjs'], url: { auth: 'token' } },
      dir,
    );
    await deploy(
      'locked-lam',
      { runtime: 'node', handler: 'index.handler', url: { auth: 'token' } },
      fn('locked-lam', { 'index.mjs': LAMBDA_HANDLER }),
    );
  });

  it('are open by default and pass the Authorization header to the function', async () => {
    const response = await request(`${daemon.url}/fn/conf/echo`, {
      headers: { authorization: 'Basic abc' },
    });
    const echoed = JSON.parse(await response.body.text()) as { headers: string[] };
    assert.equal(response.statusCode, 200);
    assert.ok(echoed.headers.includes('Basic abc'));
  });

  it('need the API token when the spec says so, and never show it to the function', async () => {
    const without = await request(`${daemon.url}/fn/locked/echo`);
    assert.equal(without.statusCode, 401);
    assert.equal(JSON.parse(await without.body.text()).error.code, 'Unauthorized');
    const withToken = await request(`${daemon.url}/fn/locked/echo`, { headers: daemon.headers });
    assert.equal(withToken.statusCode, 200);
    const echoed = JSON.parse(await withToken.body.text()) as { headers: string[] };
    assert.ok(!echoed.headers.some((h) => h.toLowerCase() === 'authorization'));
    assert.ok(!echoed.headers.includes(daemon.headers.authorization));
  });

  it("never show the node's token to a Lambda-format function either", async () => {
    const response = await request(`${daemon.url}/fn/locked-lam/event`, {
      headers: { ...daemon.headers, 'x-other': 'kept' },
    });
    assert.equal(response.statusCode, 200);
    const { event } = JSON.parse(await response.body.text());
    assert.equal(event.headers.authorization, undefined);
    assert.equal(event.headers['x-other'], 'kept');
    assert.ok(!JSON.stringify(event).includes(daemon.headers.authorization.slice(7)));
  });

  it("drop the node's token sent to an open URL, and only that", async () => {
    const response = await request(`${daemon.url}/fn/conf/echo`, { headers: daemon.headers });
    const echoed = JSON.parse(await response.body.text()) as { headers: string[] };
    assert.equal(response.statusCode, 200);
    assert.ok(!echoed.headers.some((h) => h.toLowerCase() === 'authorization'));
    const lambda = await request(`${daemon.url}/fn/lam/event`, { headers: daemon.headers });
    const { event } = JSON.parse(await lambda.body.text());
    assert.equal(event.headers.authorization, undefined);
  });

  it('reject an unknown url field at deploy', async () => {
    const response = await request(`${daemon.url}/v1/functions/badurl`, {
      method: 'PUT',
      headers: { ...daemon.headers, 'content-type': 'application/json' },
      body: JSON.stringify({ runtime: 'node', url: { auth: 'iam' }, source: { path: codeRoot } }),
    });
    assert.equal(response.statusCode, 400);
    assert.equal(JSON.parse(await response.body.text()).error.code, 'InvalidSpec');
  });
});

describe('the JSON invoke API', () => {
  it('returns a string as text/plain and bytes as application/octet-stream', async () => {
    const text = await json('/v1/functions/lam/invoke', {
      method: 'POST',
      body: '{"rawPath":"/text"}',
    });
    assert.equal(text.status, 200);
    assert.match(String(text.headers['content-type']), /^text\/plain/);
    assert.equal(text.text, 'just text');
    const response = await request(`${daemon.url}/v1/functions/lam/invoke`, {
      method: 'POST',
      headers: daemon.headers,
      body: '{"rawPath":"/bytes"}',
    });
    assert.equal(response.headers['content-type'], 'application/octet-stream');
    assert.deepEqual(Buffer.from(await response.body.arrayBuffer()), Buffer.from([0, 1, 2, 255]));
  });

  it('ignores query parameters it does not know, but checks its own', async () => {
    const extra = await json('/v1/functions/lam/invoke?Qualifier=%24LATEST', {
      method: 'POST',
      body: '{"rawPath":"/plain"}',
    });
    assert.equal(extra.status, 200);
    const bad = await json('/v1/functions/lam/invoke?mode=later', { method: 'POST', body: '{}' });
    assert.equal(bad.status, 400);
  });

  it('answers a wrong method with 405 and Allow', async () => {
    const reply = await json('/v1/functions/lam/invoke');
    assert.equal(reply.status, 405);
    assert.equal(reply.headers.allow, 'POST');
    assert.equal(JSON.parse(reply.text).error.code, 'MethodNotAllowed');
  });

  it('sheds load with 429 and Retry-After, on both doors', async () => {
    await deploy(
      'one',
      { runtime: 'node', handler: 'index.handler', maxInstances: 1, queue: { maxSize: 0 } },
      fn('one', { 'index.mjs': LAMBDA_HANDLER }),
    );
    for (const door of ['/v1/functions/one/invoke', '/fn/one/slow']) {
      const slow = request(`${daemon.url}/v1/functions/one/invoke`, {
        method: 'POST',
        headers: daemon.headers,
        body: '{"rawPath":"/slow"}',
      });
      // The first holds the only instance (cold start included) for 500 ms.
      await new Promise((r) => setTimeout(r, 100));
      const shed = await request(daemon.url + door, {
        method: 'POST',
        headers: daemon.headers,
        body: '{}',
      });
      assert.equal(shed.statusCode, 429, door);
      assert.equal(shed.headers['retry-after'], '1', door);
      assert.equal(JSON.parse(await shed.body.text()).error.code, 'QueueFull');
      await (await slow).body.text();
    }
  });
});

describe('a stopping node and its function URL connections', () => {
  it('stops at once with an idle keep-alive connection and a lingering refused upload open', async () => {
    const ownState = fs.mkdtempSync(path.join(os.tmpdir(), 'petri-fnurl-stop-'));
    const node = await spawnDaemon({ stateDir: ownState });
    try {
      const response = await request(`${node.url}/v1/functions/conf`, {
        method: 'PUT',
        headers: { ...node.headers, 'content-type': 'application/json' },
        body: JSON.stringify({
          runtime: 'http',
          command: ['node', 'server.mjs'],
          source: { path: path.join(codeRoot, 'conformance') },
        }),
      });
      assert.ok(response.statusCode < 300, await response.body.text());
      // An idle keep-alive connection: one exchange, then left open (fastify's keep-alive is 72 s).
      const idle = net.connect({
        host: new URL(node.url).hostname,
        port: Number(new URL(node.url).port),
      });
      const idleClosed = new Promise<number>((resolve) =>
        idle.once('close', () => resolve(performance.now())),
      );
      idle.on('error', () => undefined);
      const answered = new Promise<string>((resolve) =>
        idle.once('data', (d: Buffer) => resolve(d.toString('latin1'))),
      );
      idle.write(`GET /fn/conf/echo HTTP/1.1\r\nhost: x\r\n\r\n`);
      assert.match(await answered, /^HTTP\/1\.1 200 /);
      // A refused upload whose client keeps sending, slowly: the node lingers on it (up to 5 s).
      // Half-open, so the node's FIN after the 413 does not end it: it keeps sending.
      const slow = net.connect({
        host: new URL(node.url).hostname,
        port: Number(new URL(node.url).port),
        allowHalfOpen: true,
      });
      slow.on('error', () => undefined);
      const slowClosed = new Promise<number>((resolve) =>
        slow.once('close', () => resolve(performance.now())),
      );
      const refused = new Promise<string>((resolve) =>
        slow.once('data', (d: Buffer) => resolve(d.toString('latin1'))),
      );
      slow.write(`POST /fn/conf/echo HTTP/1.1\r\nhost: x\r\ncontent-length: ${7 << 20}\r\n\r\n`);
      const drip = setInterval(() => slow.destroyed || slow.write(Buffer.alloc(1024)), 50);
      try {
        assert.match(await refused, /^HTTP\/1\.1 413 /);
        // Still open a moment later: the node is lingering on it, not closed.
        await new Promise((r) => setTimeout(r, 300));
        assert.equal(slow.destroyed, false, 'the refused upload was not lingered on');
        const stopping = performance.now();
        const stopped = node.close().then(() => performance.now());
        const [idleAt, slowAt, stoppedAt] = await Promise.all([idleClosed, slowClosed, stopped]);
        assert.ok(
          idleAt - stopping < 2_000,
          `the idle connection closed after ${idleAt - stopping} ms`,
        );
        assert.ok(
          slowAt - stopping < 2_000,
          `the lingering one closed after ${slowAt - stopping} ms`,
        );
        assert.ok(
          stoppedAt - stopping < 15_000,
          `the node stopped after ${stoppedAt - stopping} ms`,
        );
      } finally {
        clearInterval(drip);
        idle.destroy();
        slow.destroy();
      }
    } finally {
      await node.close();
      fs.rmSync(ownState, { recursive: true, force: true });
    }
  });
});
