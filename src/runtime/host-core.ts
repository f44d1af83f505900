/**
 * The instance host's protocol loop (host.ts runs it; so does a restored
 * snapshot, snapshot-entry.ts). The instance host: the first (and for `node` functions the only) program an
 * instance runs. The node bundles this file into one small ESM script at start,
 * so an instance starts as fast as bare Node plus the function's own code.
 *
 * It speaks the runtime protocol on fd 3 and adapts it to the function's
 * runtime: a handler call (`node`), a process per request (`exec`), or an
 * HTTP request to a long-running server (`http`).
 *
 * Only Node built-ins may be imported here.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, renameSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type http from 'node:http';
import net from 'node:net';
import { pathToFileURL } from 'node:url';
import {
  cutText,
  encodeResultFrame,
  ERROR_TEXT_BYTES,
  FrameDecoder,
  FrameWriter,
  MICROTASK_NAME,
  PREWARM_RUNTIME,
  PROTOCOL_FD,
  type BindMessage,
  type FromInstance,
  type InstanceErrorCode,
  type ToInstance,
} from './protocol.ts';
import { applyFunctionEnv, FUNCTION_ENV_VAR } from './env.ts';

type Invoke = Extract<ToInstance, { type: 'invoke' }>;
type Handler = (event: unknown, context: unknown) => unknown;
type Adapter = (message: Invoke) => Promise<unknown>;

/** An error the adapter knows the code of. */
class CodedError extends Error {
  constructor(
    readonly code: InstanceErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** Set by runHost, once the host runs inside its sandbox (a snapshot's build never sets them). */
let channel: net.Socket;
let env: NodeJS.ProcessEnv = process.env;
let functionName = '';
let memoryMb = 0;
/** The node's limits (the daemon checks them again: this host runs the function's code). */
let responseLimitBytes = 6 * 1024 * 1024;
let logLineBytes = 16 * 1024;
/** This script, as stack frames name it: its frames are Petri's, not the function's. */
let HOST_URL = '';
let HOST_PATH = '';
let child: ChildProcess | undefined;
/** The http runtime's server port, told to the daemon in `ready`. */
let serverPort: number | undefined;

let writer: FrameWriter;
/** A node function's module, loaded before the host started (a restored snapshot). */
let preloaded: Record<string, unknown> | undefined;

export interface HostOptions {
  /** The host script's own file, to tell its stack frames from the function's. */
  hostFile: string;
  /** The function's module, already evaluated (restore from a startup snapshot). */
  module?: Record<string, unknown>;
}

/** Starts the host: opens the protocol channel, applies the function's env, loads the adapter. */
export function runHost(options: HostOptions): void {
  channel = new net.Socket({ fd: PROTOCOL_FD, readable: true, writable: true });
  // Now, inside the sandbox and after Node has started, the function's own env applies (env.ts).
  applyFunctionEnv(process.env);
  env = process.env;
  functionName = env.PETRI_FUNCTION ?? '';
  memoryMb = Number(env.PETRI_MEMORY_MB ?? 0);
  responseLimitBytes = Number(env.PETRI_RESPONSE_LIMIT_BYTES) || responseLimitBytes;
  logLineBytes = Number(env.PETRI_LOG_LINE_BYTES) || logLineBytes;
  HOST_PATH = options.hostFile;
  HOST_URL = pathToFileURL(options.hostFile).href;
  preloaded = options.module;
  writer = new FrameWriter(channel);
  void main();
}

function send(message: FromInstance): void {
  writer.write(message);
}

function errorFields(err: unknown): { message: string; stack?: string } {
  try {
    if (err instanceof Error) {
      const stack = typeof err.stack === 'string' ? functionStack(err.stack) : undefined;
      return {
        message: cutText(String(err.message), ERROR_TEXT_BYTES.message),
        ...(stack === undefined ? {} : { stack: cutText(stack, ERROR_TEXT_BYTES.stack) }),
      };
    }
    const text = typeof err === 'string' ? err : (JSON.stringify(err) ?? String(err));
    return { message: cutText(text, ERROR_TEXT_BYTES.message) };
  } catch {
    // A thrown value that cannot even be described (a BigInt, a hostile getter).
    return { message: `the handler threw a value of type ${typeof err}` };
  }
}

/** A stack without the host's own frames and Node's internals: what the function's author needs. */
function functionStack(stack: string): string {
  return stack
    .split('\n')
    .filter(
      (line) =>
        !/^\s+at /.test(line) ||
        !(line.includes(HOST_URL) || line.includes(HOST_PATH) || line.includes('node:internal')),
    )
    .join('\n');
}

/**
 * Where in `value` the first BigInt is (as `result.a[2].b`), to say why it
 * cannot be serialised; visits at most `budget` values.
 */
function bigIntPath(value: unknown, budget = 100_000): string | undefined {
  const stack: [unknown, string][] = [[value, 'result']];
  const seen = new Set<object>();
  while (stack.length > 0 && budget-- > 0) {
    const [current, path] = stack.pop()!;
    if (typeof current === 'bigint') return path;
    if (typeof current !== 'object' || current === null || seen.has(current)) continue;
    seen.add(current);
    const entries = Array.isArray(current)
      ? current.map((item, index): [unknown, string] => [item, `${path}[${index}]`])
      : Object.entries(current).map(([key, item]): [unknown, string] => [item, `${path}.${key}`]);
    stack.push(...entries.reverse());
  }
  return undefined;
}

/**
 * A result as a frame: serialised once, refused when it is not JSON
 * (BadResponse, with the function's stack) or over the response limit
 * (ResponseTooLarge, before a byte of it is sent).
 */
function resultFrame(id: string, value: unknown): Buffer {
  if (typeof value === 'string') return sizedResultFrame(id, JSON.stringify(value), 'text');
  if (value instanceof Uint8Array) {
    // As with Lambda, the limit holds for the bytes as sent: base64, 4 characters per 3 bytes.
    checkResultSize(Math.ceil(value.byteLength / 3) * 4, 'base64');
    const bytes = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    return encodeResultFrame(id, `"${bytes.toString('base64')}"`, 'base64');
  }
  let json: string | undefined;
  try {
    json = JSON.stringify(value);
  } catch (err) {
    const fields = errorFields(err);
    const path = err instanceof TypeError && /BigInt/.test(fields.message) ? bigIntPath(value) : '';
    const where = path ? ` (at ${path})` : '';
    throw Object.assign(
      new CodedError(
        'BadResponse',
        `the result cannot be serialised as JSON: ${fields.message}${where}`,
      ),
      { stack: fields.stack },
    );
  }
  // undefined, a function or a symbol: JSON has no such value, and the caller gets null.
  return sizedResultFrame(id, json ?? 'null');
}

/** A result already serialised as JSON, refused over the response limit. */
function sizedResultFrame(id: string, json: string, encoding?: 'text'): Buffer {
  // A UTF-16 unit is 1 to 3 bytes of UTF-8: count the bytes only when the length cannot tell.
  const over =
    json.length > responseLimitBytes ||
    (json.length * 3 > responseLimitBytes && Buffer.byteLength(json) > responseLimitBytes);
  // A string is counted as it is sent: as a JSON string.
  if (over) checkResultSize(Buffer.byteLength(json), 'JSON');
  return encodeResultFrame(id, json, encoding);
}

function checkResultSize(bytes: number, what: string): void {
  if (bytes <= responseLimitBytes) return;
  throw new CodedError(
    'ResponseTooLarge',
    `the result is ${bytes} bytes of ${what}, over the ${responseLimitBytes}-byte response limit`,
  );
}

/** The daemon gone means nobody wants our results: leave at once. */
function exitWithDaemon(): void {
  child?.kill('SIGKILL');
  process.exit(0);
}

/**
 * Per invocation in flight, who waits for the daemon's `admit` of each phase
 * it announced, oldest first (the daemon admits an invocation's phases in
 * order, one `admit` per `microtask` frame).
 */
const admissions = new Map<string, (() => void)[]>();

function checkPhaseName(name: unknown): string {
  if (typeof name !== 'string' || !MICROTASK_NAME.test(name)) {
    throw new TypeError(
      `a microtask name must be 1–64 characters of A-Z, a-z, 0-9, "_", ".", ":" or "-" (got ${JSON.stringify(name)})`,
    );
  }
  return name;
}

/**
 * Announces a phase now (not at the end of this turn: a sync phase would
 * otherwise be over before its frame left); `admitted` runs once the daemon
 * lets it run.
 */
function announce(id: string, name: string, admitted: () => void = () => {}): void {
  const waiters = admissions.get(id);
  if (!waiters) return admitted(); // the invocation is over: nothing to schedule
  waiters.push(admitted);
  writer.writeNow({ type: 'microtask', id, name });
}

function onAdmit(id: string): void {
  admissions.get(id)?.shift()?.();
}

/** `context.microtask(name, fn?)`: waits until the phase may run, then runs `fn`. */
function microtask(id: string) {
  return async (name: unknown, fn?: () => unknown): Promise<unknown> => {
    const phase = checkPhaseName(name);
    await new Promise<void>((resolve) => announce(id, phase, resolve));
    return fn?.();
  };
}

/**
 * `context.microtaskSync(name, fn?)`: announces and runs `fn` at once. It
 * cannot wait for `admit`: that frame arrives on this thread's event loop,
 * which synchronous code blocks. The daemon still queues the phase and sets
 * its class's limits on the cgroup once admitted, which the kernel applies
 * while `fn` runs.
 */
function microtaskSync(id: string) {
  return (name: unknown, fn?: () => unknown): unknown => {
    announce(id, checkPhaseName(name));
    return fn?.();
  };
}

function makeContext(message: Invoke): object {
  return {
    microtask: microtask(message.id),
    microtaskSync: microtaskSync(message.id),
    invocationId: message.id,
    functionName,
    memoryMb,
    deadline: message.deadline,
    remainingTimeMs: () => Math.max(0, message.deadline - Date.now()),
    log: (...parts: unknown[]) =>
      send({
        type: 'log',
        id: message.id,
        stream: 'stdout',
        line: cutText(
          parts.map((p) => (typeof p === 'string' ? p : JSON.stringify(p))).join(' '),
          logLineBytes,
        ),
      }),
  };
}

async function nodeAdapter(): Promise<Adapter> {
  const bundle = env.PETRI_BUNDLE ?? '';
  const exportName = env.PETRI_EXPORT ?? 'handler';
  const mod = preloaded ?? ((await import(pathToFileURL(bundle).href)) as Record<string, unknown>);
  const fallback = mod.default as Record<string, unknown> | undefined;
  const handler = (mod[exportName] ?? fallback?.[exportName]) as Handler | undefined;
  if (typeof handler !== 'function') {
    throw new Error(`the module does not export a function named "${exportName}"`);
  }
  return async (message) => {
    try {
      return await handler(message.event, makeContext(message));
    } catch (err) {
      const fields = errorFields(err);
      throw Object.assign(new CodedError('HandlerError', fields.message), { stack: fields.stack });
    }
  };
}

function command(): string[] {
  return JSON.parse(env.PETRI_COMMAND ?? '[]') as string[];
}

function execAdapter(): Adapter {
  const [file, ...args] = command();
  return (message) =>
    new Promise((resolve, reject) => {
      const proc = spawn(file, args, {
        stdio: ['pipe', 'pipe', 'inherit', 'pipe'],
        env: {
          ...env,
          PETRI_INVOCATION_ID: message.id,
          PETRI_MICROTASK_FD: String(MICROTASK_CHILD_FD),
        },
      });
      child = proc;
      serveMicrotaskLines(proc.stdio[MICROTASK_CHILD_FD] as net.Socket, () => message.id);
      const out: Buffer[] = [];
      let outBytes = 0;
      proc.stdout!.on('data', (chunk: Buffer) => {
        outBytes += chunk.length;
        if (outBytes <= responseLimitBytes) out.push(chunk);
        else proc.kill('SIGKILL'); // the result cannot fit: stop it printing
      });
      proc.on('error', (err) => reject(new CodedError('HandlerError', err.message)));
      proc.on('close', (code, signal) => {
        child = undefined;
        if (outBytes > responseLimitBytes) {
          const limit = `the ${responseLimitBytes}-byte response limit`;
          reject(new CodedError('ResponseTooLarge', `the command printed more than ${limit}`));
          return;
        }
        if (code !== 0) {
          const how = signal ? `signal ${signal}` : `code ${code}`;
          reject(new CodedError('HandlerError', `command exited with ${how}`));
          return;
        }
        const text = Buffer.concat(out).toString('utf8').trim();
        try {
          resolve(JSON.parse(text));
        } catch {
          const shown = text.length > 200 ? text.slice(0, 200) + '…' : text;
          reject(new CodedError('BadResponse', `command printed non-JSON output: ${shown}`));
        }
      });
      proc.stdin!.on('error', () => {}); // a command that ignores stdin may close it early
      proc.stdin!.end(JSON.stringify(message.event));
    });
}

/** The fd an exec command or http server announces its phases on (`PETRI_MICROTASK_FD`). */
const MICROTASK_CHILD_FD = 3;
/** The longest announcement line: an id, a space and a name fit with room to spare. */
const MICROTASK_LINE_BYTES = 256;

/**
 * The phase channel of `exec` and `http` functions, a line protocol on an
 * inherited socket: the program writes `NAME\n` (exec: the invocation it
 * serves) or `INVOCATION_ID NAME\n` (http: the id from the request's
 * x-petri-invocation-id header), and reads `ok ID NAME\n` back once the
 * phase may run, or `error REASON\n`.
 */
function serveMicrotaskLines(socket: net.Socket, current: () => string | undefined): void {
  let buffered = '';
  const reply = (line: string): void => {
    if (!socket.destroyed) socket.write(line + '\n');
  };
  socket.setEncoding('utf8');
  socket.on('error', () => {});
  socket.on('data', (chunk: string) => {
    buffered += chunk;
    let newline: number;
    while ((newline = buffered.indexOf('\n')) >= 0) {
      microtaskLine(buffered.slice(0, newline).trim(), current, reply);
      buffered = buffered.slice(newline + 1);
    }
    if (buffered.length > MICROTASK_LINE_BYTES) {
      buffered = '';
      reply(`error line longer than ${MICROTASK_LINE_BYTES} bytes`);
    }
  });
}

function microtaskLine(
  line: string,
  current: () => string | undefined,
  reply: (line: string) => void,
): void {
  const parts = line.split(' ');
  const [id, name] = parts.length === 2 ? parts : [current(), parts[0]];
  if (parts.length > 2 || !name || !MICROTASK_NAME.test(name)) {
    return reply('error expected "NAME" or "INVOCATION_ID NAME" (NAME: 1-64 of A-Za-z0-9_.:-)');
  }
  if (id === undefined || !admissions.has(id)) {
    return reply(`error no invocation ${id ?? '(none given)'} in flight`);
  }
  announce(id, name, () => reply(`ok ${id} ${name}`));
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}

function canConnect(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, host);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

async function httpAdapter(): Promise<Adapter> {
  const port = env.PORT ? Number(env.PORT) : await freePort();
  const [file, ...args] = command();
  child = spawn(file, args, {
    stdio: ['ignore', 'inherit', 'inherit', 'pipe'],
    env: { ...env, PORT: String(port), PETRI_MICROTASK_FD: String(MICROTASK_CHILD_FD) },
  });
  serveMicrotaskLines(child.stdio[MICROTASK_CHILD_FD] as net.Socket, () => undefined);
  // The server is the instance: when it dies, so does the instance, with its status.
  child.on('exit', (code, signal) => {
    if (signal) process.kill(process.pid, signal);
    process.exit(code ?? 1);
  });
  while (!(await canConnect(port))) await new Promise((r) => setTimeout(r, 5));
  // Function URLs connect from the node, to the instance's bridge address.
  const address = env.PETRI_ADDRESS;
  if (address && !(await canConnect(port, address))) {
    process.stderr.write(
      `petri: the server takes connections on 127.0.0.1:${port} only; function URLs need it to listen on 0.0.0.0 (all addresses)\n`,
    );
  }
  serverPort = port;
  const httpModule = loadHttp();
  const agent = new httpModule.Agent({ keepAlive: true });
  return (message) => forward(httpModule, agent, port, message);
}

/**
 * node:http, loaded only by the http runtime: as a static ES import on Node 24
 * it evaluates every export, the lazy WebSocket getters and so Node's bundled
 * undici included, which cost every instance's cold start ~35 ms (bench invoke).
 */
function loadHttp(): typeof http {
  return process.getBuiltinModule('node:http');
}

function forward(
  httpModule: typeof http,
  agent: http.Agent,
  port: number,
  message: Invoke,
): Promise<unknown> {
  const body = JSON.stringify(message.event);
  return new Promise((resolve, reject) => {
    const request = httpModule.request(
      {
        agent,
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: '/',
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
          'x-petri-invocation-id': message.id,
        },
      },
      (response) => {
        const chunks: Buffer[] = [];
        let received = 0;
        response.on('data', (chunk: Buffer) => {
          received += chunk.length;
          if (received <= responseLimitBytes) return void chunks.push(chunk);
          const limit = `the ${responseLimitBytes}-byte response limit`;
          reject(new CodedError('ResponseTooLarge', `the server sent more than ${limit}`));
          response.destroy();
        });
        response.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          const status = response.statusCode ?? 0;
          if (status >= 400) {
            reject(
              new CodedError('HandlerError', `server answered ${status}: ${text.slice(0, 500)}`),
            );
            return;
          }
          const isJson = (response.headers['content-type'] ?? '').includes('json');
          if (!isJson) return resolve(text);
          try {
            resolve(text === '' ? null : JSON.parse(text));
          } catch {
            reject(
              new CodedError('BadResponse', `server sent invalid JSON: ${text.slice(0, 200)}`),
            );
          }
        });
      },
    );
    request.on('error', (err) => reject(new CodedError('HandlerError', err.message)));
    request.end(body);
  });
}

/** What the coordinator tells a member (src/node/coordinator.ts). */
interface Membership {
  group: string;
  rank: number;
  size: number;
  address: string;
  members: { rank: number; address: string }[];
}

/** One request to the coordinator; the body as JSON, or each NDJSON line to `onLine`. */
function coordinatorRequest(
  url: string,
  method: 'GET' | 'POST',
  onLine?: (line: string) => void,
): Promise<unknown> {
  const httpModule = loadHttp();
  return new Promise((resolve, reject) => {
    const request = httpModule.request(url, { method }, (response) => {
      let text = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => {
        text += chunk;
        if (!onLine) return;
        const lines = text.split('\n');
        text = lines.pop() ?? '';
        for (const line of lines) if (line.trim() !== '') onLine(line);
      });
      response.on('end', () => {
        if ((response.statusCode ?? 0) >= 400) {
          reject(new Error(`coordinator answered ${response.statusCode}: ${text.slice(0, 500)}`));
          return;
        }
        try {
          resolve(onLine ? undefined : JSON.parse(text));
        } catch (err) {
          reject(err as Error);
        }
      });
      response.on('error', reject);
    });
    request.on('error', reject);
    request.end();
  });
}

/** Writes the peers file (one member address per line, rank order) in one rename. */
function writePeers(file: string, members: Membership['members']): void {
  const text = [...members]
    .sort((a, b) => a.rank - b.rank)
    .map((member) => member.address + '\n')
    .join('');
  writeFileSync(file + '.new', text);
  renameSync(file + '.new', file);
}

/**
 * The service runtime: joins the group (the coordinator holds the answer
 * until the start barrier has enough members), writes the peers file, then
 * runs the command once; the instance lives as long as the command does.
 * Membership changes rewrite the peers file while it runs.
 */
async function runService(): Promise<void> {
  const coordinator = env.PETRI_COORDINATOR;
  const serviceEnv: NodeJS.ProcessEnv = { ...env };
  let peersFile: string | undefined;
  if (coordinator) {
    const self = (await coordinatorRequest(`${coordinator}/v1/join`, 'POST')) as Membership;
    peersFile = path.join(mkdtempSync(path.join(os.tmpdir(), 'petri-group-')), 'peers');
    writePeers(peersFile, self.members);
    Object.assign(serviceEnv, {
      PETRI_GROUP: self.group,
      PETRI_RANK: String(self.rank),
      PETRI_SIZE: String(self.size),
      PETRI_ADDRESS: self.address,
      PETRI_PEERS: peersFile,
    });
  }
  const [file, ...args] = command();
  child = spawn(file, args, { stdio: ['ignore', 'inherit', 'inherit'], env: serviceEnv });
  child.on('error', (err) => {
    process.stderr.write(`petri: could not start the service: ${err.message}\n`);
    process.exit(127);
  });
  child.on('exit', (code, signal) => {
    if (signal) process.kill(process.pid, signal);
    process.exit(code ?? 1);
  });
  if (coordinator && peersFile) {
    const target = peersFile;
    void coordinatorRequest(`${coordinator}/v1/events`, 'GET', (line) => {
      const event = JSON.parse(line) as { members?: Membership['members'] };
      if (Array.isArray(event.members)) writePeers(target, event.members);
    }).catch(() => undefined);
  }
}

function serviceAdapter(): Adapter {
  void runService().catch((err: unknown) => {
    process.stderr.write(`petri: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
  return () =>
    Promise.reject(new CodedError('HandlerError', 'a service instance takes no invocations'));
}

async function loadAdapter(): Promise<Adapter> {
  switch (env.PETRI_RUNTIME) {
    case 'service':
      return serviceAdapter();
    case 'node':
      return nodeAdapter();
    case 'exec':
      return execAdapter();
    case 'http':
      return httpAdapter();
    default:
      throw new Error(`unknown runtime "${env.PETRI_RUNTIME}"`);
  }
}

async function run(adapter: Adapter, message: Invoke): Promise<void> {
  admissions.set(message.id, []);
  try {
    const value = await adapter(message);
    writer.writeEncoded(resultFrame(message.id, value));
  } catch (err) {
    const code = err instanceof CodedError ? err.code : 'HandlerError';
    send({ type: 'error', id: message.id, code, ...errorFields(err) });
  } finally {
    // Phases still waiting end with the invocation (the daemon ends them too).
    for (const admitted of admissions.get(message.id) ?? []) admitted();
    admissions.delete(message.id);
  }
}

/** The function's adapter, once loaded (a prewarmed runtime has none until its `bind`). */
let adapter: Adapter | undefined;
/** Whether this host started without a function and has not been bound yet. */
let awaitingBind = false;

function onFrame(message: ToInstance): void {
  if (message.type === 'invoke' && adapter) void run(adapter, message);
  else if (message.type === 'admit') onAdmit(message.id);
  else if (message.type === 'bind' && awaitingBind) {
    awaitingBind = false;
    void bind(message);
  } else exitWithDaemon();
}

/** Tells the daemon the function could not be loaded, and leaves. */
function initFailed(err: unknown): void {
  send({ type: 'init-error', ...errorFields(err) });
  writer.flush();
  channel.end(() => process.exit(1));
}

/**
 * The daemon checked the frame (runtime/schema.ts); its shape is checked
 * again here, where zod is not bundled, before anything acts on it.
 */
function checkBind(message: BindMessage): void {
  const strings = [message.functionName, message.bundle, message.exportName, message.cwd];
  if (strings.some((value) => typeof value !== 'string') || !Number.isInteger(message.version)) {
    throw new Error('a bind frame with missing fields');
  }
  const env: unknown = message.env;
  if (typeof env !== 'object' || env === null || Array.isArray(env)) {
    throw new Error('a bind frame whose env is not an object');
  }
  if (Object.values(env).some((value) => typeof value !== 'string')) {
    throw new Error('a bind frame whose env holds a value that is not a string');
  }
}

/**
 * A prewarmed runtime becomes one function's instance: Petri's variables
 * first, then the function's own env (which cannot change them, env.ts),
 * then its folder and handler, as a cold start would have had them.
 */
async function bind(message: BindMessage): Promise<void> {
  try {
    checkBind(message);
    env.PETRI_RUNTIME = 'node';
    env.PETRI_FUNCTION = message.functionName;
    env.PETRI_VERSION = String(message.version);
    env.PETRI_BUNDLE = message.bundle;
    env.PETRI_EXPORT = message.exportName;
    env[FUNCTION_ENV_VAR] = JSON.stringify(message.env);
    applyFunctionEnv(env);
    functionName = message.functionName;
    process.chdir(message.cwd);
    adapter = await nodeAdapter();
  } catch (err) {
    initFailed(err);
    return;
  }
  send({ type: 'ready' });
}

async function main(): Promise<void> {
  channel.on('end', exitWithDaemon);
  channel.on('error', exitWithDaemon);
  awaitingBind = env.PETRI_RUNTIME === PREWARM_RUNTIME;
  if (!awaitingBind) {
    try {
      adapter = await loadAdapter();
    } catch (err) {
      initFailed(err);
      return;
    }
  }
  const decoder = new FrameDecoder<ToInstance>(onFrame);
  channel.on('data', (chunk: Buffer) => decoder.push(chunk));
  send(serverPort === undefined ? { type: 'ready' } : { type: 'ready', port: serverPort });
}
