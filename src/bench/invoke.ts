import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { Pool } from 'undici';
import { spawnDaemon, type Daemon } from '../harness/index.ts';
import { canMakeTestbed, createTestbed, type Testbed } from '../harness/index.ts';
import { table } from '../report/index.ts';
import { checkNodeBinary, type InstanceNode } from '../runtime/index.ts';
import { INHERITED_ENV, instancePath } from '../sandbox/index.ts';
import { benchArgs, machineFacts, ratio, summarize, writeJson, type Summary } from './common.ts';

const EXAMPLES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../examples');
const BODY = JSON.stringify({ hello: 'world', n: 42 });
const ECHO_MEMORY_MB = 1769;
/** The Node the `--compare-node` default looks for: the distribution's own. */
const SYSTEM_NODE = '/usr/bin/node';
/** Gap after each cold start, so the stopped instance's tear-down is not in the next sample. */
const COLD_GAP_MS = 100;
/** Time for a node's namespace pool to fill after its first cold start. */
const POOL_FILL_MS = 1500;

/**
 * A raw node:http server that echoes the body: the least any HTTP invoke
 * path can cost. The same code is the baseline (on ECHO_HOST, any port) and,
 * unmodified, the `http` function behind a function URL (on $PORT).
 */
const ECHO_SERVER = `
const http = require('node:http');
const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => { res.setHeader('content-type', 'application/json'); res.end(Buffer.concat(chunks)); });
});
server.keepAliveTimeout = 60000;
server.listen(Number(process.env.PORT ?? 0), process.env.ECHO_HOST, () => console.log('port ' + server.address().port));
`;
/**
 * The floor for any reverse proxy written in Node on this machine: a bare
 * node:http server relaying to the echo server through an undici pool
 * (kept-alive, hop-by-hop headers stripped, bodies streamed), with none of
 * a platform's work (no routing, records, instances or limits). The
 * function URL path cannot beat what this costs.
 */
const FLOOR_PROXY = `
const http = require('node:http');
const { Pool } = require(process.env.UNDICI_PATH);
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'expect']);
const strip = (raw) => {
  const out = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = String(raw[i]);
    if (!HOP.has(name.toLowerCase())) out.push(name, String(raw[i + 1]));
  }
  return out;
};
const upstream = new Pool(process.env.UPSTREAM, { pipelining: 1 });
const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    upstream.dispatch(
      { method: req.method, path: req.url, headers: strip(req.rawHeaders), body: chunks.length ? Buffer.concat(chunks) : null },
      {
        onConnect() {},
        onHeaders(status, raw, resume, text) { res.writeHead(status, text, strip(raw)); res.on('drain', resume); return true; },
        onData(chunk) { return res.write(chunk); },
        onComplete() { res.end(); },
        onError() { res.destroy(); },
      },
    );
  });
});
server.keepAliveTimeout = 60000;
server.listen(0, process.env.ECHO_HOST, () => console.log('port ' + server.address().port));
`;
/**
 * Floor (i): an L4 relay, bytes piped between the client's TCP connection
 * and one to the echo server per connection, no HTTP parsing at all. What
 * any userspace relay in Node costs here (two more socket hops and a
 * third process), whatever it does with the bytes.
 */
const FLOOR_TCP = `
const net = require('node:net');
const [host, port] = process.env.UPSTREAM.replace('http://', '').split(':');
const server = net.createServer((client) => {
  const upstream = net.connect({ host, port: Number(port), noDelay: true });
  client.setNoDelay(true);
  client.pipe(upstream).pipe(client);
  const end = () => { client.destroy(); upstream.destroy(); };
  client.on('error', end); upstream.on('error', end); client.on('close', end); upstream.on('close', end);
});
server.listen(0, process.env.ECHO_HOST, () => console.log('port ' + server.address().port));
`;
/**
 * Floor (ii): a node:http front and the least possible upstream client: one
 * kept-alive net.Socket per front connection, the request written as one
 * buffer, the response read as head + content-length body (all the echo
 * server sends). No checks of any kind: a floor, not a proxy.
 */
const FLOOR_RAW = `
const http = require('node:http');
const net = require('node:net');
const [host, port] = process.env.UPSTREAM.replace('http://', '').split(':');
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'expect']);
const idle = [];
function upstream() {
  const socket = idle.pop();
  if (socket && !socket.destroyed) return socket;
  const fresh = net.connect({ host, port: Number(port), noDelay: true });
  fresh.on('error', () => {});
  return fresh;
}
function exchange(socket, head, body, done) {
  let buffered = Buffer.alloc(0);
  let parsed;
  const onData = (chunk) => {
    buffered = buffered.length ? Buffer.concat([buffered, chunk]) : chunk;
    if (!parsed) {
      const end = buffered.indexOf('\\r\\n\\r\\n');
      if (end < 0) return;
      const lines = buffered.subarray(0, end).toString('latin1').split('\\r\\n');
      const status = Number(lines[0].split(' ')[1]);
      const headers = [];
      let length = 0;
      for (const line of lines.slice(1)) {
        const colon = line.indexOf(':');
        const name = line.slice(0, colon);
        const value = line.slice(colon + 1).trim();
        if (name.toLowerCase() === 'content-length') length = Number(value);
        if (!HOP.has(name.toLowerCase())) headers.push(name, value);
      }
      parsed = { status, headers, length, start: end + 4 };
    }
    if (buffered.length - parsed.start < parsed.length) return;
    socket.off('data', onData);
    done(parsed, buffered.subarray(parsed.start, parsed.start + parsed.length));
  };
  socket.on('data', onData);
  socket.write(body.length ? Buffer.concat([head, body]) : head);
}
const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    let head = req.method + ' ' + req.url + ' HTTP/1.1\\r\\n';
    for (let i = 0; i < req.rawHeaders.length; i += 2) {
      const name = req.rawHeaders[i];
      if (!HOP.has(name.toLowerCase()) && name.toLowerCase() !== 'content-length') head += name + ': ' + req.rawHeaders[i + 1] + '\\r\\n';
    }
    head += 'content-length: ' + body.length + '\\r\\n\\r\\n';
    const socket = upstream();
    exchange(socket, Buffer.from(head, 'latin1'), body, (parsed, payload) => {
      idle.push(socket);
      res.writeHead(parsed.status, parsed.headers);
      res.end(payload);
    });
  });
});
server.keepAliveTimeout = 60000;
server.listen(0, process.env.ECHO_HOST, () => console.log('port ' + server.address().port));
`;
/** The function URL the http echo function answers on. */
const URL_PATH = '/fn/echo-http/';

/** Bare Node's first sign of life: one byte on its stdout pipe, the moment its script runs. */
const FIRST_BYTE = "process.stdout.write('.')";
/**
 * Bare Node gets only what an instance inherits: variables such as
 * NODE_EXTRA_CA_CERTS cost Node 20 ~50 ms at start, which no instance pays.
 */
const INSTANCE_ENV: Record<string, string> = {
  PATH: instancePath(),
  ...Object.fromEntries(
    INHERITED_ENV.flatMap((key) => (process.env[key] ? [[key, process.env[key]]] : [])),
  ),
};

interface Target {
  origin: string;
  path: string;
  /** A Petri node's API token header; none for the raw echo server. */
  headers?: Record<string, string>;
}

/** Latency and throughput targets, by the key they are reported under. */
type TargetKey =
  | 'base'
  | 'petri'
  | 'compare'
  | 'spread'
  | 'url'
  | 'microtask'
  | 'floor'
  | 'floorTcp'
  | 'floorRaw'
  | 'floorInstance'
  | 'floorInstanceFree';
/** The floors for the function URL path, each a process in front of the echo server. */
const FLOORS = [
  { key: 'floorTcp', script: FLOOR_TCP, label: 'L4 TCP relay (net pipe, no HTTP)' },
  { key: 'floorRaw', script: FLOOR_RAW, label: 'node:http → raw-socket upstream' },
  { key: 'floor', script: FLOOR_PROXY, label: 'node:http → undici proxy' },
] as const;
/**
 * The node:http → undici floor again, relaying to the function's own
 * instance (its address on the bridge, through its veth, firewall and
 * shaping) instead of the echo server next to it: the function URL over
 * this one is Petri's own work; this one over the floor is the instance's
 * network path.
 */
const INSTANCE_FLOOR = {
  key: 'floorInstance',
  label: 'node:http → undici proxy → the instance',
} as const;
/**
 * The instance floor is measured while the function URL's node is idle, so
 * that node's placement (pack-when-sequential) has pinned the instance to
 * the daemon's core: a bare relay then competes with a one-core instance,
 * which the function URL at 32 connections never does (its node spreads
 * within one window). This floor relays to the same function on a node of
 * its own with placement spread, so its instance may run on any core, as
 * the echo server and the other floors do.
 */
const FREE_INSTANCE_FLOOR = {
  key: 'floorInstanceFree',
  label: 'node:http → undici proxy → an unpinned instance',
} as const;
type FloorKey =
  (typeof FLOORS)[number]['key'] | typeof INSTANCE_FLOOR.key | typeof FREE_INSTANCE_FLOOR.key;
/** The port the `http` echo function's server is given, so the instance floor can reach it. */
const HTTP_ECHO_PORT = 8080;

interface Round {
  /** p50 latency (ms) of each target this round. */
  p50: Partial<Record<TargetKey, number>>;
  /** Throughput (req/s) of each target this round. */
  rps: Partial<Record<TargetKey, number>>;
}

/** The Node binary a set of instances runs, and the nodes that run them. */
interface RuntimeNodes {
  key: 'petri' | 'compare';
  runtime: InstanceNode;
  /** Configured placement, default pool: warm figures and cold starts with the pool warm. */
  warm: Daemon;
  /** `network.poolSize: 0`: every cold start makes its namespace. Absent without root. */
  drained?: Daemon;
}

interface ColdSamples {
  /** Spawn → first byte of bare Node on this binary. */
  bare: number[];
  poolWarm: number[];
  poolDrained: number[];
}

function progress(message: string): void {
  process.stderr.write(`[bench invoke] ${message}\n`);
}

async function startEchoServer(
  host: string,
  testbed?: Testbed,
  script = ECHO_SERVER,
  extraEnv: Record<string, string> = {},
): Promise<{ origin: string; stop(): void }> {
  const command = [...(testbed?.nsenterArgs() ?? []), process.execPath, '-e', script];
  const env: NodeJS.ProcessEnv = { ...process.env, ...extraEnv, ECHO_HOST: host };
  delete env.PORT;
  const child = spawn(command[0], command.slice(1), { stdio: ['ignore', 'pipe', 'inherit'], env });
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout!.setEncoding('utf8').on('data', (text: string) => {
      const match = /port (\d+)/.exec(text);
      if (match) resolve(Number(match[1]));
    });
    child.once('exit', (code) => reject(new Error(`echo server exited with ${code}`)));
  });
  return { origin: `http://${host}:${port}`, stop: () => child.kill('SIGKILL') };
}

async function post(
  pool: Pool,
  target: Target,
): Promise<Record<string, string | string[] | undefined>> {
  const response = await pool.request({
    method: 'POST',
    path: target.path,
    body: BODY,
    headers: { ...target.headers, 'content-type': 'application/json' },
  });
  await response.body.text();
  if (response.statusCode !== 200)
    throw new Error(`${target.path} answered ${response.statusCode}`);
  return response.headers;
}

/**
 * Sequential requests on one connection; returns each one's latency in ms.
 * The first `settle` requests are not counted, for either target: they open
 * the connection and let the node settle after the previous phase's burst.
 */
async function latencies(target: Target, count: number, settle = 0): Promise<number[]> {
  const pool = new Pool(target.origin, { connections: 1 });
  const samples: number[] = [];
  try {
    for (let i = 0; i < settle; i++) await post(pool, target);
    for (let i = 0; i < count; i++) {
      const started = performance.now();
      await post(pool, target);
      samples.push(performance.now() - started);
    }
  } finally {
    await pool.close();
  }
  return samples;
}

/** Completed requests per second with `connections` requests always in flight. */
async function throughput(target: Target, connections: number, seconds: number): Promise<number> {
  const pool = new Pool(target.origin, { connections });
  let completed = 0;
  const until = performance.now() + seconds * 1000;
  const worker = async (): Promise<void> => {
    while (performance.now() < until) {
      await post(pool, target);
      completed += 1;
    }
  };
  const started = performance.now();
  try {
    await Promise.all(Array.from({ length: connections }, worker));
  } finally {
    await pool.close();
  }
  return completed / ((performance.now() - started) / 1000);
}

/**
 * Time from spawn to the first byte bare Node writes to a pipe: the same
 * event a cold start is timed to (its first response), not process exit.
 */
export async function bareNodeFirstByte(binary: string): Promise<number> {
  const started = performance.now();
  const child = spawn(binary, ['-e', FIRST_BYTE], {
    stdio: ['ignore', 'pipe', 'ignore'],
    env: INSTANCE_ENV,
  });
  // 'close' comes after stdout's data, so it rejects only when no byte ever came.
  const closed = new Promise<number | null>((resolve) => child.once('close', resolve));
  const elapsed = await new Promise<number>((resolve, reject) => {
    child.stdout.once('data', () => resolve(performance.now() - started));
    child.once('error', reject);
    void closed.then((code) => reject(new Error(`${binary} exited (${code}) before writing`)));
  });
  await closed;
  return elapsed;
}

/** The compared runtime: `--compare-node PATH`, `off`, or by default the system Node of another major. */
async function compareRuntime(flag: string): Promise<InstanceNode | undefined> {
  if (flag === 'off') return undefined;
  if (flag !== '')
    return checkNodeBinary(flag).catch((err: unknown) => {
      throw new Error(`--compare-node: ${(err as Error).message}`);
    });
  const system = await checkNodeBinary(SYSTEM_NODE).catch(() => undefined);
  return system && major(system.version) !== major(process.version) ? system : undefined;
}

function major(version: string): number {
  return Number(/^v(\d+)/.exec(version)?.[1]);
}

interface NodeSettings {
  placement: string;
  /** `scheduler.policy`; the node's default (task) when absent. */
  scheduler?: 'task' | 'microtask';
  /** `network.poolSize`; the node's default when absent. */
  poolSize?: number;
  nodeBinary: string;
  /**
   * `startPaths.pause: false`: idle instances are never frozen. For the node
   * with the function URL, whose instance the instance floor reaches past
   * the node: frozen 50 ms after its last invocation, it would take that
   * floor's connections and never answer (nothing thaws it but the node).
   */
  noPause?: boolean;
}

/**
 * A daemon with its own temp state dir, closing it removes the dir. Each
 * gets its own bridge and subnet, so several share the test namespace
 * without their instances' addresses overlapping.
 */
async function startNode(
  settings: NodeSettings,
  index: number,
  testbed: Testbed | undefined,
): Promise<Daemon> {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'petri-bench-'));
  const configFile = path.join(stateDir, 'config.json');
  const config = {
    placement: { policy: settings.placement },
    network: {
      bridge: `petrib${index}`,
      subnet: `10.${213 + index}.0.0/16`,
      ...(settings.poolSize === undefined ? {} : { poolSize: settings.poolSize }),
    },
    runtime: { nodeBinary: settings.nodeBinary },
    ...(settings.scheduler ? { scheduler: { policy: settings.scheduler } } : {}),
    ...(settings.noPause ? { startPaths: { pause: false } } : {}),
  };
  fs.writeFileSync(configFile, JSON.stringify(config));
  const remove = (): void => fs.rmSync(stateDir, { recursive: true, force: true });
  const daemon = await spawnDaemon({ stateDir, testbed, configFile }).catch((err: unknown) => {
    remove();
    throw err;
  });
  return {
    ...daemon,
    close: async () => {
      await daemon.close();
      remove();
    },
  };
}

/** The echo server as an `http` function, in a temp folder removed by the returned call. */
async function deployHttpEcho(daemon: Daemon, concurrency: number): Promise<() => void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'petri-bench-echo-http-'));
  fs.writeFileSync(path.join(dir, 'server.js'), ECHO_SERVER);
  const remove = (): void => fs.rmSync(dir, { recursive: true, force: true });
  try {
    await deploy(daemon, 'echo-http', {
      runtime: 'http',
      command: ['node', 'server.js'],
      memoryMb: ECHO_MEMORY_MB,
      concurrency,
      env: { PORT: String(HTTP_ECHO_PORT) },
      // The instance floor connects to it from the bench's namespace, as the node does.
      network: { inbound: [HTTP_ECHO_PORT] },
      source: { path: dir },
    });
  } catch (err) {
    remove();
    throw err;
  }
  return remove;
}

async function deploy(daemon: Daemon, name: string, spec: Record<string, unknown>): Promise<void> {
  const pool = new Pool(daemon.url, { connections: 1 });
  const response = await pool.request({
    method: 'PUT',
    path: `/v1/functions/${name}`,
    body: JSON.stringify({
      runtime: 'node',
      handler: 'index.handler',
      memoryMb: 128,
      source: { path: path.join(EXAMPLES, 'echo') },
      ...spec,
    }),
    headers: { ...daemon.headers, 'content-type': 'application/json' },
  });
  const text = await response.body.text();
  await pool.close();
  if (response.statusCode >= 300) throw new Error(`deploy ${name} failed: ${text}`);
}

/** Whether a POST to `origin` is answered with 200 within 5 s. */
async function answers(origin: string): Promise<boolean> {
  const pool = new Pool(origin, { connections: 1, headersTimeout: 5_000, bodyTimeout: 5_000 });
  try {
    await post(pool, { origin, path: '/' });
    return true;
  } catch {
    return false;
  } finally {
    await pool.destroy();
  }
}

/**
 * The undici floor relaying to the http echo function's instance on `daemon`
 * (started already), past the node; undefined without an address or when
 * the instance does not answer there (a diagnostic row: the run goes on).
 */
async function startInstanceFloor(
  host: string,
  testbed: Testbed | undefined,
  daemon: Daemon,
): Promise<Awaited<ReturnType<typeof startEchoServer>> | undefined> {
  const address = await httpEchoAddress(daemon);
  if (!address) return undefined;
  const floor = await startEchoServer(host, testbed, FLOOR_PROXY, {
    UPSTREAM: `http://${address}:${HTTP_ECHO_PORT}`,
    UNDICI_PATH: createRequire(import.meta.url).resolve('undici'),
  });
  if (await answers(floor.origin)) return floor;
  progress(`an instance floor got no answer from the instance at ${address}: left out`);
  floor.stop();
  return undefined;
}

/** The http echo function's instance address on the bridge; undefined without network isolation. */
async function httpEchoAddress(daemon: Daemon): Promise<string | undefined> {
  const response = await fetch(`${daemon.url}/v1/functions/echo-http`, { headers: daemon.headers });
  const view = (await response.json()) as { instanceList?: { address?: string }[] };
  return view.instanceList?.[0]?.address;
}

const COLD_PATH = '/v1/functions/echo-cold/invoke';

/** One invocation of `echo-cold`: its latency in ms, or undefined when it was not a cold start. */
async function coldStart(pool: Pool, daemon: Daemon): Promise<number | undefined> {
  const started = performance.now();
  const headers = await post(pool, {
    origin: daemon.url,
    path: COLD_PATH,
    headers: daemon.headers,
  });
  const elapsed = performance.now() - started;
  // keepAlive 0 stops the instance right away; give its tear-down a moment.
  await sleep(COLD_GAP_MS);
  return headers['x-petri-start'] === 'cold' ? elapsed : undefined;
}

/**
 * Cold starts on every node against bare Node on the same binary,
 * interleaved: each pass takes one sample of every kind, in an order that
 * alternates, so drift on a shared machine favours none. A node's own next
 * cold start comes several samples later, so its pool (when it has one)
 * has refilled.
 */
async function coldStarts(
  runtimes: RuntimeNodes[],
  count: number,
): Promise<Map<RuntimeNodes, ColdSamples>> {
  const samples = new Map(
    runtimes.map((r) => [r, { bare: [], poolWarm: [], poolDrained: [] } as ColdSamples]),
  );
  const pools = new Map<Daemon, Pool>();
  const poolFor = (daemon: Daemon): Pool => {
    let pool = pools.get(daemon);
    if (!pool) pools.set(daemon, (pool = new Pool(daemon.url, { connections: 1 })));
    return pool;
  };
  type Step = { runtime: RuntimeNodes; kind: keyof ColdSamples };
  const steps: Step[] = runtimes.flatMap((runtime) => [
    { runtime, kind: 'bare' as const },
    { runtime, kind: 'poolWarm' as const },
    ...(runtime.drained ? [{ runtime, kind: 'poolDrained' as const }] : []),
  ]);
  const daemonOf = ({ runtime, kind }: Step): Daemon | undefined =>
    kind === 'poolWarm' ? runtime.warm : kind === 'poolDrained' ? runtime.drained : undefined;
  try {
    // A node's first cold start also builds its bridge; then its pool fills.
    for (const step of steps) {
      const daemon = daemonOf(step);
      if (daemon) await coldStart(poolFor(daemon), daemon);
    }
    await sleep(POOL_FILL_MS);
    for (let pass = 0; pass < count * 3; pass++) {
      const order = pass % 2 ? [...steps].reverse() : steps;
      const pending = order.filter((step) => samples.get(step.runtime)![step.kind].length < count);
      if (pending.length === 0) break;
      for (const step of pending) {
        const daemon = daemonOf(step);
        const sample = daemon
          ? await coldStart(poolFor(daemon), daemon)
          : await bareNodeFirstByte(step.runtime.runtime.binary);
        if (sample !== undefined) samples.get(step.runtime)![step.kind].push(sample);
      }
    }
  } finally {
    await Promise.all([...pools.values()].map((pool) => pool.close()));
  }
  return samples;
}

async function nodeFacts(
  daemon: Daemon,
): Promise<{ active: string[]; placement: string; instanceNodeVersion: string }> {
  const response = await fetch(`${daemon.url}/v1/node`, { headers: daemon.headers });
  const node = (await response.json()) as {
    isolation: { mechanisms: { name: string; active: boolean }[] };
    placement: { policy: string; active: boolean; reason?: string };
    instanceNodeVersion: string;
  };
  const { placement } = node;
  return {
    active: node.isolation.mechanisms.filter((m) => m.active).map((m) => m.name),
    placement: placement.active
      ? placement.policy
      : `${placement.policy} (off: ${placement.reason})`,
    instanceNodeVersion: node.instanceNodeVersion,
  };
}

export async function run(argv: string[]): Promise<void> {
  const args = benchArgs(argv, {
    requests: { type: 'string', default: '1000' },
    rounds: { type: 'string', default: '7' },
    settle: { type: 'string', default: '200' },
    seconds: { type: 'string', default: '3' },
    connections: { type: 'string', default: '32' },
    cold: { type: 'string', default: '30' },
    placement: { type: 'string', default: 'pack-when-sequential' },
    // Also the same node under the microtask scheduler, the echo function unannotated.
    microtask: { type: 'boolean', default: false },
    // A second Node binary for instances; '' = /usr/bin/node when its major differs, 'off' = none.
    'compare-node': { type: 'string', default: '' },
  });
  const requests = Number(args.requests);
  const rounds = Number(args.rounds);
  const connections = Number(args.connections);
  const seconds = Number(args.seconds);
  const placementPolicy = String(args.placement);
  const primary: InstanceNode = { binary: process.execPath, version: process.version };
  const compared = await compareRuntime(String(args['compare-node']));
  const testbed = canMakeTestbed() ? await createTestbed() : undefined;
  const host = testbed?.innerAddress ?? '127.0.0.1';
  progress(
    testbed ? `running in network namespace ${testbed.name}` : 'not root: running on loopback',
  );
  progress(
    `instances on ${primary.version}${compared ? ` and ${compared.version} (${compared.binary})` : ''}`,
  );
  let echo: Awaited<ReturnType<typeof startEchoServer>> | undefined;
  const floors = new Map<FloorKey, Awaited<ReturnType<typeof startEchoServer>>>();
  const removeHttpEcho: (() => void)[] = [];
  const daemons: Daemon[] = [];
  const started = async (settings: NodeSettings): Promise<Daemon> => {
    const daemon = await startNode(settings, daemons.length, testbed);
    daemons.push(daemon);
    return daemon;
  };
  try {
    echo = await startEchoServer(host, testbed);
    for (const { key, script } of FLOORS)
      floors.set(
        key,
        await startEchoServer(host, testbed, script, {
          UPSTREAM: echo.origin,
          UNDICI_PATH: createRequire(import.meta.url).resolve('undici'),
        }),
      );
    const wanted: [RuntimeNodes['key'], InstanceNode][] = [['petri', primary]];
    if (compared) wanted.push(['compare', compared]);
    const runtimes: RuntimeNodes[] = [];
    for (const [key, runtime] of wanted) {
      const nodeBinary = runtime.binary;
      // The first node also serves the function URL (deployHttpEcho below).
      const warm = await started({
        placement: placementPolicy,
        nodeBinary,
        noPause: runtimes.length === 0,
      });
      // Without root there is no network namespace, so no pool to drain.
      const drained = testbed
        ? await started({ placement: placementPolicy, poolSize: 0, nodeBinary })
        : undefined;
      runtimes.push({ key, runtime, warm, drained });
    }
    // The same node with the kernel's placement, measured in the same rounds: what placement buys.
    const spread =
      placementPolicy !== 'spread'
        ? await started({ placement: 'spread', nodeBinary: primary.binary })
        : undefined;
    for (const r of runtimes) {
      // The node reports what its instances run: check it is what it was given.
      const reported = (await nodeFacts(r.warm)).instanceNodeVersion;
      if (reported !== r.runtime.version)
        throw new Error(`node reports instances on ${reported}, expected ${r.runtime.version}`);
      // One vCPU's worth of memory, like the single-threaded baseline server: a
      // 128 MB share (0.07 vCPU) would measure the CPU limit, not the invoke path.
      await deploy(r.warm, 'echo', { memoryMb: ECHO_MEMORY_MB, concurrency: connections });
      await deploy(r.warm, 'echo-cold', { keepAlive: { ms: 0 } });
      if (r.drained) await deploy(r.drained, 'echo-cold', { keepAlive: { ms: 0 } });
    }
    if (spread)
      await deploy(spread, 'echo', { memoryMb: ECHO_MEMORY_MB, concurrency: connections });
    const microtaskNode = args.microtask
      ? await started({
          placement: placementPolicy,
          scheduler: 'microtask',
          nodeBinary: primary.binary,
        })
      : undefined;
    if (microtaskNode)
      await deploy(microtaskNode, 'echo', { memoryMb: ECHO_MEMORY_MB, concurrency: connections });
    removeHttpEcho.push(await deployHttpEcho(runtimes[0].warm, connections));
    // Only with namespaces: without them the instance has no address of its own to relay to.
    const freeFloorNode = testbed
      ? await started({ placement: 'spread', nodeBinary: primary.binary, noPause: true })
      : undefined;
    if (freeFloorNode) removeHttpEcho.push(await deployHttpEcho(freeFloorNode, connections));
    const invokePath = '/v1/functions/echo/invoke';
    const targets = new Map<TargetKey, Target>([['base', { origin: echo.origin, path: '/' }]]);
    for (const r of runtimes)
      targets.set(r.key, { origin: r.warm.url, path: invokePath, headers: r.warm.headers });
    if (spread)
      targets.set('spread', { origin: spread.url, path: invokePath, headers: spread.headers });
    if (microtaskNode)
      targets.set('microtask', {
        origin: microtaskNode.url,
        path: invokePath,
        headers: microtaskNode.headers,
      });
    // The function URL is open (auth none): no token, as a web client calls it.
    targets.set('url', { origin: runtimes[0].warm.url, path: URL_PATH });
    // The first request starts the instance; the instance floor relays to it.
    await latencies(targets.get('url')!, 1);
    const instanceFloor = await startInstanceFloor(host, testbed, runtimes[0].warm);
    if (instanceFloor) floors.set(INSTANCE_FLOOR.key, instanceFloor);
    if (freeFloorNode) {
      await latencies({ origin: freeFloorNode.url, path: URL_PATH }, 1);
      const freeFloor = await startInstanceFloor(host, testbed, freeFloorNode);
      if (freeFloor) floors.set(FREE_INSTANCE_FLOOR.key, freeFloor);
    }
    for (const [key, floor] of floors) targets.set(key, { origin: floor.origin, path: '/' });
    // Throughput compares the echo server with each runtime; placement is a latency question.
    const throughputKeys = [...targets.keys()].filter((key) => key !== 'spread');

    progress('warming up');
    for (const target of targets.values()) await latencies(target, 300);
    const samples = new Map<TargetKey, number[]>([...targets.keys()].map((key) => [key, []]));
    const rounds_: Round[] = [];
    for (let round = 1; round <= rounds; round++) {
      progress(`round ${round}/${rounds}: latency at 1 connection (${requests} requests each)`);
      // Alternate who goes first, so drift on a shared machine favours none.
      const latencyOrder = [...targets.keys()];
      if (round % 2 === 0) latencyOrder.reverse();
      const p50: Round['p50'] = {};
      for (const key of latencyOrder) {
        const measured = await latencies(targets.get(key)!, requests, Number(args.settle));
        samples.get(key)!.push(...measured);
        p50[key] = summarize(measured).p50;
      }
      progress(
        `round ${round}/${rounds}: throughput at ${connections} connections (${seconds} s each)`,
      );
      const throughputOrder = round % 2 ? throughputKeys : [...throughputKeys].reverse();
      const rps: Round['rps'] = {};
      for (const key of throughputOrder)
        rps[key] = await throughput(targets.get(key)!, connections, seconds);
      rounds_.push({ p50, rps });
    }

    progress(
      `cold starts (${args.cold} of each: pool warm${testbed ? ', pool drained' : ''}, and bare node to its first byte, per binary)`,
    );
    const cold = await coldStarts(runtimes, Number(args.cold));
    const { active, placement } = await nodeFacts(runtimes[0].warm);
    const summaries = new Map([...samples].map(([key, values]) => [key, summarize(values)]));
    const figures = runtimes.map((r) => ({
      nodes: r,
      ...runtimeFigures(r.key, rounds_, summaries, cold.get(r)!),
    }));
    const [main, other] = figures;
    const mainReport = runtimeReport(main);
    const compareReport = other && {
      ...runtimeReport(other),
      over: overPrimary(rounds_, main, other),
    };
    const result = {
      ...mainReport,
      functionUrl: functionUrlReport(rounds_, summaries),
      placement: placementEffect(rounds_),
      microtaskScheduler: microtaskEffect(rounds_),
      ...(compareReport ? { compare: compareReport } : {}),
    };
    console.log(
      table(
        ['figure', 'petri', 'baseline', 'ratio', 'added (p50)', 'target', 'met'],
        mainRows(result, connections),
        {
          title: `npm run bench -- invoke · ${os.availableParallelism()} cores · isolation: ${active.join(', ') || 'none'} · placement: ${placement} · instances on ${primary.version}`,
        },
      ),
    );
    if (result.microtaskScheduler) {
      const m = result.microtaskScheduler;
      console.log(
        table(
          ['figure', 'microtask node', '÷ echo server', '÷ task node', '÷ task node, spread'],
          [
            [
              'warm p50 (1 conn)',
              ms(m.p50),
              String(m.p50OverBase),
              String(m.p50OverTask),
              String(m.p50OverTaskSpread),
            ],
            [
              `throughput (${connections} conn)`,
              `${m.rps.toFixed(0)} req/s`,
              String(m.rpsOverBase),
              String(m.rpsOverTask),
              '–',
            ],
          ],
          {
            title:
              'the same rounds, the echo function (no annotations) on a node under the microtask scheduler (instances unplaced; daemon pinned as scheduler.daemonCore says, auto by default)',
          },
        ),
      );
    }
    if (other && compareReport)
      console.log(
        table(
          [
            'instances on',
            `${main.nodes.runtime.version} (daemon's)`,
            `${other.nodes.runtime.version} (${other.nodes.runtime.binary})`,
            `${major(other.nodes.runtime.version)} ÷ ${major(main.nodes.runtime.version)}`,
          ],
          compareRows(main, other, mainReport, compareReport),
          { title: 'the same rounds, instances on two Node binaries (daemon on the first)' },
        ),
      );
    await writeJson(args.json as string | undefined, {
      benchmark: 'invoke',
      machine: machineFacts(),
      network: testbed ? 'test namespace over veth' : 'loopback',
      isolation: active,
      placementPolicy: placement,
      runtimes: { daemon: primary, compare: compared },
      settings: {
        requests,
        settleRequests: Number(args.settle),
        rounds,
        connections,
        seconds,
        cold: Number(args.cold),
        echoFunction: { memoryMb: ECHO_MEMORY_MB, concurrency: connections },
        functionUrlNode:
          'the first warm node, startPaths.pause false (the instance floor reaches its instance past the node)',
        freeInstanceFloorNode:
          'a node of its own with placement spread and startPaths.pause false, the same http echo function: its instance is never pinned to a core',
        coldFunction: { memoryMb: 128, keepAliveMs: 0 },
        ratios:
          'warm and throughput ratios and added µs are medians of per-round figures (same round, alternating order)',
        coldMethod:
          `bare node: spawn → first byte of \`node -e "${FIRST_BYTE}"\` on a pipe, same binary as the instances; ` +
          'petri: request → response of a keepAlive-0 function; pool warm = default network.poolSize, ' +
          `drained = network.poolSize 0 (every cold start makes its namespace); samples interleaved, ${COLD_GAP_MS} ms apart`,
      },
      rounds: rounds_,
      ...result,
    });
  } finally {
    echo?.stop();
    for (const floor of floors.values()) floor.stop();
    for (const daemon of daemons) await daemon.close();
    for (const remove of removeHttpEcho) remove();
    await testbed?.close();
  }
}

function median(values: number[]): number {
  return summarize(values).p50;
}

/** Per-round medians of one target's latency and throughput against the echo server's. */
function runtimeFigures(
  key: 'petri' | 'compare',
  rounds: Round[],
  summaries: Map<TargetKey, Summary>,
  cold: ColdSamples,
) {
  const latencyRatio = median(rounds.map((r) => r.p50[key]! / r.p50.base!));
  const addedUs = median(rounds.map((r) => (r.p50[key]! - r.p50.base!) * 1000));
  const throughputRatio = median(rounds.map((r) => r.rps[key]! / r.rps.base!));
  return {
    latencyRatio,
    addedUs,
    throughputRatio,
    base: summaries.get('base')!,
    petri: summaries.get(key)!,
    baseRps: median(rounds.map((r) => r.rps.base!)),
    petriRps: median(rounds.map((r) => r.rps[key]!)),
    bare: summarize(cold.bare),
    poolWarm: summarize(cold.poolWarm),
    poolDrained: cold.poolDrained.length > 0 ? summarize(cold.poolDrained) : undefined,
  };
}

type Figures = ReturnType<typeof runtimeFigures> & { nodes: RuntimeNodes };

const COLD_TARGET = 1.5;

function coldReport(petri: Summary, bare: Summary) {
  return {
    baseline: bare,
    petri,
    ratioP50: ratio(petri.p50, bare.p50),
    addedP50Ms: round3(petri.p50 - bare.p50),
    target: COLD_TARGET,
    met: petri.p50 <= COLD_TARGET * bare.p50,
  };
}

function round3(value: number): number {
  return Math.round(value * 1000) / 1000;
}

function runtimeReport(f: Figures) {
  return {
    runtime: f.nodes.runtime,
    warm: {
      baseline: f.base,
      petri: f.petri,
      ratioP50: ratio(f.latencyRatio, 1),
      addedP50Us: Math.round(f.addedUs * 10) / 10,
      ratioP99: ratio(f.petri.p99, f.base.p99),
      targetP50: 2,
      met: f.latencyRatio <= 2,
    },
    throughput: {
      baseline: f.baseRps,
      petri: f.petriRps,
      ratio: ratio(f.throughputRatio, 1),
      target: 0.3,
      met: f.throughputRatio >= 0.3,
    },
    cold: {
      poolWarm: coldReport(f.poolWarm, f.bare),
      ...(f.poolDrained ? { poolDrained: coldReport(f.poolDrained, f.bare) } : {}),
    },
  };
}

/** The compared runtime against the daemon's own: per-round ratios where rounds exist. */
function overPrimary(rounds: Round[], main: Figures, other: Figures) {
  return {
    warmP50: ratio(median(rounds.map((r) => r.p50.compare! / r.p50.petri!)), 1),
    throughput: ratio(median(rounds.map((r) => r.rps.compare! / r.rps.petri!)), 1),
    bareFirstByteP50: ratio(other.bare.p50, main.bare.p50),
    coldPoolWarmP50: ratio(other.poolWarm.p50, main.poolWarm.p50),
    ...(other.poolDrained && main.poolDrained
      ? { coldPoolDrainedP50: ratio(other.poolDrained.p50, main.poolDrained.p50) }
      : {}),
  };
}

/** Warm p50 of the node with placement spread, against the echo server and against the node as configured. */
function placementEffect(rounds: Round[]) {
  const compared = rounds.filter((r) => r.p50.spread !== undefined);
  if (compared.length === 0) return undefined;
  const spread = (r: Round): number => r.p50.spread ?? NaN;
  return {
    spreadP50: median(compared.map(spread)),
    spreadRatioP50: ratio(median(compared.map((r) => spread(r) / r.p50.base!)), 1),
    spreadAddedP50Us:
      Math.round(median(compared.map((r) => (spread(r) - r.p50.base!) * 1000)) * 10) / 10,
    spreadOverConfigured: ratio(median(compared.map((r) => spread(r) / r.p50.petri!)), 1),
  };
}

/**
 * The unannotated echo function on a node under the microtask scheduler,
 * against the task-scheduler node as configured (petri) and, for latency,
 * the one with placement spread: the microtask policy never places
 * instances (it pins only the daemon, `scheduler.daemonCore` auto by
 * default), so spread is the like-for-like baseline of its code path.
 */
function microtaskEffect(rounds: Round[]) {
  const compared = rounds.filter((r) => r.p50.microtask !== undefined);
  if (compared.length === 0) return undefined;
  const over = (key: TargetKey, field: 'p50' | 'rps') =>
    ratio(
      median(
        compared
          .filter((r) => r[field][key] !== undefined)
          .map((r) => r[field].microtask! / r[field][key]!),
      ),
      1,
    );
  return {
    p50: median(compared.map((r) => r.p50.microtask!)),
    p50OverBase: over('base', 'p50'),
    p50OverTask: over('petri', 'p50'),
    p50OverTaskSpread: over('spread', 'p50'),
    rps: median(compared.map((r) => r.rps.microtask!)),
    rpsOverBase: over('base', 'rps'),
    rpsOverTask: over('petri', 'rps'),
  };
}

/** The function URL path (http runtime, through the proxy) against the same server on its own. */
function functionUrlReport(rounds: Round[], summaries: Map<TargetKey, Summary>) {
  const latencyRatio = median(rounds.map((r) => r.p50.url! / r.p50.base!));
  const throughputRatio = median(rounds.map((r) => r.rps.url! / r.rps.base!));
  return {
    warm: {
      baseline: summaries.get('base')!,
      petri: summaries.get('url')!,
      ratioP50: ratio(latencyRatio, 1),
      addedP50Us:
        Math.round(median(rounds.map((r) => (r.p50.url! - r.p50.base!) * 1000)) * 10) / 10,
      targetP50: 2,
      met: latencyRatio <= 2,
    },
    throughput: {
      baseline: median(rounds.map((r) => r.rps.base!)),
      petri: median(rounds.map((r) => r.rps.url!)),
      ratio: ratio(throughputRatio, 1),
      target: 0.4,
      met: throughputRatio >= 0.4,
    },
    floors: [...FLOORS, INSTANCE_FLOOR, FREE_INSTANCE_FLOOR]
      .filter(({ key }) => rounds.every((r) => r.p50[key] !== undefined))
      .map(({ key, label }) => ({
        key,
        label,
        ...floorReport(key, rounds, summaries),
      })),
  };
}

/**
 * The minimal Node proxy against the echo server (what any Node reverse
 * proxy costs here), and the function URL against that floor.
 */
function floorReport(key: FloorKey, rounds: Round[], summaries: Map<TargetKey, Summary>) {
  return {
    proxy: summaries.get(key)!,
    warmRatioP50: ratio(median(rounds.map((r) => r.p50[key]! / r.p50.base!)), 1),
    addedP50Us: Math.round(median(rounds.map((r) => (r.p50[key]! - r.p50.base!) * 1000)) * 10) / 10,
    rps: median(rounds.map((r) => r.rps[key]!)),
    throughputRatio: ratio(median(rounds.map((r) => r.rps[key]! / r.rps.base!)), 1),
    urlOverFloorP50: ratio(median(rounds.map((r) => r.p50.url! / r.p50[key]!)), 1),
    urlOverFloorRps: ratio(median(rounds.map((r) => r.rps.url! / r.rps[key]!)), 1),
  };
}

type Report = ReturnType<typeof runtimeReport> & {
  placement: ReturnType<typeof placementEffect>;
  functionUrl: ReturnType<typeof functionUrlReport>;
};

function ms(value: number): string {
  return `${value.toFixed(3)} ms`;
}

function added(value: number, unit: 'µs' | 'ms'): string {
  return `${value >= 0 ? '+' : ''}${value.toFixed(unit === 'µs' ? 0 : 1)} ${unit}`;
}

function met(value: boolean): string {
  return value ? 'yes' : 'NO';
}

function coldRow(name: string, cold: ReturnType<typeof coldReport>): string[] {
  return [
    name,
    ms(cold.petri.p50),
    `${ms(cold.baseline.p50)} (node first byte)`,
    String(cold.ratioP50),
    added(cold.addedP50Ms, 'ms'),
    `≤ ${cold.target}`,
    met(cold.met),
  ];
}

function mainRows(result: Report, connections: number): string[][] {
  const { warm, throughput, cold, placement } = result;
  return [
    [
      'warm p50 (1 conn)',
      ms(warm.petri.p50),
      ms(warm.baseline.p50),
      String(warm.ratioP50),
      added(warm.addedP50Us, 'µs'),
      `≤ ${warm.targetP50}`,
      met(warm.met),
    ],
    [
      'warm p99 (1 conn)',
      ms(warm.petri.p99),
      ms(warm.baseline.p99),
      String(warm.ratioP99),
      added((warm.petri.p99 - warm.baseline.p99) * 1000, 'µs'),
      '–',
      '–',
    ],
    [
      `throughput (${connections} conn)`,
      `${throughput.petri.toFixed(0)} req/s`,
      `${throughput.baseline.toFixed(0)} req/s`,
      String(throughput.ratio),
      '',
      `≥ ${throughput.target}`,
      met(throughput.met),
    ],
    [
      'function URL, http runtime: warm p50 (1 conn)',
      ms(result.functionUrl.warm.petri.p50),
      ms(result.functionUrl.warm.baseline.p50),
      String(result.functionUrl.warm.ratioP50),
      added(result.functionUrl.warm.addedP50Us, 'µs'),
      `≤ ${result.functionUrl.warm.targetP50}`,
      met(result.functionUrl.warm.met),
    ],
    [
      `function URL, http runtime: throughput (${connections} conn)`,
      `${result.functionUrl.throughput.petri.toFixed(0)} req/s`,
      `${result.functionUrl.throughput.baseline.toFixed(0)} req/s`,
      String(result.functionUrl.throughput.ratio),
      '',
      `≥ ${result.functionUrl.throughput.target}`,
      met(result.functionUrl.throughput.met),
    ],
    ...result.functionUrl.floors.flatMap((floor) => floorRows(floor, connections)),
    coldRow('cold start p50, namespace pool warm', cold.poolWarm),
    ...(cold.poolDrained
      ? [coldRow('cold start p50, namespace pool drained', cold.poolDrained)]
      : []),
    ...(placement
      ? [
          [
            'warm p50, placement spread',
            ms(placement.spreadP50),
            ms(warm.baseline.p50),
            String(placement.spreadRatioP50),
            added(placement.spreadAddedP50Us, 'µs'),
            '–',
            '–',
          ],
          [
            'placement gain: spread p50 ÷ this p50',
            '',
            '',
            String(placement.spreadOverConfigured),
            '',
            '–',
            '–',
          ],
        ]
      : []),
  ];
}

function floorRows(
  floor: ReturnType<typeof floorReport> & { label: string },
  connections: number,
): string[][] {
  return [
    [
      `  floor: ${floor.label}, warm p50`,
      ms(floor.proxy.p50),
      'echo server',
      String(floor.warmRatioP50),
      added(floor.addedP50Us, 'µs'),
      '–',
      '–',
    ],
    [
      `  floor: ${floor.label}, throughput (${connections} conn)`,
      `${floor.rps.toFixed(0)} req/s`,
      'echo server',
      String(floor.throughputRatio),
      '',
      '–',
      '–',
    ],
    [
      `  function URL ÷ ${floor.label} (p50; throughput)`,
      '',
      '',
      `${floor.urlOverFloorP50}; ${floor.urlOverFloorRps}`,
      '',
      '–',
      '–',
    ],
  ];
}

function compareRows(
  main: Figures,
  other: Figures,
  a: ReturnType<typeof runtimeReport>,
  b: ReturnType<typeof runtimeReport> & { over: ReturnType<typeof overPrimary> },
): string[][] {
  const { over } = b;
  const coldRows = (label: string, kind: 'poolWarm' | 'poolDrained', overRatio?: number) => {
    const x = a.cold[kind];
    const y = b.cold[kind];
    if (!x || !y) return [];
    return [
      [`cold start p50, pool ${label}`, ms(x.petri.p50), ms(y.petri.p50), String(overRatio ?? '')],
      [
        `  ÷ bare node first byte (target ≤ ${COLD_TARGET})`,
        String(x.ratioP50),
        String(y.ratioP50),
        '',
      ],
    ];
  };
  return [
    ['warm p50 (1 conn)', ms(a.warm.petri.p50), ms(b.warm.petri.p50), String(over.warmP50)],
    ['  ÷ echo server (target ≤ 2)', String(a.warm.ratioP50), String(b.warm.ratioP50), ''],
    [
      '  added over echo server',
      added(a.warm.addedP50Us, 'µs'),
      added(b.warm.addedP50Us, 'µs'),
      '',
    ],
    [
      'throughput',
      `${a.throughput.petri.toFixed(0)} req/s`,
      `${b.throughput.petri.toFixed(0)} req/s`,
      String(over.throughput),
    ],
    ['  ÷ echo server (target ≥ 0.3)', String(a.throughput.ratio), String(b.throughput.ratio), ''],
    [
      'bare node first byte p50',
      ms(main.bare.p50),
      ms(other.bare.p50),
      String(over.bareFirstByteP50),
    ],
    ...coldRows('warm', 'poolWarm', over.coldPoolWarmP50),
    ...coldRows('drained', 'poolDrained', over.coldPoolDrainedP50),
  ];
}
