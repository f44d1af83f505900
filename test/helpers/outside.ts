import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { runCommand as run } from '../../src/net/index.ts';

/**
 * A stand-in for the world beyond a node: a network namespace the test makes
 * behind the node's own (test) namespace, holding whatever addresses the test
 * wants instances to try — public, private, link-local — each routed to it
 * from the node's namespace. Connections to them never leave the test's
 * namespaces (DESIGN §10 safety rule).
 */
export interface Outside {
  readonly name: string;
  /** The node-side end of the link (the address egress is NATed to). */
  readonly nodeAddress: string;
  /** The outside end of the link. */
  readonly linkAddress: string;
  /** A TCP server on 0.0.0.0:`port` inside the outside namespace; answers `hello`. */
  serve(port: number): Promise<void>;
  /** Connects from the outside namespace; `connected`, `timeout` or an error code. */
  connect(host: string, port: number): Promise<string>;
  close(): Promise<void>;
}

/** A TCP server on 0.0.0.0:argv[1] that answers `hello`; prints `ready` once listening. */
export const SERVE_SCRIPT = `require('net').createServer(s=>{s.on('error',()=>{});s.end('hello')}).listen(+process.argv[1],'0.0.0.0',()=>console.log('ready'))`;
/** Prints `connected`, `timeout` or the error code, and always exits 0. */
export const CONNECT_SCRIPT = `const s=require('net').connect(+process.argv[2],process.argv[1]);
s.setTimeout(1500,()=>{console.log('timeout');process.exit(0)});s.on('connect',()=>{console.log('connected');s.destroy()});s.on('error',e=>{console.log(e.code);process.exit(0)})`;

/** Runs node with `script` inside the named namespace (or this one) and returns its trimmed stdout. */
export function nodeIn(netns: string | undefined, script: string, args: string[]): Promise<string> {
  const command = [process.execPath, '-e', script, ...args];
  const [file, ...rest] = netns
    ? ['nsenter', `--net=/run/netns/${netns}`, '--', ...command]
    : command;
  return run(file, rest).then((out) => out.trim());
}

/** Starts a server with `script` in a namespace; resolves with the process once it prints. */
export function serveIn(netns: string, script: string, args: string[]): Promise<ChildProcess> {
  const command = ['--net=/run/netns/' + netns, '--', process.execPath, '-e', script, ...args];
  const child = spawn('nsenter', command, { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    child.stdout!.once('data', () => resolve(child));
    child.once('exit', (code) => reject(new Error(`server in ${netns} exited ${code}`)));
  });
}

/**
 * Makes the outside namespace linked to `nodeNetns` by a veth with a /30 of
 * TEST-NET-2 (198.51.100.0/30), puts `addresses` on its loopback, and routes
 * each from `nodeNetns` to it.
 */
export async function createOutside(nodeNetns: string, addresses: string[]): Promise<Outside> {
  const tag = randomBytes(3).toString('hex');
  // Never all digits after the last dash, so no node tag's leftover pattern matches it.
  const name = `petri-out-x${tag}`;
  const nodeLink = `po${tag}n`;
  const nodeAddress = '198.51.100.1';
  const linkAddress = '198.51.100.2';
  const servers: ChildProcess[] = [];
  let closed: Promise<void> | undefined;
  const close = (): Promise<void> => {
    for (const server of servers) server.kill('SIGKILL');
    // The namespace takes its veth end, and with it the node's end.
    closed ??= run('ip', ['netns', 'del', name]).then(
      () => undefined,
      () => undefined,
    );
    return closed;
  };
  const batch = (lines: string[], netns: string): Promise<string> =>
    run('ip', ['-n', netns, '-batch', '-'], lines.join('\n') + '\n');
  try {
    await run('ip', ['netns', 'add', name]);
    await batch(
      [
        `link add ${nodeLink} type veth peer name eth0 netns ${name}`,
        `addr add ${nodeAddress}/30 dev ${nodeLink}`,
        `link set ${nodeLink} up`,
      ],
      nodeNetns,
    );
    await batch(
      [
        'link set lo up',
        `addr add ${linkAddress}/30 dev eth0`,
        'link set eth0 up',
        ...addresses.map((address) => `addr add ${address}/32 dev lo`),
        // The way back: into the node's namespace (and the bridge behind it).
        `route add default via ${nodeAddress}`,
      ],
      name,
    );
    await batch(
      addresses.map((address) => `route add ${address}/32 via ${linkAddress} dev ${nodeLink}`),
      nodeNetns,
    );
  } catch (error) {
    await close();
    throw error;
  }
  return {
    name,
    nodeAddress,
    linkAddress,
    serve: async (port) => {
      servers.push(await serveIn(name, SERVE_SCRIPT, [String(port)]));
    },
    connect: (host, port) => nodeIn(name, CONNECT_SCRIPT, [host, String(port)]),
    close,
  };
}
