import { spawn, type ChildProcess } from 'node:child_process';
import { run } from './exec.ts';
import { netnsPath } from './naming.ts';

/**
 * iperf3 helpers for bandwidth measurements (tests now, `petri bench net`
 * later). The caller must keep both ends inside namespaces it created itself.
 */

export interface IperfServer {
  readonly address: string;
  readonly port: number;
  stop(): Promise<void>;
}

export interface IperfServerOptions {
  /** Address to bind; must belong to this namespace (or `netns`). */
  address: string;
  port?: number;
  /** Run inside this named network namespace (via nsenter). */
  netns?: string;
  /** Give up waiting for "Server listening" after this long. */
  startTimeoutMs?: number;
}

function inNetns(netns: string | undefined, command: string[]): string[] {
  return netns ? ['nsenter', `--net=${netnsPath(netns)}`, '--', ...command] : command;
}

/** Starts `iperf3 -s` and resolves once it listens. */
export function startIperfServer(options: IperfServerOptions): Promise<IperfServer> {
  const port = options.port ?? 5201;
  const [file, ...args] = inNetns(options.netns, [
    'iperf3',
    '-s',
    '-B',
    options.address,
    '-p',
    String(port),
    '--forceflush',
  ]);
  const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let output = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`iperf3 server did not start: ${output}`));
    }, options.startTimeoutMs ?? 5000);
    const onData = (chunk: Buffer): void => {
      output += chunk.toString();
      if (!output.includes('Server listening')) return;
      clearTimeout(timer);
      child.stdout.off('data', onData);
      child.stdout.resume();
      resolve({ address: options.address, port, stop: () => stopChild(child) });
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('close', () => resolve());
    child.kill('SIGTERM');
  });
}

export interface IperfClientOptions {
  server: string;
  port?: number;
  seconds: number;
  /** -R: the server sends, i.e. the client's download. */
  reverse?: boolean;
  /** Run the client inside this named network namespace. */
  netns?: string;
  /** Skip the first N seconds (TCP slow start, TBF's initial burst). */
  omitSeconds?: number;
}

export interface IperfResult {
  /** Goodput the receiver saw, bits per second. */
  receivedBitsPerSecond: number;
  sentBitsPerSecond: number;
  receivedBytes: number;
  retransmits: number | undefined;
}

/** Runs `iperf3 -c … -J` and parses the result. */
export async function runIperfClient(options: IperfClientOptions): Promise<IperfResult> {
  const command = [
    'iperf3',
    '-c',
    options.server,
    '-p',
    String(options.port ?? 5201),
    '-t',
    String(options.seconds),
    '-J',
    ...(options.reverse ? ['-R'] : []),
    ...(options.omitSeconds ? ['-O', String(options.omitSeconds)] : []),
  ];
  const [file, ...args] = inNetns(options.netns, command);
  return parseIperfJson(await run(file, args));
}

function field(value: unknown, ...path: string[]): unknown {
  let current = value;
  for (const key of path) {
    if (typeof current !== 'object' || current === null) return undefined;
    current = (current as Record<string, unknown>)[key];
  }
  return current;
}

function numberField(value: unknown, ...path: string[]): number {
  const found = field(value, ...path);
  if (typeof found !== 'number') throw new Error(`iperf3 JSON lacks ${path.join('.')}`);
  return found;
}

/** Parses iperf3 `-J` output (TCP). Throws on iperf3's own `error` field. */
export function parseIperfJson(text: string): IperfResult {
  const parsed: unknown = JSON.parse(text);
  const error = field(parsed, 'error');
  if (typeof error === 'string') throw new Error(`iperf3: ${error}`);
  const retransmits = field(parsed, 'end', 'sum_sent', 'retransmits');
  return {
    receivedBitsPerSecond: numberField(parsed, 'end', 'sum_received', 'bits_per_second'),
    sentBitsPerSecond: numberField(parsed, 'end', 'sum_sent', 'bits_per_second'),
    receivedBytes: numberField(parsed, 'end', 'sum_received', 'bytes'),
    retransmits: typeof retransmits === 'number' ? retransmits : undefined,
  };
}
