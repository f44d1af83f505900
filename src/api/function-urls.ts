/**
 * Function URLs: `ANY /fn/{name}` and `ANY /fn/{name}/{path*}` invoke the
 * function with the whole HTTP request. An `http` function's server gets it
 * through the reverse proxy; a `node` or `exec` function gets it as a
 * Lambda function-URL event. Errors of the platform are the registry's JSON
 * errors; the function's own 4xx/5xx are its response.
 */
import http from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Dispatcher } from 'undici';
import { PetriError, toPetriError } from '../errors.ts';
import type { PetriNode, UrlTarget } from '../node/index.ts';
import { isFunctionName, parseQualifier } from '../spec/index.ts';
import { lambdaEvent, lambdaResponse, type UrlResponse } from './lambda.ts';
import { relay, upstreamDispatcher, type ProxyLimits } from './proxy.ts';

export interface FunctionUrlOptions {
  requestLimitBytes: number;
  responseLimitBytes: number;
  token?: string;
  bearerMatches(header: string | undefined, token: string): boolean;
}

/** The request line after `/fn/{name}`, as the client sent it. */
interface UrlParts {
  name: string;
  /** `/` at least, percent-encoding kept. */
  path: string;
  query: string;
}

/** Splits `/fn/{name}{rest}` as sent; the name may be percent-encoded, the rest is kept as is. */
export function urlParts(url: string): UrlParts | undefined {
  const match = /^\/fn\/([^/?#]*)([^?#]*)(?:\?([^#]*))?/.exec(url);
  if (!match) return undefined;
  let name: string;
  try {
    name = decodeURIComponent(match[1]);
  } catch {
    return undefined;
  }
  return { name, path: match[2] === '' ? '/' : match[2], query: match[3] ?? '' };
}

/** Whether a request line is a function URL's (`/fn/…`), as the node's server routes it. */
export function isFunctionUrl(url: string | undefined): boolean {
  return url !== undefined && url.startsWith('/fn/');
}

type Incoming = http.IncomingMessage;
type Outgoing = http.ServerResponse;

const DROP_NONE: ReadonlySet<string> = new Set();
const DROP_TOKEN: ReadonlySet<string> = new Set(['authorization']);

/** The function a request names, checked against the spec's `url.auth`. */
function resolve(node: PetriNode, incoming: Incoming, options: FunctionUrlOptions) {
  const parts = urlParts(incoming.url ?? '');
  // `/fn/{name}:{qualifier}` picks a version or an alias, as Lambda's qualified URLs do.
  const [name = '', qualifier] = (parts?.name ?? '').split(/:(.*)/s, 2);
  if (!parts || !isFunctionName(name)) {
    throw new PetriError('FunctionNotFound', `no function named "${name}"`);
  }
  const target: UrlTarget = node.urlTarget(
    name,
    qualifier === undefined ? {} : parseQualifier(qualifier),
  );
  const needsToken = target.spec.url.auth === 'token' && options.token !== undefined;
  if (needsToken && !options.bearerMatches(incoming.headers.authorization, options.token ?? '')) {
    throw new PetriError('Unauthorized', 'this function URL needs the API token');
  }
  // The node's token is the node's secret: no function sees it, whatever its
  // URL's auth (a client may send it to an open URL too).
  const carriesToken =
    options.token !== undefined &&
    options.bearerMatches(incoming.headers.authorization, options.token);
  const drop = carriesToken ? DROP_TOKEN : DROP_NONE;
  return { parts, target, drop };
}

/** `rawHeaders` without the names in `drop` (lower case). */
function withoutHeaders(rawHeaders: string[], drop: ReadonlySet<string>): string[] {
  const kept: string[] = [];
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    if (!drop.has(rawHeaders[i].toLowerCase())) kept.push(rawHeaders[i], rawHeaders[i + 1]);
  }
  return kept;
}

/** Reads the whole request body, refusing it past the limit. */
function readBody(incoming: Incoming, limitBytes: number): Promise<Buffer> {
  return new Promise((resolveBody, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    incoming.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limitBytes) return void chunks.push(chunk);
      incoming.pause();
      reject(new PetriError('PayloadTooLarge', `the request body is over ${limitBytes} bytes`));
    });
    incoming.on('end', () => resolveBody(Buffer.concat(chunks)));
    incoming.on('error', reject);
  });
}

function writeResponse(outgoing: Outgoing, response: UrlResponse, invocationId: string): void {
  const headers = [...response.headers, 'x-petri-invocation-id', invocationId];
  const noBody = response.statusCode === 204 || response.statusCode === 304;
  if (!noBody) headers.push('content-length', String(response.body.length));
  outgoing.writeHead(response.statusCode, headers);
  outgoing.end(noBody ? undefined : response.body);
}

/**
 * After refusing a request whose body is still coming (over the limit, or a
 * failed relay), the node keeps reading and dropping that body for at most
 * this many bytes and this long before it closes the connection. Closing at
 * once, with the client's bytes unread, makes the kernel reset the
 * connection, and a client still writing may then lose the answer.
 */
const LINGER_BYTES = 8 * 1024 * 1024;
const LINGER_MS = 5_000;

/**
 * Connections the door closes itself: those lingering after a refused body
 * (node's server counts them as busy, so a stopping server would wait for
 * them). `closeAll` ends them, and any later one closes without lingering.
 */
class Lingering {
  private readonly sockets = new Set<Socket>();
  private closing = false;

  /**
   * Half-closes once the answer is written and drops the rest of the body,
   * destroying the connection when the client closes its side, after
   * LINGER_BYTES more or after LINGER_MS. Node's server would destroy it as
   * soon as the `Connection: close` answer is written.
   */
  start(incoming: Incoming): void {
    // Gone already (the client left, or a failed relay destroyed it): nothing to linger on.
    const socket = incoming.socket as Socket | null;
    if (!socket || socket.destroyed || this.closing) return;
    this.sockets.add(socket);
    const readBefore = socket.bytesRead;
    const stop = (): void => void socket.destroy();
    const timer = setTimeout(stop, LINGER_MS);
    socket.once('close', () => {
      clearTimeout(timer);
      this.sockets.delete(socket);
    });
    // node:http ends a last response with destroySoon (end, then destroy once written): end only.
    socket.destroySoon = () => void socket.end();
    incoming.removeAllListeners('data');
    incoming.on('data', () => {
      if (socket.bytesRead - readBefore > LINGER_BYTES) stop();
    });
    incoming.resume();
  }

  closeAll(): void {
    this.closing = true;
    for (const socket of this.sockets) socket.destroy();
  }
}

/** A platform error as the registered JSON body, or a cut connection once a response started. */
function answerError(
  incoming: Incoming,
  outgoing: Outgoing,
  error: PetriError,
  lingering: Lingering,
): void {
  if (outgoing.headersSent) return void outgoing.destroy();
  const body = JSON.stringify(error.toBody());
  const headers: http.OutgoingHttpHeaders = {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
  };
  // An unread request body (over the limit, or a failed relay) ends the connection here.
  const declaresBody =
    incoming.headers['content-length'] !== undefined ||
    incoming.headers['transfer-encoding'] !== undefined;
  const unread = declaresBody && !incoming.complete;
  if (unread) headers.connection = 'close';
  const retry = retryAfter(error);
  if (retry !== undefined) headers['retry-after'] = retry;
  if (unread) lingering.start(incoming);
  outgoing.writeHead(error.status, headers);
  outgoing.end(body);
}

/** Seconds a shed request should wait (429/503 from the queue or the node's capacity). */
export function retryAfter(error: PetriError): string | undefined {
  return ['QueueFull', 'QueueTimeout', 'CapacityExceeded', 'NodeRestarted'].includes(error.code)
    ? '1'
    : undefined;
}

async function viaLambda(
  node: PetriNode,
  incoming: Incoming,
  outgoing: Outgoing,
  resolved: ReturnType<typeof resolve>,
  options: FunctionUrlOptions,
  lingering: Lingering,
): Promise<void> {
  const { parts, target } = resolved;
  outgoing.setHeader('x-petri-version', String(target.version));
  const body = await readBody(incoming, options.requestLimitBytes);
  const method = incoming.method ?? 'GET';
  const { record, response } = await node.invokeUrl(
    target,
    (requestId) =>
      lambdaEvent(
        {
          method,
          rawPath: parts.path,
          rawQueryString: parts.query,
          rawHeaders:
            resolved.drop.size === 0
              ? incoming.rawHeaders
              : withoutHeaders(incoming.rawHeaders, resolved.drop),
          body,
          sourceIp: incoming.socket.remoteAddress ?? '',
          protocol: `HTTP/${incoming.httpVersion}`,
        },
        { functionName: target.spec.name, requestId, now: Date.now() },
      ),
    { method, path: parts.path, respond: lambdaResponse },
  );
  if (record.error || !response) {
    const { code, message, details } = record.error ?? { code: 'Internal' as const, message: '' };
    outgoing.setHeader('x-petri-invocation-id', record.id);
    return answerError(incoming, outgoing, new PetriError(code, message, details), lingering);
  }
  writeResponse(outgoing, response, record.id);
}

async function viaProxy(
  node: PetriNode,
  incoming: Incoming,
  outgoing: Outgoing,
  resolved: ReturnType<typeof resolve>,
  dispatcher: Dispatcher,
  limits: ProxyLimits,
  lingering: Lingering,
): Promise<void> {
  const { parts, target, drop } = resolved;
  const path = parts.query === '' ? parts.path : `${parts.path}?${parts.query}`;
  // x-petri-version goes out with the server's headers (relay), or with an error answer here.
  const version = String(target.version);
  const proxied = { incoming, outgoing, path, drop, version };
  const record = await node.proxy(
    target,
    { method: incoming.method ?? 'GET', path: parts.path },
    (endpoint, context) => relay(proxied, endpoint, context, dispatcher, limits),
  );
  if (record.error) {
    const { code, message, details } = record.error;
    if (!outgoing.headersSent) {
      outgoing.setHeader('x-petri-version', version);
      outgoing.setHeader('x-petri-invocation-id', record.id);
    }
    answerError(incoming, outgoing, new PetriError(code, message, details), lingering);
  }
}

/** Function URLs on the node's raw request and response: see functionUrlDoor. */
export interface FunctionUrlDoor {
  /** Answers one function URL request; never throws (errors are answered). */
  serve(incoming: Incoming, outgoing: Outgoing): Promise<void>;
  /** Ends the connections the door holds open itself (see Lingering), as the server stops. */
  closeConnections(): void;
  close(): Promise<void>;
}

/**
 * Function URLs served on node:http's request and response as they come:
 * the node's server hands `/fn/…` requests straight here, past fastify's
 * router, hooks and body parsing, which cost the proxied path more than
 * the relay itself. The same door is also mounted as fastify routes, so
 * `inject` (tests) reaches it too.
 */
export function functionUrlDoor(node: PetriNode, options: FunctionUrlOptions): FunctionUrlDoor {
  // Keep-alive connections to instances' servers, shared by all requests.
  const dispatcher = upstreamDispatcher();
  const limits: ProxyLimits = {
    requestBytes: options.requestLimitBytes,
    responseBytes: options.responseLimitBytes,
  };
  const lingering = new Lingering();
  return {
    async serve(incoming, outgoing) {
      try {
        const resolved = resolve(node, incoming, options);
        if (resolved.target.spec.runtime === 'http') {
          return await viaProxy(node, incoming, outgoing, resolved, dispatcher, limits, lingering);
        }
        return await viaLambda(node, incoming, outgoing, resolved, options, lingering);
      } catch (err) {
        try {
          answerError(incoming, outgoing, toPetriError(err), lingering);
        } catch {
          // Never a rejection out of here: the node's server does not wait for this promise.
          outgoing.destroy();
        }
      }
    },
    closeConnections: () => lingering.closeAll(),
    close: () => {
      lingering.closeAll();
      return dispatcher.destroy();
    },
  };
}

/**
 * Registers the function URL routes in their own context: bodies are not
 * parsed there (the door streams them or reads them as bytes).
 */
export function addFunctionUrls(app: FastifyInstance, door: FunctionUrlDoor): void {
  // Before the server's close, which waits for every busy connection.
  app.addHook('preClose', (done) => {
    door.closeConnections();
    done();
  });
  app.addHook('onClose', () => door.close());
  void app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', (_request, _payload, done) => done(null, undefined));
    const handler = async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
      reply.hijack();
      await door.serve(request.raw, reply.raw);
    };
    scope.all('/fn/:name', handler);
    scope.all('/fn/:name/*', handler);
  });
}
