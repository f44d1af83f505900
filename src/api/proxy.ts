/**
 * The reverse proxy behind function URLs of `http` functions: the client's
 * request goes to the instance's server as it came (method, path, query,
 * headers, body bytes, streamed), and the server's response comes back as it
 * went (status, headers, body, streamed), minus hop-by-hop headers (RFC 9110
 * §7.6.1). Bodies are capped in both directions by the node's limits.
 *
 * The upstream side is undici's dispatcher (kept-alive connections per
 * instance, no pipelining) driven by a raw dispatch handler: no per-request
 * ClientRequest, agent bookkeeping or body stream objects, which cost the
 * node:http client most of the proxy's time.
 */
import type http from 'node:http';
import { Readable } from 'node:stream';
import { Agent, type Dispatcher } from 'undici';
import { PetriError } from '../errors.ts';
import type { ExchangeContext, HttpEndpoint } from '../node/index.ts';
import { endToEndHeaders } from './hop-by-hop.ts';

export interface ProxyLimits {
  requestBytes: number;
  responseBytes: number;
}

export interface ProxyRequest {
  incoming: http.IncomingMessage;
  outgoing: http.ServerResponse;
  /** Path and query for the server: what followed `/fn/{name}`, as sent. */
  path: string;
  /** Request headers (lower case) the server must not see, e.g. the node's token. */
  drop: ReadonlySet<string>;
  /** The function version that answers, sent back as `x-petri-version`. */
  version: string;
}

/**
 * `expect` is answered by the node's server itself (100-continue), so the
 * function's server must not answer it again.
 */
const NODE_ANSWERS = ['expect'];
/** Petri's own header: only the node sets it, on the way in and on the way out. */
const OWN = 'x-petri-invocation-id';
/** What the server's response may not set: the node's own headers. */
const NODE_RESPONSE_HEADERS: ReadonlySet<string> = new Set([OWN, 'x-petri-version']);
const NO_BODY_METHODS = new Set(['GET', 'HEAD', 'DELETE', 'OPTIONS', 'TRACE']);
/**
 * A declared body up to this size is read whole and sent with the request
 * head in one write; a larger or chunked one is streamed.
 */
const SMALL_BODY_BYTES = 64 * 1024;

/**
 * Kept-alive connections to instances' servers, one pool per instance
 * endpoint (dropped by undici once its last connection closes, e.g. when
 * the instance stops). Requests are never pipelined: a function's server
 * need not support it.
 */
export function upstreamDispatcher(): Agent {
  return new Agent({ pipelining: 1, keepAliveTimeout: 4_000, connections: null });
}

/** What never goes to the function's server, for requests that drop nothing else (most). */
const ALWAYS_DROPPED: ReadonlySet<string> = new Set([...NODE_ANSWERS, OWN]);

function forwardedHeaders(incoming: http.IncomingMessage, drop: ReadonlySet<string>): string[] {
  const dropped = drop.size === 0 ? ALWAYS_DROPPED : new Set([...drop, ...ALWAYS_DROPPED]);
  const headers = endToEndHeaders(incoming.rawHeaders, dropped);
  const from = incoming.socket.remoteAddress ?? '';
  const prior = incoming.headers['x-forwarded-for'];
  // The client's own x-forwarded-for was kept above; ours extends the chain.
  if (prior === undefined) headers.push('x-forwarded-for', from);
  else
    for (let i = 0; i < headers.length; i += 2) {
      if (headers[i].toLowerCase() === 'x-forwarded-for')
        headers[i + 1] = `${headers[i + 1]}, ${from}`;
    }
  headers.push('x-forwarded-proto', 'http');
  // A request without a body (no length, not chunked) stays without one.
  if (!hasBody(incoming) && !NO_BODY_METHODS.has(incoming.method ?? '')) {
    headers.push('content-length', '0');
  }
  return headers;
}

function hasBody(incoming: http.IncomingMessage): boolean {
  return (
    incoming.headers['content-length'] !== undefined ||
    incoming.headers['transfer-encoding'] !== undefined
  );
}

type Fail = (error: PetriError) => void;

function tooLarge(limitBytes: number): PetriError {
  return new PetriError('PayloadTooLarge', `the request body is over ${limitBytes} bytes`);
}

/**
 * The request body as undici sends it: none, a small declared one read
 * whole (usually one chunk, so no copy), or a stream checked against the
 * limit as it goes. Throws PayloadTooLarge for a declared length over it.
 */
function requestBody(
  incoming: http.IncomingMessage,
  limitBytes: number,
  fail: Fail,
): Promise<Buffer> | Readable | null {
  // Not async: a promise only where the body is read whole (the caller awaits; a throw here
  // rejects the caller), so a request without a body or a streamed one costs no promise.
  if (!hasBody(incoming)) return null;
  const declared = Number(incoming.headers['content-length']);
  if (declared > limitBytes) throw tooLarge(limitBytes);
  if (incoming.headers['transfer-encoding'] === undefined && declared <= SMALL_BODY_BYTES) {
    return readSmall(incoming);
  }
  return Readable.from(streamed(incoming, limitBytes, fail), { objectMode: false });
}

function readSmall(incoming: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    incoming.on('data', (chunk: Buffer) => chunks.push(chunk));
    incoming.once('end', () => resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)));
    incoming.once('error', () =>
      reject(new PetriError('InvalidRequest', 'the client closed the connection early')),
    );
  });
}

async function* streamed(
  incoming: http.IncomingMessage,
  limitBytes: number,
  fail: Fail,
): AsyncGenerator<Buffer> {
  let sent = 0;
  try {
    // Not destroyed when the limit stops the loop: the refusal still goes out on its connection.
    for await (const chunk of incoming.iterator({
      destroyOnReturn: false,
    }) as AsyncIterable<Buffer>) {
      sent += chunk.length;
      if (sent > limitBytes) {
        const error = tooLarge(limitBytes);
        fail(error);
        throw error;
      }
      yield chunk;
    }
  } catch (err) {
    if (err instanceof PetriError) throw err;
    const error = new PetriError('InvalidRequest', 'the client closed the connection early');
    fail(error);
    throw error;
  }
}

/** Response header names and values as Node writes them back (bytes kept: latin1). */
function headerStrings(raw: Buffer[] | string[] | null): string[] {
  if (!raw) return [];
  return raw.map((item) => (typeof item === 'string' ? item : item.toString('latin1')));
}

/**
 * Relays one exchange; resolves with the server's status once the whole
 * response went to the client. Rejects with a PetriError when it cannot:
 * the caller answers with it if no response has started, else cuts the
 * connection (the client then sees a truncated response, as from any proxy).
 */
export async function relay(
  request: ProxyRequest,
  endpoint: HttpEndpoint,
  context: ExchangeContext,
  dispatcher: Dispatcher,
  limits: ProxyLimits,
): Promise<number> {
  const { incoming } = request;
  const headers = forwardedHeaders(incoming, request.drop);
  headers.push(OWN, context.invocationId);
  const exchange = new Exchange(request, context, limits);
  const body = await requestBody(incoming, limits.requestBytes, (error) =>
    exchange.failEarly(error),
  );
  if (exchange.failed) throw exchange.failed;
  return exchange.start(dispatcher, {
    origin: `http://${endpoint.host}:${endpoint.port}`,
    method: (incoming.method ?? 'GET') as Dispatcher.HttpMethod,
    path: request.path,
    headers,
    body,
  });
}

/** The exchange a client response belongs to, for the listeners below. */
const EXCHANGE = Symbol('exchange');
type Outgoing = http.ServerResponse & { [EXCHANGE]?: Exchange };

function onOutgoingClose(this: Outgoing): void {
  this[EXCHANGE]?.clientClosed();
}

function onOutgoingDrain(this: Outgoing): void {
  this[EXCHANGE]?.drained();
}

/**
 * One relayed exchange: undici's dispatch handler (the callbacks write the
 * server's response to the client, with the client's backpressure passed
 * on: returning false pauses the upstream) and its end, as one object with
 * its methods on the prototype. The response's listeners are shared
 * functions that find the exchange on the response, and the object itself
 * listens for the invocation's abort (`handleEvent`): a request allocates
 * no closure per callback.
 */
class Exchange implements Dispatcher.DispatchHandler {
  /** A failure while the request body was still being read (over the limit, the client left). */
  failed: PetriError | undefined;
  private abortUpstream: ((err: Error) => void) | undefined;
  private resumeUpstream: (() => void) | undefined;
  private done = false;
  private status = 502;
  private received = 0;
  private resolve: ((status: number) => void) | undefined;
  private reject: ((error: PetriError) => void) | undefined;

  constructor(
    private readonly request: ProxyRequest,
    private readonly context: ExchangeContext,
    private readonly limits: ProxyLimits,
  ) {}

  failEarly(error: PetriError): void {
    this.failed ??= error;
    this.abortUpstream?.(error);
  }

  /** The invocation's signal aborted (its timeout, the instance's exit). */
  handleEvent(): void {
    this.fail(new PetriError('Timeout', 'the invocation ended before the response did'));
  }

  clientClosed(): void {
    if (!this.request.outgoing.writableFinished) {
      this.fail(new PetriError('InvalidRequest', 'the client closed the connection early'));
    }
  }

  drained(): void {
    this.resumeUpstream?.();
  }

  start(dispatcher: Dispatcher, options: Dispatcher.DispatchOptions): Promise<number> {
    return new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
      const { signal } = this.context;
      if (signal.aborted) return this.handleEvent();
      signal.addEventListener('abort', this, { once: true });
      const outgoing: Outgoing = this.request.outgoing;
      outgoing[EXCHANGE] = this;
      outgoing.once('close', onOutgoingClose);
      try {
        dispatcher.dispatch(options, this);
      } catch (err) {
        this.fail(
          new PetriError('HandlerError', `the function's server failed: ${(err as Error).message}`),
        );
      }
    });
  }

  private fail(error: PetriError): void {
    if (this.done) return;
    this.done = true;
    this.abortUpstream?.(error);
    const { outgoing } = this.request;
    outgoing.off('drain', onOutgoingDrain);
    if (outgoing.headersSent) outgoing.destroy();
    this.reject?.(error);
  }

  private settle(): void {
    if (this.done) return;
    this.done = true;
    this.context.signal.removeEventListener('abort', this);
    this.request.outgoing.off('close', onOutgoingClose);
    this.resolve?.(this.status);
  }

  onConnect(abort: (err?: Error) => void): void {
    this.abortUpstream = abort;
    if (this.failed) abort(this.failed);
  }

  onHeaders(
    statusCode: number,
    rawHeaders: Buffer[] | string[] | null,
    resume: () => void,
    statusText: string,
  ): boolean {
    // Informational answers (100, 103) are not relayed, as node:http's client drops them;
    // an unasked-for 101 is no answer either.
    if (statusCode >= 100 && statusCode < 200 && statusCode !== 101) return true;
    this.status = statusCode;
    const { outgoing, version } = this.request;
    const back = endToEndHeaders(headerStrings(rawHeaders), NODE_RESPONSE_HEADERS, [
      'x-petri-version',
      version,
    ]);
    if (declaredLength(back) > this.limits.responseBytes) {
      this.fail(
        new PetriError('ResponseTooLarge', `the server's response is over ${this.limit()}`),
      );
      return false;
    }
    back.push(OWN, this.context.invocationId);
    // The server is the function's: a status or reason HTTP cannot relay must not throw here.
    // Headers as one list, none set before: node:http checks each name and value as it writes.
    try {
      if (statusCode < 200 || statusCode > 599)
        throw new Error(`status ${statusCode} cannot be relayed`);
      outgoing.writeHead(statusCode, statusText, back);
    } catch (err) {
      this.fail(new PetriError('BadResponse', `the server's response: ${(err as Error).message}`));
      return false;
    }
    this.resumeUpstream = resume;
    outgoing.on('drain', onOutgoingDrain);
    return true;
  }

  onData(chunk: Buffer): boolean {
    this.received += chunk.length;
    if (this.received > this.limits.responseBytes) {
      this.fail(new PetriError('ResponseTooLarge', `the server sent more than ${this.limit()}`));
      return false;
    }
    return this.request.outgoing.write(chunk);
  }

  onComplete(): void {
    const { outgoing } = this.request;
    outgoing.off('drain', onOutgoingDrain);
    outgoing.end(() => this.settle());
  }

  onError(err: Error): void {
    this.request.outgoing.off('drain', onOutgoingDrain);
    this.fail(
      err instanceof PetriError
        ? err
        : new PetriError('HandlerError', `the function's server failed: ${err.message}`),
    );
  }

  private limit(): string {
    return `the ${this.limits.responseBytes}-byte response limit`;
  }
}

/** The content-length a header list declares (NaN if none). */
function declaredLength(headers: string[]): number {
  for (let i = 0; i < headers.length; i += 2) {
    if (headers[i].toLowerCase() === 'content-length') return Number(headers[i + 1]);
  }
  return NaN;
}
