/**
 * The instance host: the first (and for `node` functions the only) program an
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
import http from 'node:http';
import net from 'node:net';
import { pathToFileURL } from 'node:url';
import {
  FrameDecoder,
  FrameWriter,
  PROTOCOL_FD,
  type FromInstance,
  type ToInstance,
} from './protocol.ts';
import { applyFunctionEnv } from './env.ts';

type Invoke = Extract<ToInstance, { type: 'invoke' }>;
type Handler = (event: unknown, context: unknown) => unknown;
type Adapter = (message: Invoke) => Promise<unknown>;

/** An error the adapter knows the code of. */
class CodedError extends Error {
  constructor(
    readonly code: 'HandlerError' | 'BadResponse',
    message: string,
  ) {
    super(message);
  }
}

const channel = new net.Socket({ fd: PROTOCOL_FD, readable: true, writable: true });
// Now, inside the sandbox and after Node has started, the function's own env applies (env.ts).
applyFunctionEnv(process.env);
const env = process.env;
const functionName = env.PETRI_FUNCTION ?? '';
const memoryMb = Number(env.PETRI_MEMORY_MB ?? 0);
let child: ChildProcess | undefined;

const writer = new FrameWriter(channel);

function send(message: FromInstance): void {
  writer.write(message);
}

function errorFields(err: unknown): { message: string; stack?: string } {
  if (err instanceof Error) return { message: err.message, stack: err.stack };
  return { message: typeof err === 'string' ? err : JSON.stringify(err) };
}

/** The daemon gone means nobody wants our results: leave at once. */
function exitWithDaemon(): void {
  child?.kill('SIGKILL');
  process.exit(0);
}

function makeContext(message: Invoke): object {
  return {
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
        line: parts.map((p) => (typeof p === 'string' ? p : JSON.stringify(p))).join(' '),
      }),
  };
}

async function nodeAdapter(): Promise<Adapter> {
  const bundle = env.PETRI_BUNDLE ?? '';
  const exportName = env.PETRI_EXPORT ?? 'handler';
  const mod = (await import(pathToFileURL(bundle).href)) as Record<string, unknown>;
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
        stdio: ['pipe', 'pipe', 'inherit'],
        env: { ...env, PETRI_INVOCATION_ID: message.id },
      });
      child = proc;
      const out: Buffer[] = [];
      proc.stdout.on('data', (chunk: Buffer) => out.push(chunk));
      proc.on('error', (err) => reject(new CodedError('HandlerError', err.message)));
      proc.on('close', (code, signal) => {
        child = undefined;
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
      proc.stdin.on('error', () => {}); // a command that ignores stdin may close it early
      proc.stdin.end(JSON.stringify(message.event));
    });
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

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
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
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { ...env, PORT: String(port) },
  });
  // The server is the instance: when it dies, so does the instance, with its status.
  child.on('exit', (code, signal) => {
    if (signal) process.kill(process.pid, signal);
    process.exit(code ?? 1);
  });
  while (!(await canConnect(port))) await new Promise((r) => setTimeout(r, 5));
  const agent = new http.Agent({ keepAlive: true });
  return (message) => forward(agent, port, message);
}

function forward(agent: http.Agent, port: number, message: Invoke): Promise<unknown> {
  const body = JSON.stringify(message.event);
  return new Promise((resolve, reject) => {
    const request = http.request(
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
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
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

async function loadAdapter(): Promise<Adapter> {
  switch (env.PETRI_RUNTIME) {
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
  try {
    const value = await adapter(message);
    send({ type: 'result', id: message.id, value: value === undefined ? null : value });
  } catch (err) {
    const code = err instanceof CodedError ? err.code : 'HandlerError';
    send({ type: 'error', id: message.id, code, ...errorFields(err) });
  }
}

async function main(): Promise<void> {
  channel.on('end', exitWithDaemon);
  channel.on('error', exitWithDaemon);
  let adapter: Adapter;
  try {
    adapter = await loadAdapter();
  } catch (err) {
    send({ type: 'init-error', ...errorFields(err) });
    writer.flush();
    channel.end(() => process.exit(1));
    return;
  }
  const decoder = new FrameDecoder<ToInstance>((message) => {
    if (message.type === 'invoke') void run(adapter, message);
    else exitWithDaemon();
  });
  channel.on('data', (chunk: Buffer) => decoder.push(chunk));
  send({ type: 'ready' });
}

void main();
