import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { type Http1Response, Http1Pool } from '../../src/workload/http1.ts';

/** Sends one request and waits for its callback. */
function call(
  pool: Http1Pool,
  path: string,
  body = '{}',
): Promise<{ error: string; response?: Http1Response }> {
  return new Promise((resolve) =>
    pool.request(pool.post(path, body), (error, response) => resolve({ error, response })),
  );
}

/** A raw TCP server that answers each request with `answer(requestText)` bytes, written in `pieces`. */
async function rawServer(
  answer: (request: string) => string[],
): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    let text = '';
    socket.on('data', (chunk) => {
      text += chunk.toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      if (end < 0) return;
      const length = Number(/content-length: (\d+)/i.exec(text)?.[1] ?? 0);
      if (text.length < end + 4 + length) return;
      const request = text.slice(0, end + 4 + length);
      text = text.slice(end + 4 + length);
      const pieces = answer(request);
      let i = 0;
      const next = (): void => {
        if (i >= pieces.length) {
          if (pieces.join('').includes('connection: close')) socket.end();
          return;
        }
        socket.write(pieces[i++], 'latin1');
        setImmediate(next);
      };
      next();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

describe('Http1Pool (the load generator hot path)', () => {
  let server: http.Server;
  let port: number;
  const seen: { path: string; body: string; auth: string | undefined }[] = [];
  before(async () => {
    server = http.createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8').on('data', (c: string) => (body += c));
      req.on('end', () => {
        seen.push({ path: req.url ?? '', body, auth: req.headers.authorization });
        if (req.url === '/chunked') {
          res.setHeader('x-petri-start', 'cold');
          res.write('{"duration');
          setTimeout(() => res.end('Ms":7}'), 5);
          return;
        }
        if (req.url === '/slow') {
          setTimeout(() => res.end('late'), 2000).unref();
          return;
        }
        if (req.url === '/big') {
          res.end('x'.repeat(200_000));
          return;
        }
        res.setHeader('x-petri-duration-ms', '3.5');
        res.statusCode = req.url === '/missing' ? 404 : 200;
        res.end(req.url === '/missing' ? '{"error":{"code":"NotFound"}}' : `echo ${body}`);
      });
    });
    server.keepAliveTimeout = 60_000;
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as net.AddressInfo).port;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it('posts JSON with the pool headers and reads status, headers and a content-length body', async () => {
    const pool = new Http1Pool({
      host: '127.0.0.1',
      port,
      connections: 2,
      timeoutMs: 5000,
      headers: { authorization: 'Bearer t' },
    });
    const { error, response } = await call(pool, '/a', '{"x":1}');
    assert.equal(error, '');
    assert.equal(response?.status, 200);
    assert.equal(response?.durationHeader, '3.5');
    assert.equal(response?.body, 'echo {"x":1}');
    assert.deepEqual(seen.at(-1), { path: '/a', body: '{"x":1}', auth: 'Bearer t' });
    const missing = await call(pool, '/missing');
    assert.equal(missing.response?.status, 404);
    assert.equal(missing.response?.body, '{"error":{"code":"NotFound"}}');
    await pool.close();
  });

  it('reads chunked bodies split over several reads, and keeps connections alive within its limit', async () => {
    const pool = new Http1Pool({ host: '127.0.0.1', port, connections: 2, timeoutMs: 5000 });
    const results = await Promise.all(Array.from({ length: 10 }, () => call(pool, '/chunked')));
    for (const { error, response } of results) {
      assert.equal(error, '');
      assert.equal(response?.start, 'cold');
      assert.equal(response?.body, '{"durationMs":7}');
    }
    // Ten requests over at most two connections, one request each at a time.
    assert.ok((pool as unknown as { open: Set<unknown> }).open.size <= 2);
    await pool.close();
  });

  it('keeps at most maxBodyBytes of a body and still reads the rest', async () => {
    const pool = new Http1Pool({
      host: '127.0.0.1',
      port,
      connections: 1,
      timeoutMs: 5000,
      maxBodyBytes: 100,
    });
    const big = await call(pool, '/big');
    assert.equal(big.response?.body.length, 100);
    const next = await call(pool, '/a', '1');
    assert.equal(next.response?.body, 'echo 1');
    await pool.close();
  });

  it('fails a request with no response within its timeout, and one on a refused connection', async () => {
    const pool = new Http1Pool({ host: '127.0.0.1', port, connections: 1, timeoutMs: 200 });
    const slow = await call(pool, '/slow');
    assert.equal(slow.error, 'ClientTimeout');
    assert.equal((await call(pool, '/a', '2')).response?.body, 'echo 2');
    await pool.close();
    const closed = net.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const freePort = (closed.address() as net.AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const refused = new Http1Pool({
      host: '127.0.0.1',
      port: freePort,
      connections: 1,
      timeoutMs: 1000,
    });
    assert.equal((await call(refused, '/a')).error, 'ECONNREFUSED');
    await refused.close();
  });

  it('refuses malformed, oversized and unasked-for responses and reads a body delimited by close', async () => {
    const answers: Record<string, string[]> = {
      '/garbage': ['NOT HTTP\r\n\r\n'],
      '/huge-head': ['HTTP/1.1 200 OK\r\n', `x: ${'a'.repeat(20_000)}\r\n\r\n`],
      '/bad-length': ['HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n'],
      '/bad-chunk': ['HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n'],
      '/extra': ['HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n'],
      '/continue': [
        'HTTP/1.1 100 Continue\r\n\r\n',
        'HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok',
      ],
      '/split': ['HTTP/1.1 20', '0 OK\r\ncontent-le', 'ngth: 5\r\n\r', '\nab', 'cde'],
    };
    const raw = await rawServer((request) => {
      const path = request.split(' ')[1];
      return answers[path] ?? ['HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil-close'];
    });
    const pool = new Http1Pool({
      host: '127.0.0.1',
      port: raw.port,
      connections: 4,
      timeoutMs: 2000,
    });
    assert.equal((await call(pool, '/garbage')).error, 'BadResponse', 'garbage');
    assert.equal((await call(pool, '/huge-head')).error, 'BadResponse', 'huge');
    assert.equal((await call(pool, '/bad-length')).error, 'BadResponse', 'length');
    assert.equal((await call(pool, '/bad-chunk')).error, 'BadResponse');
    assert.equal((await call(pool, '/continue')).response?.body, 'ok');
    assert.equal((await call(pool, '/split')).response?.body, 'abcde');
    const extra = await call(pool, '/extra');
    assert.equal(extra.response?.body, 'ok');
    const untilClose = await call(pool, '/other');
    assert.equal(untilClose.error, '');
    assert.equal(untilClose.response?.body, 'until-close');
    await pool.close();
    await raw.close();
  });
});
