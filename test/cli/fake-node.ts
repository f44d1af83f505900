/**
 * A fake Petri node for CLI tests: records every request and answers with
 * canned responses shaped like the API contract (DESIGN §6).
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { FunctionView, InvocationView, NodeView } from '../../src/cli/client.ts';

export interface RecordedRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: IncomingMessage['headers'];
  /** Parsed JSON body, or undefined when there was none. */
  body: unknown;
}

export interface CannedResponse {
  status?: number;
  headers?: Record<string, string>;
  /** Sent as JSON unless `raw` is given. */
  body?: unknown;
  raw?: string;
  /** Sent as they are (set a content-type header with them). */
  bytes?: Buffer;
}

export type Route = (req: RecordedRequest) => CannedResponse;

export interface FakeNode {
  url: string;
  requests: RecordedRequest[];
  /** Routes by "METHOD /path" (no query); unmatched requests get FunctionNotFound-like 404s. */
  routes: Map<string, Route>;
  close(): Promise<void>;
}

export async function startFakeNode(): Promise<FakeNode> {
  const requests: RecordedRequest[] = [];
  const routes = new Map<string, Route>();
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://fake');
      const text = Buffer.concat(chunks).toString('utf8');
      const recorded: RecordedRequest = {
        method: req.method ?? 'GET',
        path: url.pathname,
        query: url.searchParams,
        headers: req.headers,
        body: text === '' ? undefined : (JSON.parse(text) as unknown),
      };
      requests.push(recorded);
      const route = routes.get(`${recorded.method} ${recorded.path}`);
      const answer: CannedResponse = route
        ? route(recorded)
        : { status: 404, body: { error: { code: 'Internal', message: 'no such route' } } };
      res.writeHead(answer.status ?? 200, {
        'content-type': 'application/json',
        ...answer.headers,
      });
      res.end(
        answer.bytes ??
          answer.raw ??
          (answer.body === undefined ? '' : JSON.stringify(answer.body)),
      );
    });
  });
  await new Promise<void>((ready) => server.listen(0, '127.0.0.1', ready));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    routes,
    close: () =>
      new Promise((done) => {
        server.closeAllConnections();
        server.close(() => done());
      }),
  };
}

export const NOW = Date.UTC(2025, 0, 2, 3, 4, 5);

export function functionView(overrides: Partial<FunctionView> = {}): FunctionView {
  return {
    name: 'hello',
    version: 1,
    spec: {
      name: 'hello',
      runtime: 'node',
      handler: 'index.handler',
      memoryMb: 128,
      timeoutMs: 30000,
      concurrency: 1,
      env: { GREETING: 'hi' },
      keepAlive: { policy: 'fixed', ms: 600000 },
      network: { inbound: false, egress: false },
      snapshot: false,
      queue: {},
    },
    createdAt: NOW - 3_600_000,
    updatedAt: NOW - 120_000,
    instances: { starting: 0, idle: 2, paused: 0, busy: 1, stopping: 0 },
    queueLength: 3,
    ...overrides,
  };
}

export function invocationView(overrides: Partial<InvocationView> = {}): InvocationView {
  return {
    id: 'inv-1',
    functionName: 'hello',
    version: 1,
    mode: 'sync',
    status: 'succeeded',
    startPath: 'warm',
    result: { ok: true },
    instanceId: 'i-1',
    timings: { receivedAt: NOW, queuedMs: 0.4, initMs: 0, executionMs: 11.6, totalMs: 12.3 },
    resources: { cpuMs: 7, peakMemoryBytes: 48 * 1024 * 1024, netRxBytes: 1536, netTxBytes: 200 },
    ...overrides,
  };
}

export function nodeView(): NodeView {
  return {
    version: '0.1.0',
    nodeVersion: 'v24.22.3',
    instanceNodeBinary: '/usr/bin/node',
    instanceNodeVersion: 'v20.20.2',
    cores: 2,
    memoryBudgetMb: 4096,
    memoryInUseMb: 256,
    idleMemoryMbMs: 0,
    sandboxDriver: 'process',
    isolation: {
      driver: 'process',
      mechanisms: [
        { name: 'cgroup-cpu', active: true },
        { name: 'netns', active: false, reason: 'not root' },
      ],
    },
    placement: {
      policy: 'pack-when-sequential',
      active: true,
      daemonCpu: 1,
      allCpus: '0,1',
      current: 'pack',
    },
    startPaths: { policy: 'warm-first', pausing: true, pauseGraceMs: 50 },
    snapshots: { policy: 'lru-demote', tiers: [] },
    instances: { starting: 0, idle: 2, paused: 0, busy: 1, stopping: 0 },
    groups: {
      running: 1,
      members: { starting: 0, waiting: 0, running: 3, exited: 0, stopping: 0 },
    },
    prewarm: { sets: [], memoryMb: 0 },
    scheduler: {
      policy: 'task',
      allocation: 'static',
      classes: {
        io: { vcpu: 0.25, cores: [0], running: 0, queued: 0 },
        cpu: { vcpu: 1, cores: [1], running: 0, queued: 0 },
      },
      moves: 0,
    },
    cpu: { instancesMs: 1200, daemonMs: 800 },
    functions: 1,
    uptimeMs: 90_000,
  };
}
