import { timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyReply } from 'fastify';
import { z } from 'zod';
import { PetriError, toPetriError } from '../errors.ts';
import { writeMembershipStream, type PetriNode } from '../node/index.ts';
import {
  FunctionNameSchema,
  fieldIssues,
  parseQualifier,
  type VersionSelector,
} from '../spec/index.ts';
import {
  addFunctionUrls,
  functionUrlDoor,
  isFunctionUrl,
  retryAfter,
  type FunctionUrlDoor,
} from './function-urls.ts';
import { RouteMethods } from './methods.ts';
import { toInvocationView } from './views.ts';

export interface AppOptions {
  payloadLimitBytes: number;
  /** The largest response a function URL relays (default: 6 MiB, the node's default). */
  responseLimitBytes?: number;
  /** Deploy bodies carry base64 archives, so they may be larger than invoke payloads. */
  deployLimitBytes?: number;
  logger?: FastifyBaseLogger;
  /** Every `/v1` route needs `Authorization: Bearer <token>`; unset: no check (tests of routes). */
  token?: string;
  /** `/metrics` without a token from any address, not only loopback. */
  publicMetrics?: boolean;
}

function isLoopback(address: string | undefined): boolean {
  return address === '::1' || !!address?.startsWith('127.') || !!address?.startsWith('::ffff:127.');
}

/** Whether `header` is `Bearer <token>`, compared in constant time. */
export function bearerMatches(header: string | undefined, token: string): boolean {
  const expected = Buffer.from(`Bearer ${token}`);
  const given = Buffer.from(header ?? '');
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/**
 * The API's door: `/v1` needs the token; `/healthz` is open; `/metrics` is
 * open to loopback clients (or everyone, if configured) and otherwise needs
 * the token too. Anything else is routed as usual (and is a 404).
 */
function addAuth(app: FastifyInstance, options: AppOptions): void {
  const token = options.token;
  if (token === undefined) return;
  app.addHook('onRequest', (request, reply, done) => {
    const url = request.url;
    const isApi = url === '/v1' || url.startsWith('/v1/') || url.startsWith('/v1?');
    const isMetrics = url === '/metrics' || url.startsWith('/metrics?');
    const open =
      (!isApi && !isMetrics) ||
      (isMetrics && (options.publicMetrics || isLoopback(request.socket.remoteAddress)));
    if (open || bearerMatches(request.headers.authorization, token)) return done();
    reply.header('www-authenticate', 'Bearer realm="petri"');
    sendError(reply, new PetriError('Unauthorized', 'missing or wrong API token'));
  });
}

const NameParams = z.object({ name: z.string() });
const IdParams = z.object({ id: z.string().min(1) });
/**
 * Not strict: Lambda's and OpenFaaS's clients add their own parameters
 * (`Qualifier`, a function's own query), which are ignored, not a 400.
 */
const InvokeQuery = z.object({
  mode: z.enum(['sync', 'async']).default('sync'),
  version: z
    .string()
    .regex(/^[1-9][0-9]{0,14}$/, 'must be a version number')
    .optional(),
  alias: z.string().min(1).optional(),
});
const AliasParams = z.object({ name: z.string(), alias: z.string() });
const InvocationsQuery = z
  .object({
    function: z.string().optional(),
    limit: z.coerce.number().int().min(1).max(10_000).default(50),
    since: z.coerce.number().optional(),
  })
  .strict();
const LogsQuery = z
  .object({
    limit: z.coerce.number().int().min(1).max(10_000).default(100),
    invocation: z.string().optional(),
    since: z.coerce.number().optional(),
  })
  .strict();

const AutoscalingQuery = z
  .object({
    limit: z.coerce.number().int().min(1).max(10_000).default(100),
    since: z.coerce.number().optional(),
  })
  .strict();

/** Parses request parts with zod, failing with `InvalidRequest` naming each bad field. */
function parse<T>(schema: z.ZodType<T, unknown>, value: unknown, what: string): T {
  const result = schema.safeParse(value ?? {});
  if (result.success) return result.data;
  const issues = fieldIssues(result.error);
  const message = issues.map((i) => `${i.field} ${i.message}`).join('; ');
  throw new PetriError('InvalidRequest', `invalid ${what}: ${message}`, { issues });
}

function functionName(params: unknown): string {
  const { name } = parse(NameParams, params, 'path');
  const valid = FunctionNameSchema.safeParse(name);
  if (!valid.success) throw new PetriError('FunctionNotFound', `no function named "${name}"`);
  return name;
}

/** A result as the JSON invoke API sends it: a string as text, bytes as bytes, else JSON. */
function resultBody(value: unknown): { body: string | Buffer; type: string } {
  if (typeof value === 'string') return { body: value, type: 'text/plain; charset=utf-8' };
  if (Buffer.isBuffer(value)) return { body: value, type: 'application/octet-stream' };
  return { body: JSON.stringify(value ?? null), type: 'application/json; charset=utf-8' };
}

/**
 * The version an invoke asked for: `?version=N`, `?alias=NAME`, or the
 * `x-petri-version` header (a number or an alias name); none: the current one.
 */
function versionSelector(
  query: { version?: string; alias?: string },
  header: string | string[] | undefined,
): VersionSelector {
  const asked = [query.version, query.alias, header].filter((v) => v !== undefined).length;
  if (asked > 1)
    throw new PetriError(
      'InvalidRequest',
      'ask for one of ?version, ?alias or x-petri-version, not several',
    );
  if (query.version !== undefined) return { version: Number(query.version) };
  if (query.alias !== undefined) {
    const selector = parseQualifier(query.alias);
    if (selector.alias === undefined)
      throw new PetriError('InvalidRequest', `alias "${query.alias}" is a number: use ?version`);
    return selector;
  }
  if (typeof header === 'string') return parseQualifier(header);
  if (Array.isArray(header))
    throw new PetriError('InvalidRequest', 'send x-petri-version at most once');
  return {};
}

function groupName(params: unknown): string {
  const { name } = parse(NameParams, params, 'path');
  if (!FunctionNameSchema.safeParse(name).success) {
    throw new PetriError('GroupNotFound', `no group named "${name}"`);
  }
  return name;
}

function sendError(reply: FastifyReply, error: PetriError): FastifyReply {
  const retry = retryAfter(error);
  if (retry !== undefined) reply.header('retry-after', retry);
  if (error.code === 'MethodNotAllowed') {
    const allow = (error.details as { allow?: string[] } | undefined)?.allow ?? [];
    reply.header('allow', allow.join(', '));
  }
  return reply.code(error.status).type('application/json').send(error.toBody());
}

/** Maps fastify's own errors (body parsing, limits) onto registered codes. */
function fromFastifyError(err: unknown): PetriError {
  if (err instanceof PetriError) return err;
  const code = (err as { code?: string }).code;
  const message = err instanceof Error ? err.message : String(err);
  if (code === 'FST_ERR_CTP_BODY_TOO_LARGE') return new PetriError('PayloadTooLarge', message);
  if (code?.startsWith('FST_ERR_CTP') || err instanceof SyntaxError) {
    return new PetriError('InvalidRequest', message);
  }
  return toPetriError(err);
}

function frameworkErrorMessage(err: Error & { code?: string }): string {
  if (err.code === 'FST_ERR_MAX_PARAM_LENGTH')
    return 'a path segment is too long (a function name has at most 63 characters)';
  if (err.code === 'FST_ERR_BAD_URL') return 'the request URL is malformed';
  return err.message;
}

/**
 * The node's HTTP server: function URLs go to their door as they come,
 * everything else through fastify. Timeouts as fastify sets on its own server.
 */
function nodeServer(
  door: FunctionUrlDoor,
  handler: (request: http.IncomingMessage, response: http.ServerResponse) => void,
  settings: Record<string, unknown>,
): http.Server {
  const server = http.createServer((request, response) => {
    if (isFunctionUrl(request.url)) void door.serve(request, response);
    else handler(request, response);
  });
  const number = (key: string): number | undefined =>
    typeof settings[key] === 'number' ? settings[key] : undefined;
  server.keepAliveTimeout = number('keepAliveTimeout') ?? server.keepAliveTimeout;
  server.requestTimeout = number('requestTimeout') ?? server.requestTimeout;
  server.setTimeout(number('connectionTimeout') ?? 0);
  return server;
}

/**
 * The HTTP API v1 (DESIGN §6) over a PetriNode. Build it and `listen`, or
 * call `inject` in tests.
 *
 * @example const app = buildApp(node, { payloadLimitBytes: 6 << 20 }); await app.listen({ port: 8080 });
 */
export function buildApp(node: PetriNode, options: AppOptions): FastifyInstance {
  const door = functionUrlDoor(node, {
    requestLimitBytes: options.payloadLimitBytes,
    responseLimitBytes: options.responseLimitBytes ?? 6 * 1024 * 1024,
    token: options.token,
    bearerMatches,
  });
  const app = Fastify({
    bodyLimit: options.payloadLimitBytes,
    serverFactory: (handler, settings) => nodeServer(door, handler, settings),
    // Errors fastify raises before routing (a malformed URL, a path segment
    // past the router's limit) get a registered code too, never fastify's body.
    frameworkErrors: (err, _request, reply) =>
      sendError(reply, new PetriError('InvalidRequest', frameworkErrorMessage(err))),
  });
  const log = options.logger;
  addAuth(app, options);

  // Every body is JSON, whatever content type the client sends; an empty body is no body.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string' }, (_request, body, done) => {
    const text = String(body);
    if (text.trim() === '') return done(null, undefined);
    try {
      done(null, JSON.parse(text));
    } catch (err) {
      done(
        new PetriError('InvalidRequest', `body is not valid JSON: ${(err as Error).message}`),
        undefined,
      );
    }
  });

  app.setErrorHandler((err, request, reply) => {
    const error = fromFastifyError(err);
    if (error.code === 'Internal') log?.error({ err, url: request.url }, 'internal error');
    return sendError(reply, error);
  });
  const methods = new RouteMethods();
  app.addHook('onRoute', (route) => methods.add(route.method, route.url));
  app.setNotFoundHandler((request, reply) => {
    const allow = methods.allowed(request.url);
    if (allow.length > 0) {
      const message = `${request.method} is not allowed on ${request.url.split('?')[0]}`;
      return sendError(reply, new PetriError('MethodNotAllowed', message, { allow }));
    }
    return sendError(
      reply,
      new PetriError('RouteNotFound', `no route ${request.method} ${request.url}`),
    );
  });
  addFunctionUrls(app, door);

  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/v1/node', async () => ({ ...node.info(), cpu: await node.cpuUsage() }));
  app.get('/metrics', async (_request, reply) =>
    reply.type(node.metrics.contentType).send(await node.metrics.text()),
  );

  app.put(
    '/v1/functions/:name',
    { bodyLimit: options.deployLimitBytes ?? 64 * 1024 * 1024 },
    async (request, reply) => {
      const { name } = parse(NameParams, request.params, 'path');
      const valid = FunctionNameSchema.safeParse(name);
      if (!valid.success) {
        const issues = fieldIssues(valid.error).map((i) => ({ ...i, field: 'name' }));
        throw new PetriError('InvalidSpec', `invalid function name "${name}"`, { issues });
      }
      const { view, created } = await node.deploy(name, request.body);
      return reply.code(created ? 201 : 200).send(view);
    },
  );
  app.get('/v1/functions', async () => ({ functions: node.listFunctions() }));
  app.get('/v1/functions/:name', async (request) => node.getFunction(functionName(request.params)));
  app.delete('/v1/functions/:name', async (request) => {
    const name = functionName(request.params);
    await node.removeFunction(name);
    return { name, deleted: true };
  });
  app.patch('/v1/functions/:name', async (request) =>
    node.patchFunction(functionName(request.params), request.body),
  );
  app.get('/v1/functions/:name/versions', async (request) => ({
    versions: node.listVersions(functionName(request.params)),
  }));
  app.get('/v1/functions/:name/aliases', async (request) => ({
    aliases: node.listAliases(functionName(request.params)),
  }));
  app.get('/v1/functions/:name/aliases/:alias', async (request) => {
    const name = functionName(request.params);
    const { alias } = parse(AliasParams, request.params, 'path');
    return node.getAlias(name, alias);
  });
  app.put('/v1/functions/:name/aliases/:alias', async (request, reply) => {
    const name = functionName(request.params);
    const { alias } = parse(AliasParams, request.params, 'path');
    const { view, created } = await node.setAlias(name, alias, request.body);
    return reply.code(created ? 201 : 200).send(view);
  });
  app.delete('/v1/functions/:name/aliases/:alias', async (request) => {
    const name = functionName(request.params);
    const { alias } = parse(AliasParams, request.params, 'path');
    await node.deleteAlias(name, alias);
    return { name: alias, functionName: name, deleted: true };
  });
  app.get('/v1/functions/:name/logs', async (request) => {
    const name = functionName(request.params);
    const query = parse(LogsQuery, request.query, 'query');
    const logs = node.listLogs({
      functionName: name,
      invocationId: query.invocation,
      since: query.since,
      limit: query.limit,
    });
    return { logs: logs.map(({ functionName: _f, version: _v, ...line }) => line) };
  });

  app.get('/v1/functions/:name/autoscaling', async (request) => {
    const name = functionName(request.params);
    const query = parse(AutoscalingQuery, request.query, 'query');
    const decisions = node.listAutoscaleDecisions({ functionName: name, ...query });
    return { decisions: decisions.map(({ functionName: _f, ...decision }) => decision) };
  });

  app.post('/v1/functions/:name/invoke', async (request, reply) => {
    const name = functionName(request.params);
    const query = parse(InvokeQuery, request.query, 'query');
    const target = node.resolveTarget(
      name,
      versionSelector(query, request.headers['x-petri-version']),
    );
    const event = request.body === undefined ? {} : request.body;
    if (query.mode === 'async') {
      const record = node.invokeAsync(name, event, target);
      reply.header('x-petri-version', String(record.version));
      return reply.code(202).send({ invocationId: record.id, version: record.version });
    }
    const { record, value } = await node.invoke(name, event, target);
    reply.header('x-petri-invocation-id', record.id);
    reply.header('x-petri-version', String(record.version));
    if (record.startPath) reply.header('x-petri-start', record.startPath);
    reply.header('x-petri-duration-ms', String(record.totalMs ?? 0));
    if (record.error) {
      const { code, message, details } = record.error;
      return sendError(reply, new PetriError(code, message, details));
    }
    // The hot path writes the reply itself: fastify's onSend pipeline has nothing to add here.
    const { body, type } = resultBody(value);
    reply.hijack();
    reply.raw.writeHead(200, {
      'content-type': type,
      'content-length': Buffer.byteLength(body),
      'x-petri-invocation-id': record.id,
      'x-petri-start': record.startPath ?? 'cold',
      'x-petri-duration-ms': String(record.totalMs ?? 0),
      'x-petri-version': String(record.version),
    });
    reply.raw.end(body);
    return reply;
  });

  app.post('/v1/groups', async (request, reply) =>
    reply.code(201).send(await node.createGroup(request.body)),
  );
  app.get('/v1/groups', async () => ({ groups: node.listGroups() }));
  app.get('/v1/groups/:name', async (request) => node.getGroup(groupName(request.params)));
  // NDJSON membership changes for the node side (a front-end that balances over the members).
  // Open streams never finish on their own: closing the API ends them, or its close would wait.
  const memberStreams = new Set<FastifyReply['raw']>();
  app.addHook('preClose', async () => {
    for (const raw of memberStreams) raw.end();
  });
  app.get('/v1/groups/:name/events', async (request, reply) => {
    const stream = node.watchGroup(groupName(request.params));
    reply.hijack();
    memberStreams.add(reply.raw);
    reply.raw.on('close', () => memberStreams.delete(reply.raw));
    writeMembershipStream(reply.raw, stream);
    return reply;
  });
  app.post('/v1/groups/:name/scale', async (request) =>
    node.scaleGroup(groupName(request.params), request.body),
  );
  app.delete('/v1/groups/:name', async (request) => {
    const name = groupName(request.params);
    await node.removeGroup(name);
    return { name, deleted: true };
  });

  app.get('/v1/invocations/:id', async (request) => {
    const { id } = parse(IdParams, request.params, 'path');
    return toInvocationView(node.getInvocation(id));
  });
  app.get('/v1/invocations', async (request) => {
    const query = parse(InvocationsQuery, request.query, 'query');
    const records = node.listInvocations({
      functionName: query.function,
      limit: query.limit,
      since: query.since,
    });
    return { invocations: records.map(toInvocationView) };
  });

  return app;
}
