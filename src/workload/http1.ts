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

/**
 * `error` is a code ('' when the response came): ECONNRESET, ClientTimeout,
 * BadResponse…; `tag` is the number the request was sent with, so one
 * callback can serve every request (no closure per request).
 */
export type Http1Callback = (
  error: string,
  response: Http1Response | undefined,
  tag: number,
) => void;

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
const CRLF = Buffer.from('\r\n', 'latin1');
const CRLF2 = Buffer.from('\r\n\r\n', 'latin1');
const HTTP_1 = Buffer.from('HTTP/1.', 'latin1');
/** Every connection reads into this one buffer: the callback consumes it synchronously. */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);
const [SPACE, COLON, ZERO, NINE] = [32, 58, 48, 57];

const enum Mode {
  Length,
  Chunked,
  Close,
}
const enum Chunk {
  Size,
  Data,
  DataEnd,
  Trailer,
}

class Connection {
  readonly socket: net.Socket;
  callback: Http1Callback | undefined;
  tag = 0;
  /** The pool's sweep count when the request in flight was sent (its timeout clock). */
  sentSweep = 0;
  reusable = true;
  /** A head split over reads, copied here until its end arrives. */
  private partial: Buffer | undefined;
  private partialLength = 0;
  private inBody = false;
  private mode = Mode.Length;
  private remaining = 0;
  private body = '';
  private chunk = Chunk.Size;
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
      if (this.inBody && this.mode === Mode.Close) this.complete();
      else this.fail('ConnectionClosed');
      this.pool.closed(this);
    });
  }

  send(request: string, callback: Http1Callback, tag: number, sweep: number): void {
    this.callback = callback;
    this.tag = tag;
    this.sentSweep = sweep;
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
    callback(code, undefined, this.tag);
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

  /**
   * Reads a head from READ_BUFFER[at, n); returns where it ended there, or
   * -1 when the response is refused. A head in one read (the usual case) is
   * parsed in place; one split over reads is copied until it is complete.
   */
  private readHead(n: number, at: number): number {
    if (this.partial === undefined) {
      const end = READ_BUFFER.indexOf(CRLF2, at);
      if (end >= 0 && end + 4 <= n) {
        if (end - at > MAX_HEAD_BYTES || !this.parseHead(READ_BUFFER, at, end))
          return this.refuse();
        return this.headDone(end + 4);
      }
      if (n - at > MAX_HEAD_BYTES) return this.refuse();
      this.partial = Buffer.allocUnsafe(MAX_HEAD_BYTES + 4);
      this.partialLength = 0;
    }
    const before = this.partialLength;
    const take = Math.min(n - at, this.partial.length - before);
    READ_BUFFER.copy(this.partial, before, at, at + take);
    this.partialLength += take;
    const view = this.partial.subarray(0, this.partialLength);
    const end = view.indexOf(CRLF2, Math.max(0, before - 3));
    if (end < 0) {
      if (this.partialLength > MAX_HEAD_BYTES) return this.refuse();
      return at + take;
    }
    if (end > MAX_HEAD_BYTES || !this.parseHead(view, 0, end)) return this.refuse();
    this.partial = undefined;
    return this.headDone(at + end + 4 - before);
  }

  private headDone(next: number): number {
    if (this.status < 200) return next; // 1xx: the real head follows.
    this.inBody = true;
    if (this.mode === Mode.Length && this.remaining === 0) this.complete();
    return next;
  }

  /** Parses the head in buf[from, end) (end: where its CRLF CRLF starts). */
  private parseHead(buf: Buffer, from: number, end: number): boolean {
    // Status line: HTTP/1.0 or HTTP/1.1, a space, three digits, then a space or the line's end.
    let eol = buf.indexOf(CRLF, from);
    if (eol < 0 || eol > end) eol = end;
    if (eol - from < 12 || buf.compare(HTTP_1, 0, 7, from, from + 7) !== 0) return false;
    const minor = buf[from + 7];
    if ((minor !== ZERO && minor !== ZERO + 1) || buf[from + 8] !== SPACE) return false;
    let status = 0;
    for (let k = from + 9; k < from + 12; k++) {
      const digit = buf[k];
      if (digit < ZERO || digit > NINE) return false;
      status = status * 10 + digit - ZERO;
    }
    if (eol > from + 12 && buf[from + 12] !== SPACE) return false;
    if (status === 101) return false;
    this.status = status;
    this.start = '';
    this.durationHeader = '';
    let length = -1;
    let chunked = false;
    let at = eol + 2;
    while (at < end + 2 && eol < end) {
      eol = buf.indexOf(CRLF, at);
      if (eol < 0 || eol > end) eol = end;
      const colon = buf.indexOf(COLON, at);
      if (colon <= at || colon >= eol) return false;
      // Only the names this client reads are turned into strings.
      const size = colon - at;
      if (size === 14 || size === 17 || size === 10 || size === 13 || size === 19) {
        const name = buf.toString('latin1', at, colon).toLowerCase();
        const value = buf.toString('latin1', colon + 1, eol).trim();
        if (name === 'content-length') {
          if (!/^\d{1,15}$/.test(value) || (length >= 0 && Number(value) !== length)) return false;
          length = Number(value);
        } else if (name === 'transfer-encoding') chunked = value.toLowerCase() === 'chunked';
        else if (name === 'connection' && value.toLowerCase() === 'close') this.reusable = false;
        else if (name === 'x-petri-start') this.start = value;
        else if (name === 'x-petri-duration-ms') this.durationHeader = value;
      }
      at = eol + 2;
    }
    this.body = '';
    if (status === 204 || status === 304) {
      this.mode = Mode.Length;
      this.remaining = 0;
    } else if (chunked) {
      this.mode = Mode.Chunked;
      this.chunk = Chunk.Size;
      this.line = '';
    } else if (length >= 0) {
      this.mode = Mode.Length;
      this.remaining = length;
    } else {
      this.mode = Mode.Close;
      this.reusable = false;
    }
    return true;
  }

  private keep(from: number, to: number): void {
    const room = (this.pool.maxBodyBytes - this.body.length) | 0;
    if (room > 0 && to > from)
      this.body += READ_BUFFER.toString('latin1', from, Math.min(to, from + room));
  }

  private readBody(n: number, at: number): number {
    if (this.mode === Mode.Close) {
      this.keep(at, n);
      return n;
    }
    if (this.mode === Mode.Length) {
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
      if (this.chunk === Chunk.Data) {
        const take = Math.min(this.remaining, n - at);
        this.keep(at, at + take);
        this.remaining -= take;
        at += take;
        if (this.remaining === 0) {
          this.chunk = Chunk.DataEnd;
          this.line = '';
        }
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
      if (this.chunk === Chunk.DataEnd) {
        if (line !== '') return this.refuse();
        this.chunk = Chunk.Size;
      } else if (this.chunk === Chunk.Size) {
        const size = /^([0-9a-fA-F]{1,12})(;.*)?$/.exec(line);
        if (!size) return this.refuse();
        this.remaining = parseInt(size[1], 16);
        this.chunk = this.remaining === 0 ? Chunk.Trailer : Chunk.Data;
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
    callback?.('', response, this.tag);
  }
}

interface Waiting {
  request: string;
  callback: Http1Callback;
  tag: number;
}

/** Keep-alive connections to one origin, opened as needed up to `connections`. */
export class Http1Pool {
  readonly maxBodyBytes: number;
  private readonly free: Connection[] = [];
  private readonly open = new Set<Connection>();
  private readonly waiting: Waiting[] = [];
  private readonly prefix: string;
  private readonly timer: NodeJS.Timeout;
  /**
   * Timeouts without a clock read per request: a sweep runs every
   * `sweepMs` and counts; a request still in flight more than
   * `timeoutSweeps` sweeps after it was sent has waited at least
   * `timeoutMs` (and at most one sweep more) and fails.
   */
  private sweeps = 0;
  private readonly timeoutSweeps: number;
  private closing = false;

  constructor(private readonly options: Http1PoolOptions) {
    this.maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY;
    const extra = Object.entries(options.headers ?? {})
      .map(([name, value]) => `${checkedHeader(name)}: ${checkedHeader(value)}\r\n`)
      .join('');
    const host = options.host.includes(':') ? `[${options.host}]` : options.host;
    this.prefix = ` HTTP/1.1\r\nhost: ${host}:${options.port}\r\n${extra}`;
    const sweepMs = Math.max(10, Math.min(1000, options.timeoutMs / 4));
    this.timeoutSweeps = Math.ceil(options.timeoutMs / sweepMs);
    this.timer = setInterval(() => this.expire(), sweepMs).unref();
  }

  /** The bytes of a POST of a JSON body to `path`; build once per path and body where possible. */
  post(path: string, json: string): string {
    return `${this.postHead(path)}${Buffer.byteLength(json)}\r\n\r\n${json}`;
  }

  /**
   * Everything of a POST to `path` up to its content-length's digits: with
   * it preformatted, a request costs one concatenation,
   * `head + length + '\r\n\r\n' + json` (see `postWith`).
   */
  postHead(path: string): string {
    return `POST ${path}${this.prefix}content-type: application/json\r\ncontent-length: `;
  }

  /** A POST from `postHead`'s head and a latin1 JSON body (its length is its byte length). */
  static postWith(head: string, json: string): string {
    return head + json.length + '\r\n\r\n' + json;
  }

  /** Sends a request made by `post`; `callback` runs once, with the response or an error code, and `tag`. */
  request(request: string, callback: Http1Callback, tag = 0): void {
    if (this.closing) {
      callback('ClientClosed', undefined, tag);
      return;
    }
    let connection = this.free.pop();
    if (!connection && this.open.size < this.options.connections) {
      connection = new Connection(this, this.options);
      this.open.add(connection);
    }
    if (connection) connection.send(request, callback, tag, this.sweeps);
    else this.waiting.push({ request, callback, tag });
  }

  /** A connection finished its response and may take the next request. */
  idle(connection: Connection): void {
    const next = this.waiting.shift();
    if (next) connection.send(next.request, next.callback, next.tag, this.sweeps);
    else this.free.push(connection);
  }

  /** A connection's socket closed: forget it, and open another for a waiting request. */
  closed(connection: Connection): void {
    this.open.delete(connection);
    const at = this.free.indexOf(connection);
    if (at >= 0) this.free.splice(at, 1);
    const next = this.waiting.shift();
    if (next) this.request(next.request, next.callback, next.tag);
  }

  private expire(): void {
    this.sweeps++;
    for (const connection of this.open)
      if (connection.callback && this.sweeps - connection.sentSweep > this.timeoutSweeps)
        connection.fail('ClientTimeout');
  }

  /** Fails whatever is waiting or in flight and closes every connection. */
  async close(): Promise<void> {
    this.closing = true;
    clearInterval(this.timer);
    for (const { callback, tag } of this.waiting.splice(0))
      callback('ClientClosed', undefined, tag);
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
