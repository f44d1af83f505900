/**
 * The reverse proxy behind function URLs of `http` functions: the client's
 * request goes to the instance's server as it came (method, path, query,
 * headers, body bytes, streamed), and the server's response comes back as it
 * went (status, headers, body, streamed), minus hop-by-hop headers (RFC 9110
 * §7.6.1). Bodies are capped in both directions by the node's limits.
 */
import http from 'node:http';
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
}

/**
 * `expect` is answered by the node's server itself (100-continue), so the
 * function's server must not answer it again.
 */
const NODE_ANSWERS = ['expect'];
/** Petri's own header: only the node sets it, on the way in and on the way out. */
const OWN = 'x-petri-invocation-id';

function forwardedHeaders(incoming: http.IncomingMessage, drop: ReadonlySet<string>): string[] {
  const headers = endToEndHeaders(incoming.rawHeaders, new Set([...drop, ...NODE_ANSWERS, OWN]));
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
  const hasBody =
    incoming.headers['content-length'] !== undefined ||
    incoming.headers['transfer-encoding'] !== undefined;
  if (!hasBody && !['GET', 'HEAD', 'DELETE', 'OPTIONS', 'TRACE'].includes(incoming.method ?? '')) {
    headers.push('content-length', '0');
  }
  return headers;
}

/**
 * Relays one exchange; resolves with the server's status once the whole
 * response went to the client. Rejects with a PetriError when it cannot:
 * the caller answers with it if no response has started, else cuts the
 * connection (the client then sees a truncated response, as from any proxy).
 */
export function relay(
  request: ProxyRequest,
  endpoint: HttpEndpoint,
  context: ExchangeContext,
  agent: http.Agent,
  limits: ProxyLimits,
): Promise<number> {
  const { incoming, outgoing } = request;
  return new Promise((resolve, reject) => {
    const headers = forwardedHeaders(incoming, request.drop);
    headers.push(OWN, context.invocationId);
    const upstream = http.request({
      agent,
      host: endpoint.host,
      port: endpoint.port,
      method: incoming.method,
      path: request.path,
      headers,
      setHost: false,
    });
    let done = false;
    const fail = (error: PetriError): void => {
      if (done) return;
      done = true;
      upstream.destroy();
      if (outgoing.headersSent) outgoing.destroy();
      reject(error);
    };
    context.signal.addEventListener('abort', () =>
      fail(new PetriError('Timeout', 'the invocation ended before the response did')),
    );
    upstream.on('error', (err) =>
      fail(new PetriError('HandlerError', `the function's server failed: ${err.message}`)),
    );
    outgoing.on('close', () => {
      if (!outgoing.writableFinished) {
        fail(new PetriError('InvalidRequest', 'the client closed the connection early'));
      }
    });
    sendBody(incoming, upstream, limits.requestBytes, fail);
    upstream.on('response', (response) => {
      const status = response.statusCode ?? 502;
      const declared = Number(response.headers['content-length']);
      if (declared > limits.responseBytes) {
        const limit = `the ${limits.responseBytes}-byte response limit`;
        fail(new PetriError('ResponseTooLarge', `the server's response is over ${limit}`));
        return;
      }
      // The version header is the node's too: set on the reply before the relay.
      const back = endToEndHeaders(response.rawHeaders, new Set([OWN, 'x-petri-version']));
      back.push(OWN, context.invocationId);
      // The server is the function's: a status or reason HTTP cannot relay must not throw here.
      try {
        if (status < 200 || status > 599) throw new Error(`status ${status} cannot be relayed`);
        outgoing.writeHead(status, response.statusMessage, back);
      } catch (err) {
        fail(new PetriError('BadResponse', `the server's response: ${(err as Error).message}`));
        return;
      }
      let received = 0;
      response.on('data', (chunk: Buffer) => {
        received += chunk.length;
        if (received > limits.responseBytes) {
          const limit = `the ${limits.responseBytes}-byte response limit`;
          fail(new PetriError('ResponseTooLarge', `the server sent more than ${limit}`));
          return;
        }
        if (!outgoing.write(chunk)) {
          response.pause();
          outgoing.once('drain', () => response.resume());
        }
      });
      response.on('end', () => {
        outgoing.end(() => {
          if (done) return;
          done = true;
          resolve(status);
        });
      });
      response.on('error', (err) =>
        fail(new PetriError('HandlerError', `the function's server failed: ${err.message}`)),
      );
    });
  });
}

/** Streams the client's body to the server with backpressure, failing past the limit. */
function sendBody(
  incoming: http.IncomingMessage,
  upstream: http.ClientRequest,
  limitBytes: number,
  fail: (error: PetriError) => void,
): void {
  let sent = 0;
  incoming.on('data', (chunk: Buffer) => {
    sent += chunk.length;
    if (sent > limitBytes) {
      incoming.pause();
      fail(new PetriError('PayloadTooLarge', `the request body is over ${limitBytes} bytes`));
      return;
    }
    if (!upstream.write(chunk)) {
      incoming.pause();
      upstream.once('drain', () => incoming.resume());
    }
  });
  incoming.on('end', () => upstream.end());
  incoming.on('error', () =>
    fail(new PetriError('InvalidRequest', 'the client closed the connection early')),
  );
}
