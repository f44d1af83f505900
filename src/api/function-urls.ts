/**
 * Function URLs: `ANY /fn/{name}` and `ANY /fn/{name}/{path*}` invoke the
 * function with the whole HTTP request. An `http` function's server gets it
 * through the reverse proxy; a `node` or `exec` function gets it as a
 * Lambda function-URL event. Errors of the platform are the registry's JSON
 * errors; the function's own 4xx/5xx are its response.
 */
import http from 'node:http';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Dispatcher } from 'undici';
import { PetriError, toPetriError } from '../errors.ts';
import type { PetriNode, UrlTarget } from '../node/index.ts';
import { FunctionNameSchema, parseQualifier } from '../spec/index.ts';
import { lambdaEvent, lambdaResponse, type UrlResponse } from './lambda.ts';
import { relay, upstreamDispatcher } from './proxy.ts';

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

/** The function a request names, checked against the spec's `url.auth`. */
function resolve(node: PetriNode, request: FastifyRequest, options: FunctionUrlOptions) {
  const parts = urlParts(request.raw.url ?? '');
  // `/fn/{name}:{qualifier}` picks a version or an alias, as Lambda's qualified URLs do.
  const [name = '', qualifier] = (parts?.name ?? '').split(/:(.*)/s, 2);
  if (!parts || !FunctionNameSchema.safeParse(name).success) {
    throw new PetriError('FunctionNotFound', `no function named "${name}"`);
  }
  const target: UrlTarget = node.urlTarget(
    name,
    qualifier === undefined ? {} : parseQualifier(qualifier),
  );
  const needsToken = target.spec.url.auth === 'token' && options.token !== undefined;
  if (needsToken && !options.bearerMatches(request.headers.authorization, options.token ?? '')) {
    throw new PetriError('Unauthorized', 'this function URL needs the API token');
  }
  // The node's token is the node's secret: the function never sees it.
  const drop = new Set(needsToken ? ['authorization'] : []);
  return { parts, target, drop };
}

/** Reads the whole request body, refusing it past the limit. */
function readBody(incoming: http.IncomingMessage, limitBytes: number): Promise<Buffer> {
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

function writeResponse(reply: FastifyReply, response: UrlResponse, invocationId: string): void {
  reply.hijack();
  const headers = [...response.headers, 'x-petri-invocation-id', invocationId];
  const noBody = response.statusCode === 204 || response.statusCode === 304;
  if (!noBody) headers.push('content-length', String(response.body.length));
  reply.raw.writeHead(response.statusCode, headers);
  reply.raw.end(noBody ? undefined : response.body);
}

/** A failure after the reply was taken over: an error body if nothing was sent yet. */
function answerError(reply: FastifyReply, error: PetriError): void {
  const raw = reply.raw;
  if (raw.headersSent) return void raw.destroy();
  const body = JSON.stringify(error.toBody());
  const headers: http.OutgoingHttpHeaders = {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
  };
  // An unread request body (over the limit, or a failed relay) ends the connection here.
  if (!reply.request.raw.complete) headers.connection = 'close';
  const retry = retryAfter(error);
  if (retry !== undefined) headers['retry-after'] = retry;
  raw.writeHead(error.status, headers);
  raw.end(body);
}

/** Seconds a shed request should wait (429/503 from the queue or the node's capacity). */
export function retryAfter(error: PetriError): string | undefined {
  return ['QueueFull', 'QueueTimeout', 'CapacityExceeded', 'NodeRestarted'].includes(error.code)
    ? '1'
    : undefined;
}

async function viaLambda(
  node: PetriNode,
  request: FastifyRequest,
  reply: FastifyReply,
  resolved: ReturnType<typeof resolve>,
  options: FunctionUrlOptions,
): Promise<void> {
  const { parts, target } = resolved;
  reply.raw.setHeader('x-petri-version', String(target.version));
  let body: Buffer;
  try {
    body = await readBody(request.raw, options.requestLimitBytes);
  } catch (err) {
    reply.hijack();
    return answerError(reply, toPetriError(err));
  }
  const method = request.raw.method ?? 'GET';
  const { record, response } = await node.invokeUrl(
    target,
    (requestId) =>
      lambdaEvent(
        {
          method,
          rawPath: parts.path,
          rawQueryString: parts.query,
          rawHeaders: request.raw.rawHeaders,
          body,
          sourceIp: request.socket.remoteAddress ?? '',
          protocol: `HTTP/${request.raw.httpVersion}`,
        },
        { functionName: target.spec.name, requestId, now: Date.now() },
      ),
    { method, path: parts.path, respond: lambdaResponse },
  );
  if (record.error || !response) {
    const { code, message, details } = record.error ?? { code: 'Internal' as const, message: '' };
    reply.hijack();
    reply.raw.setHeader('x-petri-invocation-id', record.id);
    return answerError(reply, new PetriError(code, message, details));
  }
  writeResponse(reply, response, record.id);
}

async function viaProxy(
  node: PetriNode,
  request: FastifyRequest,
  reply: FastifyReply,
  resolved: ReturnType<typeof resolve>,
  dispatcher: Dispatcher,
  options: FunctionUrlOptions,
): Promise<void> {
  const { parts, target, drop } = resolved;
  reply.hijack();
  reply.raw.setHeader('x-petri-version', String(target.version));
  const path = parts.query === '' ? parts.path : `${parts.path}?${parts.query}`;
  const limits = {
    requestBytes: options.requestLimitBytes,
    responseBytes: options.responseLimitBytes,
  };
  const proxied = { incoming: request.raw, outgoing: reply.raw, path, drop };
  const record = await node.proxy(
    target,
    { method: request.raw.method ?? 'GET', path: parts.path },
    (endpoint, context) => relay(proxied, endpoint, context, dispatcher, limits),
  );
  if (record.error) {
    const { code, message, details } = record.error;
    if (!reply.raw.headersSent) reply.raw.setHeader('x-petri-invocation-id', record.id);
    answerError(reply, new PetriError(code, message, details));
  }
}

/**
 * Registers the function URL routes in their own context: bodies are not
 * parsed there (the proxy streams them, the Lambda path reads them as bytes).
 */
export function addFunctionUrls(
  app: FastifyInstance,
  node: PetriNode,
  options: FunctionUrlOptions,
): void {
  // Keep-alive connections to instances' servers, shared by all requests.
  const dispatcher = upstreamDispatcher();
  app.addHook('onClose', async () => dispatcher.destroy());
  void app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', (_request, _payload, done) => done(null, undefined));
    const handler = async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
      const resolved = resolve(node, request, options);
      if (resolved.target.spec.runtime === 'http') {
        return viaProxy(node, request, reply, resolved, dispatcher, options);
      }
      return viaLambda(node, request, reply, resolved, options);
    };
    scope.all('/fn/:name', handler);
    scope.all('/fn/:name/*', handler);
  });
}
