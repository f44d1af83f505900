/**
 * Function URLs for `node` and `exec` functions, in AWS Lambda's format: the
 * request becomes a function-URL (API Gateway v2, payload 2.0) event, and the
 * handler's value becomes the response by Lambda's rules, so a handler
 * written for a Lambda function URL runs unchanged.
 */
import { validateHeaderName, validateHeaderValue } from 'node:http';
import { z } from 'zod';
import { PetriError } from '../errors.ts';
import { isHopByHop } from './hop-by-hop.ts';

/** The parts of an HTTP request the event is made of. */
export interface UrlRequest {
  method: string;
  /** The path after `/fn/{name}`, as sent (percent-encoding kept), `/` at least. */
  rawPath: string;
  /** Everything after `?`, as sent; '' when there is none. */
  rawQueryString: string;
  /** Node's `rawHeaders`: names and values in turn, as sent. */
  rawHeaders: string[];
  body: Buffer;
  sourceIp: string;
  protocol: string;
}

export interface LambdaEvent {
  version: '2.0';
  routeKey: '$default';
  rawPath: string;
  rawQueryString: string;
  cookies?: string[];
  headers: Record<string, string>;
  queryStringParameters?: Record<string, string>;
  requestContext: {
    accountId: 'anonymous';
    apiId: string;
    domainName: string;
    domainPrefix: string;
    http: { method: string; path: string; protocol: string; sourceIp: string; userAgent: string };
    requestId: string;
    routeKey: '$default';
    stage: '$default';
    time: string;
    timeEpoch: number;
  };
  body?: string;
  isBase64Encoded: boolean;
}

/** The HTTP response a handler's value stands for. */
export interface UrlResponse {
  statusCode: number;
  /** Names and values in turn, ready for `writeHead`. */
  headers: string[];
  body: Buffer;
}

/** Content types Lambda passes as text; any other body (or none named) is base64. */
const TEXT_TYPE =
  /^(text\/|application\/(json|javascript|xml|x-www-form-urlencoded|graphql)\b|[^;]*\+(json|xml)\b)/i;

const MONTHS = 'Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec'.split(' ');

/** `12/Mar/2020:19:03:58 +0000`, the time format of Lambda's requestContext. */
function lambdaTime(epochMs: number): string {
  const d = new Date(epochMs);
  const two = (n: number): string => String(n).padStart(2, '0');
  return (
    `${two(d.getUTCDate())}/${MONTHS[d.getUTCMonth()]}/${d.getUTCFullYear()}:` +
    `${two(d.getUTCHours())}:${two(d.getUTCMinutes())}:${two(d.getUTCSeconds())} +0000`
  );
}

/** Query parameters as Lambda gives them: repeated keys joined by commas. */
function queryParameters(raw: string): Record<string, string> | undefined {
  if (raw === '') return undefined;
  const joined: Record<string, string> = {};
  for (const [key, value] of new URLSearchParams(raw)) {
    joined[key] = key in joined ? `${joined[key]},${value}` : value;
  }
  return joined;
}

/**
 * The request as Lambda's payload 2.0 event: header names in lower case,
 * repeated headers joined by commas, cookies in their own list, a text body
 * as is and any other body in base64.
 */
export function lambdaEvent(
  request: UrlRequest,
  context: { functionName: string; requestId: string; now: number },
): LambdaEvent {
  const headers: Record<string, string> = {};
  const cookies: string[] = [];
  for (let i = 0; i + 1 < request.rawHeaders.length; i += 2) {
    const name = request.rawHeaders[i].toLowerCase();
    const value = request.rawHeaders[i + 1];
    if (name === 'cookie') cookies.push(...value.split(/;\s*/).filter((c) => c !== ''));
    else headers[name] = name in headers ? `${headers[name]},${value}` : value;
  }
  const isText = TEXT_TYPE.test(headers['content-type'] ?? '');
  const hasBody = request.body.length > 0;
  const event: LambdaEvent = {
    version: '2.0',
    routeKey: '$default',
    rawPath: request.rawPath,
    rawQueryString: request.rawQueryString,
    headers,
    requestContext: {
      accountId: 'anonymous',
      apiId: context.functionName,
      domainName: headers.host ?? '',
      domainPrefix: (headers.host ?? '').split('.')[0],
      http: {
        method: request.method,
        path: request.rawPath,
        protocol: request.protocol,
        sourceIp: request.sourceIp,
        userAgent: headers['user-agent'] ?? '',
      },
      requestId: context.requestId,
      routeKey: '$default',
      stage: '$default',
      time: lambdaTime(context.now),
      timeEpoch: Math.floor(context.now),
    },
    isBase64Encoded: hasBody && !isText,
  };
  if (cookies.length > 0) event.cookies = cookies;
  const query = queryParameters(request.rawQueryString);
  if (query) event.queryStringParameters = query;
  if (hasBody) event.body = request.body.toString(isText ? 'utf8' : 'base64');
  return event;
}

const HeaderValue = z.union([z.string(), z.number(), z.boolean()]).transform(String);

/** A structured response: Lambda takes a value with a `statusCode` as one. */
const StructuredResponse = z.object({
  statusCode: z.number().int().min(200).max(599),
  headers: z.record(z.string(), HeaderValue).optional(),
  multiValueHeaders: z.record(z.string(), z.array(HeaderValue)).optional(),
  cookies: z.array(z.string()).optional(),
  body: z.string().optional(),
  isBase64Encoded: z.boolean().optional(),
});

function badResponse(message: string): PetriError {
  return new PetriError('BadResponse', `the function URL response is invalid: ${message}`);
}

const NODE_HEADERS = new Set(['x-petri-invocation-id', 'x-petri-version']);

/** Appends a header the function set, refusing what HTTP cannot carry and hop-by-hop headers. */
function addHeader(headers: string[], name: string, value: string): void {
  try {
    validateHeaderName(name);
    validateHeaderValue(name, value);
  } catch (err) {
    throw badResponse(`header "${name.slice(0, 64)}": ${(err as Error).message}`);
  }
  // The node frames the body itself; the connection is the node's, not the function's.
  // x-petri-invocation-id and x-petri-version are the node's to set.
  const lower = name.toLowerCase();
  if (isHopByHop(name) || lower === 'content-length' || NODE_HEADERS.has(lower)) return;
  headers.push(name, value);
}

function structured(value: z.infer<typeof StructuredResponse>): UrlResponse {
  const headers: string[] = [];
  for (const [name, v] of Object.entries(value.headers ?? {})) addHeader(headers, name, v);
  for (const [name, values] of Object.entries(value.multiValueHeaders ?? {})) {
    for (const v of values) addHeader(headers, name, v);
  }
  for (const cookie of value.cookies ?? []) addHeader(headers, 'set-cookie', cookie);
  let body = Buffer.alloc(0);
  if (value.body !== undefined && value.isBase64Encoded) {
    if (!z.base64().safeParse(value.body).success) throw badResponse('body is not valid base64');
    body = Buffer.from(value.body, 'base64');
  } else if (value.body !== undefined) {
    body = Buffer.from(value.body, 'utf8');
  }
  return { statusCode: value.statusCode, headers, body };
}

/**
 * The handler's value as a response, by Lambda's rules: a value with a
 * `statusCode` is a structured response; any other value is a 200 with
 * content-type application/json, a string as it is and anything else as
 * JSON. Bytes (a Buffer or Uint8Array) are a 200 application/octet-stream.
 */
export function lambdaResponse(value: unknown): UrlResponse {
  if (Buffer.isBuffer(value)) {
    return { statusCode: 200, headers: ['content-type', 'application/octet-stream'], body: value };
  }
  const isObject = typeof value === 'object' && value !== null && !Array.isArray(value);
  if (isObject && 'statusCode' in value) {
    const parsed = StructuredResponse.safeParse(value);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw badResponse(`${issue.path.join('.') || 'response'} ${issue.message}`);
    }
    return structured(parsed.data);
  }
  const text = typeof value === 'string' ? value : (JSON.stringify(value ?? null) ?? 'null');
  return {
    statusCode: 200,
    headers: ['content-type', 'application/json'],
    body: Buffer.from(text, 'utf8'),
  };
}
