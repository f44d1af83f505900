import net from 'node:net';

/**
 * The load generator's hot path: a small HTTP/1.1 keep-alive client, one
 * request per connection at a time (no pipelining: a slow invocation must
 * not hold up the next one's response). Measured against undici's lowest
 * level (`Pool.dispatch`, same no-op server, same run) it costs about half
 * the CPU per request, which is what keeps the client within 0.15 core at
 * 5,000/s; undici still does everything else (deploys, calibration, reads).
 *
 * The server is not trusted: a response head is capped at MAX_HEAD_BYTES,
 * its status line and lengths are checked, at most `maxBodyBytes` of a body
 * is kept (the rest is read and dropped), and a request with no complete
 * response after `timeoutMs` fails and its connection is closed.
 */
export interface Http1Response {
  status: number;
  /** The x-petri-start header, '' when absent. */
  start: string;
  /** The x-petri-duration-ms header, '' when absent. */
  durationHeader: string;
  /** The body as latin1 (JSON stays parseable), at most maxBodyBytes of it. */
  body: string;
}

/** `error` is a code ('' when the response came): ECONNRESET, ClientTimeout, BadResponse… */
export type Http1Callback = (error: string, response: Http1Response | undefined) => void;

export interface Http1PoolOptions {
  host: string;
  port: number;
  /** Most connections at once; further requests wait for one, first in first out. */
  connections: number;
  /** A request without a complete response after this long fails. */
  timeoutMs: number;
  /** Headers sent with every request, e.g. authorization. */
  headers?: Record<string, string>;
  maxBodyBytes?: number;
}

const MAX_HEAD_BYTES = 16 * 1024;
const MAX_CHUNK_LINE = 1024;
const DEFAULT_MAX_BODY = 64 * 1024;
const CRLF2 = '\r\n\r\n';
/** Every connection reads into this one buffer: the callback consumes it synchronously. */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

type BodyMode = 'length' | 'chunked' | 'close';
type ChunkState = 'size' | 'data' | 'data-end' | 'trailer';

class Connection {
  readonly socket: net.Socket;
  callback: Http1Callback | undefined;
  startedAt = 0;
  reusable = true;
  private head = '';
  private inBody = false;
  private mode: BodyMode = 'length';
  private remaining = 0;
  private body = '';
  private chunk: ChunkState = 'size';
  private line = '';
  private status = 0;
  private start = '';
  private durationHeader = '';
  /** Responses completed on this connection. */
  private served = 0;

  constructor(
    private readonly pool: Http1Pool,
    options: Http1PoolOptions,
  ) {
    this.socket = net.connect({
      host: options.host,
      port: options.port,
      onread: {
        buffer: READ_BUFFER,
        callback: (n) => {
          this.onRead(n);
          return true;
        },
      },
    });
    this.socket.setNoDelay(true);
    this.socket.on('error', (err: NodeJS.ErrnoException) => this.fail(err.code ?? 'ClientError'));
    this.socket.on('close', () => {
      if (this.inBody && this.mode === 'close') this.complete();
      else this.fail('ConnectionClosed');
      this.pool.closed(this);
    });
  }

  send(request: string, callback: Http1Callback, now: number): void {
    this.callback = callback;
    this.startedAt = now;
    this.socket.write(request, 'latin1');
  }

  busy(): boolean {
    return this.callback !== undefined;
  }

  /** Fails the request in flight, if any, and closes the connection. */
  fail(code: string): void {
    const callback = this.callback;
    this.reusable = false;
    this.socket.destroy();
    if (!callback) return;
    this.callback = undefined;
    callback(code, undefined);
  }

  private onRead(n: number): void {
    if (!this.callback) {
      // Bytes nobody asked for: the stream is out of step.
      this.fail('BadResponse');
      return;
    }
    const served = this.served;
    let at = 0;
    while (at < n && this.busy() && this.served === served) {
      if (!this.inBody) at = this.readHead(n, at);
      else at = this.readBody(n, at);
      if (at < 0) return;
    }
    if (this.served === served) return;
    // Bytes after a complete response: the server answered what was not asked.
    if (at < n) this.fail('BadResponse');
    else if (this.reusable) this.pool.idle(this);
    else this.socket.destroy();
  }

  /** Returns where the head ended in the buffer, or -1 when the response is refused. */
  private readHead(n: number, at: number): number {
    const before = this.head.length;
    this.head += READ_BUFFER.toString('latin1', at, n);
    const end = this.head.indexOf(CRLF2, Math.max(0, before - 3));
    if (end < 0) {
      if (this.head.length > MAX_HEAD_BYTES) this.fail('BadResponse');
      return this.head.length > MAX_HEAD_BYTES ? -1 : n;
    }
    if (end > MAX_HEAD_BYTES || !this.parseHead(this.head.slice(0, end))) {
      this.fail('BadResponse');
      return -1;
    }
    const consumed = end + 4 - before;
    this.head = '';
    if (this.status < 200) return at + consumed; // 1xx: the real head follows.
    this.inBody = true;
    if (this.mode === 'length' && this.remaining === 0) this.complete();
    return at + consumed;
  }

  private parseHead(head: string): boolean {
    const lines = head.split('\r\n');
    const status = /^HTTP\/1\.[01] (\d{3})(?: |$)/.exec(lines[0]);
    if (!status) return false;
    this.status = Number(status[1]);
    this.start = '';
    this.durationHeader = '';
    let length = -1;
    let chunked = false;
    for (let i = 1; i < lines.length; i++) {
      const colon = lines[i].indexOf(':');
      if (colon <= 0) return false;
      const name = lines[i].slice(0, colon).toLowerCase();
      const value = lines[i].slice(colon + 1).trim();
      if (name === 'content-length') {
        if (!/^\d{1,15}$/.test(value) || (length >= 0 && Number(value) !== length)) return false;
        length = Number(value);
      } else if (name === 'transfer-encoding') chunked = value.toLowerCase() === 'chunked';
      else if (name === 'connection' && value.toLowerCase() === 'close') this.reusable = false;
      else if (name === 'x-petri-start') this.start = value;
      else if (name === 'x-petri-duration-ms') this.durationHeader = value;
    }
    if (this.status === 101) return false;
    this.body = '';
    if (this.status === 204 || this.status === 304) [this.mode, this.remaining] = ['length', 0];
    else if (chunked) [this.mode, this.chunk, this.line] = ['chunked', 'size', ''];
    else if (length >= 0) [this.mode, this.remaining] = ['length', length];
    else [this.mode, this.reusable] = ['close', false];
    return true;
  }

  private keep(from: number, to: number): void {
    const room = (this.pool.maxBodyBytes - this.body.length) | 0;
    if (room > 0) this.body += READ_BUFFER.toString('latin1', from, Math.min(to, from + room));
  }

  private readBody(n: number, at: number): number {
    if (this.mode === 'close') {
      this.keep(at, n);
      return n;
    }
    if (this.mode === 'length') {
      const take = Math.min(this.remaining, n - at);
      this.keep(at, at + take);
      this.remaining -= take;
      if (this.remaining === 0) this.complete();
      return at + take;
    }
    return this.readChunked(n, at);
  }

  private readChunked(n: number, at: number): number {
    while (at < n) {
      if (this.chunk === 'data') {
        const take = Math.min(this.remaining, n - at);
        this.keep(at, at + take);
        this.remaining -= take;
        at += take;
        if (this.remaining === 0) [this.chunk, this.line] = ['data-end', ''];
        continue;
      }
      const eol = READ_BUFFER.indexOf(10, at);
      const end = eol < 0 || eol >= n ? n : eol + 1;
      this.line += READ_BUFFER.toString('latin1', at, end);
      at = end;
      if (this.line.length > MAX_CHUNK_LINE) return this.refuse();
      if (!this.line.endsWith('\r\n')) continue;
      const line = this.line.slice(0, -2);
      this.line = '';
      if (this.chunk === 'data-end') {
        if (line !== '') return this.refuse();
        this.chunk = 'size';
      } else if (this.chunk === 'size') {
        const size = /^([0-9a-fA-F]{1,12})(;.*)?$/.exec(line);
        if (!size) return this.refuse();
        this.remaining = parseInt(size[1], 16);
        this.chunk = this.remaining === 0 ? 'trailer' : 'data';
      } else if (line === '') {
        this.complete();
        return at;
      }
    }
    return at;
  }

  private refuse(): number {
    this.fail('BadResponse');
    return -1;
  }

  private complete(): void {
    const callback = this.callback;
    this.served++;
    this.inBody = false;
    this.callback = undefined;
    const response: Http1Response = {
      status: this.status,
      start: this.start,
      durationHeader: this.durationHeader,
      body: this.body,
    };
    this.body = '';
    // The connection goes back to the pool after the read that completed it (onRead).
    callback?.('', response);
  }
}

interface Waiting {
  request: string;
  callback: Http1Callback;
}

/** Keep-alive connections to one origin, opened as needed up to `connections`. */
export class Http1Pool {
  readonly maxBodyBytes: number;
  private readonly free: Connection[] = [];
  private readonly open = new Set<Connection>();
  private readonly waiting: Waiting[] = [];
  private readonly prefix: string;
  private readonly timer: NodeJS.Timeout;
  private closing = false;

  constructor(private readonly options: Http1PoolOptions) {
    this.maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY;
    const extra = Object.entries(options.headers ?? {})
      .map(([name, value]) => `${checkedHeader(name)}: ${checkedHeader(value)}\r\n`)
      .join('');
    const host = options.host.includes(':') ? `[${options.host}]` : options.host;
    this.prefix = ` HTTP/1.1\r\nhost: ${host}:${options.port}\r\n${extra}`;
    this.timer = setInterval(() => this.expire(), Math.min(1000, options.timeoutMs)).unref();
  }

  /** The bytes of a POST of a JSON body to `path`; build once per path and body where possible. */
  post(path: string, json: string): string {
    return `POST ${path}${this.prefix}content-type: application/json\r\ncontent-length: ${Buffer.byteLength(json)}\r\n\r\n${json}`;
  }

  /** Sends a request made by `post`; `callback` runs once, with the response or an error code. */
  request(request: string, callback: Http1Callback): void {
    if (this.closing) {
      callback('ClientClosed', undefined);
      return;
    }
    let connection = this.free.pop();
    if (!connection && this.open.size < this.options.connections) {
      connection = new Connection(this, this.options);
      this.open.add(connection);
    }
    if (connection) connection.send(request, callback, performance.now());
    else this.waiting.push({ request, callback });
  }

  /** A connection finished its response and may take the next request. */
  idle(connection: Connection): void {
    const next = this.waiting.shift();
    if (next) connection.send(next.request, next.callback, performance.now());
    else this.free.push(connection);
  }

  /** A connection's socket closed: forget it, and open another for a waiting request. */
  closed(connection: Connection): void {
    this.open.delete(connection);
    const at = this.free.indexOf(connection);
    if (at >= 0) this.free.splice(at, 1);
    const next = this.waiting.shift();
    if (next) this.request(next.request, next.callback);
  }

  private expire(): void {
    const now = performance.now();
    for (const connection of this.open)
      if (connection.callback && now - connection.startedAt > this.options.timeoutMs)
        connection.fail('ClientTimeout');
  }

  /** Fails whatever is waiting or in flight and closes every connection. */
  async close(): Promise<void> {
    this.closing = true;
    clearInterval(this.timer);
    for (const { callback } of this.waiting.splice(0)) callback('ClientClosed', undefined);
    const sockets = [...this.open].map((c) => c.socket);
    for (const connection of [...this.open]) connection.fail('ClientClosed');
    await Promise.all(
      sockets.map((s) =>
        s.closed ? undefined : new Promise<void>((resolve) => s.once('close', () => resolve())),
      ),
    );
  }
}

/** Header names and values are the caller's, but still no CR/LF may reach the wire. */
function checkedHeader(text: string): string {
  if (/[\r\n]/.test(text)) throw new Error('header contains a line break');
  return text;
}
