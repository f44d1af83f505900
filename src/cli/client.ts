/**
 * A small typed client for the node's HTTP API (DESIGN §6). The CLI speaks
 * only this API, so everything a verb needs from the node goes through here.
 */
import { request } from 'undici';
import type { InvocationView } from '../api/index.ts';
import type { AliasView, MembershipEvent, NodeInfo, VersionView } from '../node/index.ts';
import type { StartPath, InvocationStatus } from '../store/index.ts';

// The wire shapes the server defines; imported as types only (no server code loads).
export type { InvocationView, StartPath, InvocationStatus, AliasView, VersionView };
export type NodeView = NodeInfo;
export type InstanceCounts = NodeInfo['instances'];

/**
 * The spec as the node reports it. Fields are optional and open-ended on
 * purpose: a newer node may add fields, and the CLI shows whatever it gets.
 */
export interface SpecView {
  name?: string;
  runtime?: string;
  handler?: string;
  command?: string[];
  memoryMb?: number;
  timeoutMs?: number;
  concurrency?: number;
  maxInstances?: number;
  env?: Record<string, string>;
  keepAlive?: { policy?: string; ms?: number };
  network?: { inbound?: boolean | number[]; egress?: boolean };
  snapshot?: boolean;
  queue?: { maxSize?: number; maxWaitMs?: number };
  [field: string]: unknown;
}

export interface FunctionView {
  name: string;
  version: number;
  spec: SpecView;
  createdAt: number;
  updatedAt: number;
  instances: InstanceCounts;
  queueLength: number;
  /** Live instances with their addresses and open ports (`get` only). */
  instanceList?: InstanceListing[];
}

export interface InstanceListing {
  id: string;
  version?: number;
  state?: string;
  address?: string;
  ports?: 'all' | number[];
  group?: string;
  rank?: number;
}

export interface GroupMemberView {
  rank: number;
  state: string;
  instanceId?: string;
  address?: string;
  exitCode?: number | null;
  signal?: string | null;
}

/** A line of a group's membership stream: the members now, then each change. */
export type GroupStreamLine =
  | { type: 'members'; group: string; size: number; members: MembershipEvent['members'] }
  | MembershipEvent;

export interface GroupView {
  name: string;
  function: string;
  version: number;
  size: number;
  barrier: number;
  memoryMb: number;
  createdAt: number;
  expiresAt: number;
  coordinator: string;
  members: GroupMemberView[];
}

export interface GroupRequest {
  function: string;
  size: number;
  barrier?: number;
  name?: string;
  maxDurationMs?: number;
}

export interface ErrorInfo {
  code: string;
  message: string;
  details?: unknown;
}

export interface LogEntry {
  at: number;
  invocationId?: string;
  instanceId: string;
  stream: 'stdout' | 'stderr';
  line: string;
}

export type IsolationMechanism = NodeInfo['isolation']['mechanisms'][number];

/** What a synchronous invoke returns: the handler's result plus the x-petri-* headers. */
export interface InvokeOutcome {
  invocationId?: string;
  start?: string;
  durationMs?: number;
  /** The version that ran (x-petri-version). */
  version?: number;
  /** JSON results parsed; a text/plain result as its text; an octet-stream one as bytes. */
  result: unknown;
  /** How the node sent the result: `json`, `text` or `binary`. */
  kind: ResultKind;
  /** The response body exactly as received. */
  bytes: Buffer;
}

export type ResultKind = 'json' | 'text' | 'binary';

/** Which version an invoke runs: a number or an alias; neither: the current one. */
export interface InvokeTarget {
  version?: number;
  alias?: string;
}

/**
 * An error the node reported as `{"error": {code, message, details}}`.
 * `code` is a string, not the local ErrorCode union: a newer node may send
 * codes this CLI does not know, and they must still be shown as sent.
 */
export class ApiError extends Error {
  readonly code: string;
  readonly status: number;
  readonly details?: unknown;
  /** The invocation the failure belongs to, when the node named it (x-petri-invocation-id). */
  readonly invocationId?: string;

  constructor(
    code: string,
    message: string,
    status: number,
    details?: unknown,
    invocationId?: string,
  ) {
    super(message);
    this.name = 'ApiError';
    this.code = code;
    this.status = status;
    this.details = details;
    this.invocationId = invocationId;
  }
}

/** The node could not be reached at all (refused, DNS, timeout before a response). */
export class NodeUnreachableError extends Error {
  readonly url: string;

  constructor(url: string, cause: unknown) {
    const reason = cause instanceof Error ? cause.message || cause.name : String(cause);
    super(`cannot reach Petri node at ${url}: ${reason}`);
    this.name = 'NodeUnreachableError';
    this.url = url;
  }
}

interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  /** The parsed JSON body; undefined when the body was empty. */
  body: unknown;
}

interface ByteResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  bytes: Buffer;
}

/** The kind of result a content type announces; JSON unless it says text or bytes. */
export function resultKind(contentType: string | undefined): ResultKind {
  const type = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  if (type === 'application/octet-stream') return 'binary';
  if (type.startsWith('text/')) return 'text';
  return 'json';
}

interface CallOptions {
  query?: Record<string, string | number | undefined>;
  body?: unknown;
  /** Milliseconds to wait for response headers; 0 waits forever (invocations may run 15 min). */
  headersTimeoutMs?: number;
}

const DEFAULT_HEADERS_TIMEOUT_MS = 30_000;

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Recognises the registry's error body; anything else is not an API error. */
function errorFromBody(body: unknown): ErrorInfo | undefined {
  if (!isRecord(body) || !isRecord(body.error)) return undefined;
  const { code, message, details } = body.error;
  if (typeof code !== 'string' || typeof message !== 'string') return undefined;
  return details === undefined ? { code, message } : { code, message, details };
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/**
 * Typed calls against one node.
 *
 * @example
 * const client = new PetriClient('http://127.0.0.1:8080');
 * const { functions } = await client.listFunctions();
 */
export class PetriClient {
  readonly baseUrl: string;

  /** `token`: the node's API token, sent as `Authorization: Bearer …` on every call. */
  constructor(
    baseUrl: string,
    private readonly token?: string,
  ) {
    // Validate early so a typo in --url is one clear error, not an undici stack.
    let parsed: URL;
    try {
      parsed = new URL(baseUrl);
    } catch {
      throw new ApiError('InvalidRequest', `invalid node URL "${baseUrl}"`, 0);
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
      throw new ApiError('InvalidRequest', `node URL must be http(s), got "${baseUrl}"`, 0);
    }
    this.baseUrl = baseUrl.replace(/\/+$/, '');
  }

  /** True when the node runs on this machine, so it can read a source folder by path. */
  isLocal(): boolean {
    const host = new URL(this.baseUrl).hostname;
    return host === '127.0.0.1' || host === 'localhost' || host === '[::1]' || host === '::1';
  }

  health(): Promise<{ status: string }> {
    return this.json('GET', '/healthz');
  }

  node(): Promise<NodeView> {
    return this.json('GET', '/v1/node');
  }

  /** `body` is the spec fields plus `source`; the node validates it. */
  deploy(name: string, body: Record<string, unknown>): Promise<FunctionView> {
    return this.json('PUT', `/v1/functions/${encodeURIComponent(name)}`, { body });
  }

  listFunctions(): Promise<{ functions: FunctionView[] }> {
    return this.json('GET', '/v1/functions');
  }

  getFunction(name: string): Promise<FunctionView> {
    return this.json('GET', `/v1/functions/${encodeURIComponent(name)}`);
  }

  deleteFunction(name: string): Promise<{ name: string; deleted: boolean }> {
    return this.json('DELETE', `/v1/functions/${encodeURIComponent(name)}`);
  }

  async invoke(name: string, event: unknown, target: InvokeTarget = {}): Promise<InvokeOutcome> {
    const path = `/v1/functions/${encodeURIComponent(name)}/invoke`;
    const res = await this.exchange('POST', path, {
      query: { ...target },
      body: event,
      headersTimeoutMs: 0,
    });
    if (res.status < 200 || res.status >= 300) this.fail('POST', path, res);
    const duration = Number(headerValue(res.headers['x-petri-duration-ms']));
    const version = Number(headerValue(res.headers['x-petri-version']));
    const kind = resultKind(headerValue(res.headers['content-type']));
    return {
      invocationId: headerValue(res.headers['x-petri-invocation-id']),
      start: headerValue(res.headers['x-petri-start']),
      durationMs: Number.isFinite(duration) ? duration : undefined,
      version: Number.isInteger(version) && version > 0 ? version : undefined,
      result: this.result(kind, res.bytes, path),
      kind,
      bytes: res.bytes,
    };
  }

  invokeAsync(
    name: string,
    event: unknown,
    target: InvokeTarget = {},
  ): Promise<{ invocationId: string; version?: number }> {
    return this.json('POST', `/v1/functions/${encodeURIComponent(name)}/invoke`, {
      query: { mode: 'async', ...target },
      body: event,
    });
  }

  /** A merge patch of the function's spec (PATCH): a new version with the same code. */
  patchFunction(name: string, patch: Record<string, unknown>): Promise<FunctionView> {
    return this.json('PATCH', `/v1/functions/${encodeURIComponent(name)}`, { body: patch });
  }

  listVersions(name: string): Promise<{ versions: VersionView[] }> {
    return this.json('GET', `/v1/functions/${encodeURIComponent(name)}/versions`);
  }

  listAliases(name: string): Promise<{ aliases: AliasView[] }> {
    return this.json('GET', `/v1/functions/${encodeURIComponent(name)}/aliases`);
  }

  getAlias(name: string, alias: string): Promise<AliasView> {
    return this.json('GET', this.aliasPath(name, alias));
  }

  setAlias(
    name: string,
    alias: string,
    body: { version: number; canary?: { version: number; weight: number } },
  ): Promise<AliasView> {
    return this.json('PUT', this.aliasPath(name, alias), { body });
  }

  deleteAlias(name: string, alias: string): Promise<{ name: string; deleted: boolean }> {
    return this.json('DELETE', this.aliasPath(name, alias));
  }

  /** The function URL of `name` (`<base>/fn/<name>`). */
  functionUrl(name: string): string {
    return `${this.baseUrl}/fn/${encodeURIComponent(name)}`;
  }

  private aliasPath(name: string, alias: string): string {
    return `/v1/functions/${encodeURIComponent(name)}/aliases/${encodeURIComponent(alias)}`;
  }

  private result(kind: ResultKind, bytes: Buffer, path: string): unknown {
    if (kind === 'binary') return bytes;
    if (kind === 'text') return bytes.toString('utf8');
    const body = parseBody(bytes.toString('utf8'));
    if (!body.ok) throw new ApiError('Internal', `node sent invalid JSON for POST ${path}`, 200);
    // A handler that returns nothing yields an empty body; show it as null.
    return body.value === undefined ? null : body.value;
  }

  createGroup(body: GroupRequest): Promise<GroupView> {
    return this.json('POST', '/v1/groups', { body, headersTimeoutMs: 0 });
  }

  listGroups(): Promise<{ groups: GroupView[] }> {
    return this.json('GET', '/v1/groups');
  }

  getGroup(name: string): Promise<GroupView> {
    return this.json('GET', `/v1/groups/${encodeURIComponent(name)}`);
  }

  scaleGroup(name: string, size: number): Promise<GroupView> {
    return this.json('POST', `/v1/groups/${encodeURIComponent(name)}/scale`, {
      body: { size },
      headersTimeoutMs: 0,
    });
  }

  /**
   * Follows a group's membership stream (GET /v1/groups/{name}/events):
   * calls `onEvent` with each NDJSON line, parsed, until the node ends it
   * (the group was removed) or the process stops.
   */
  async watchGroup(name: string, onEvent: (event: GroupStreamLine) => void): Promise<void> {
    const path = `/v1/groups/${encodeURIComponent(name)}/events`;
    let res: Awaited<ReturnType<typeof request>>;
    try {
      res = await request(this.url(path, undefined), {
        headers: this.headers(false),
        headersTimeout: DEFAULT_HEADERS_TIMEOUT_MS,
        bodyTimeout: 0,
      });
    } catch (err) {
      throw new NodeUnreachableError(this.baseUrl, err);
    }
    if (res.statusCode !== 200) {
      const bytes = Buffer.from(await res.body.arrayBuffer());
      this.fail('GET', path, { status: res.statusCode, headers: res.headers, bytes });
    }
    let rest = '';
    res.body.setEncoding('utf8');
    for await (const chunk of res.body as AsyncIterable<string>) {
      const lines = (rest + chunk).split('\n');
      rest = lines.pop() ?? '';
      for (const line of lines) {
        if (line.trim() === '') continue; // the heartbeat
        const parsed = parseBody(line);
        if (!parsed.ok || !isRecord(parsed.value)) {
          throw new ApiError('Internal', `node sent an invalid stream line for ${path}`, 200);
        }
        onEvent(parsed.value as unknown as GroupStreamLine);
      }
    }
  }

  deleteGroup(name: string): Promise<{ name: string; deleted: boolean }> {
    return this.json('DELETE', `/v1/groups/${encodeURIComponent(name)}`);
  }

  getInvocation(id: string): Promise<InvocationView> {
    return this.json('GET', `/v1/invocations/${encodeURIComponent(id)}`);
  }

  listInvocations(query: {
    function?: string;
    limit?: number;
    since?: number;
  }): Promise<{ invocations: InvocationView[] }> {
    return this.json('GET', '/v1/invocations', { query });
  }

  logs(
    name: string,
    query: { limit?: number; invocation?: string; since?: number },
  ): Promise<{ logs: LogEntry[] }> {
    return this.json('GET', `/v1/functions/${encodeURIComponent(name)}/logs`, { query });
  }

  /**
   * A call whose success body is an object of type T. The node owns the
   * contract, so the body is trusted after a shape check rather than fully
   * validated; the formatters tolerate missing fields.
   */
  private async json<T>(method: string, path: string, options: CallOptions = {}): Promise<T> {
    const res = await this.call(method, path, options);
    if (!isRecord(res.body)) {
      throw new ApiError(
        'Internal',
        `node answered ${method} ${path} with a non-object body`,
        res.status,
      );
    }
    return res.body as T;
  }

  private headers(withBody: boolean): Record<string, string> {
    const headers: Record<string, string> = {};
    if (withBody) headers['content-type'] = 'application/json';
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    return headers;
  }

  /** One HTTP exchange: JSON in, JSON out, error bodies thrown as ApiError. */
  private async call(method: string, path: string, options: CallOptions): Promise<RawResponse> {
    const res = await this.exchange(method, path, options);
    const { status, headers } = res;
    const body = parseBody(res.bytes.toString('utf8'));
    if (status >= 200 && status < 300) {
      if (body.ok) return { status, headers, body: body.value };
      throw new ApiError('Internal', `node sent invalid JSON for ${method} ${path}`, status);
    }
    return this.fail(method, path, res);
  }

  /** A failed exchange as the ApiError its body names (with the invocation, when named). */
  private fail(method: string, path: string, res: ByteResponse): never {
    const text = res.bytes.toString('utf8');
    const body = parseBody(text);
    const error = body.ok ? errorFromBody(body.value) : undefined;
    if (error) {
      const invocationId = headerValue(res.headers['x-petri-invocation-id']);
      throw new ApiError(error.code, error.message, res.status, error.details, invocationId);
    }
    // Not the registry's shape: probably a proxy in between, or a route the node lacks.
    const snippet = text.slice(0, 200).trim();
    throw new ApiError(
      'Internal',
      `node answered HTTP ${res.status} for ${method} ${path}${snippet ? `: ${snippet}` : ''}`,
      res.status,
    );
  }

  /** One HTTP exchange: JSON in, the body's bytes out. */
  private async exchange(
    method: string,
    path: string,
    options: CallOptions,
  ): Promise<ByteResponse> {
    const url = this.url(path, options.query);
    try {
      const res = await request(url, {
        method: method as 'GET',
        headers: this.headers(options.body !== undefined),
        body: options.body === undefined ? undefined : JSON.stringify(options.body),
        headersTimeout: options.headersTimeoutMs ?? DEFAULT_HEADERS_TIMEOUT_MS,
        bodyTimeout: 0,
      });
      const bytes = Buffer.from(await res.body.arrayBuffer());
      return { status: res.statusCode, headers: res.headers, bytes };
    } catch (err) {
      throw new NodeUnreachableError(this.baseUrl, err);
    }
  }

  private url(path: string, query: CallOptions['query']): string {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query ?? {})) {
      if (value !== undefined) params.set(key, String(value));
    }
    const qs = params.toString();
    return `${this.baseUrl}${path}${qs ? `?${qs}` : ''}`;
  }
}

function parseBody(text: string): { ok: true; value: unknown } | { ok: false } {
  if (text.trim() === '') return { ok: true, value: undefined };
  try {
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch {
    return { ok: false };
  }
}
