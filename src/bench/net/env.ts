import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { spawnDaemon, type Daemon } from '../../harness/index.ts';
import { parseConfig } from '../../config.ts';
import {
  AddressAllocator,
  listNetns,
  nodeTagFrom,
  startIperfServer,
  type IperfServer,
} from '../../net/index.ts';
import { runCommand } from '../../net/index.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const FUNCTIONS = path.resolve(HERE, '../net-functions');
const REPO = path.resolve(HERE, '../../..');

export type Mode = 'on' | 'off';

/** The gateway (bridge) address of the default subnet: where the servers listen. */
export const GATEWAY = new AddressAllocator(parseConfig({}).network.subnet).gateway;
export const BUCKET = 'petri-bench';
export const IPERF_BASE_PORT = 5201;
export const S3_PORT = 9000;
/** `ip` arguments that set bridge-nf-call-iptables inside `netns` (a per-namespace sysctl). */
const BRIDGE_NF_CALL = (netns: string, value: 0 | 1): string[] => [
  ...['netns', 'exec', netns, 'sysctl', '-qw'],
  `net.bridge.bridge-nf-call-iptables=${value}`,
];
/** The IFB that carries uploads through the emulated link (inside the test namespace). */
const LINK_IFB = 'pbenchlink';

export interface LinkBytes {
  up: number;
  down: number;
}

export interface EnvOptions {
  mode: Mode;
  /** iperf3 servers to start (one per concurrent client). */
  iperfServers: number;
  /** Objects to seed in the S3 server (0: no S3 server). */
  s3Objects: number;
  objectBytes: number;
  log: (message: string) => void;
  /** More node config (e.g. the microtask benchmark's scheduler and resources). */
  config?: Record<string, unknown>;
}

/**
 * One isolation mode's world: a daemon in its own test namespace, iperf3
 * servers and s3rver on the bridge's gateway inside that namespace. Every
 * address used lives inside namespaces made here (DESIGN §10 safety rule).
 */
export class NetEnv {
  readonly gateway = GATEWAY;
  readonly s3Endpoint = `http://${GATEWAY}:${S3_PORT}`;
  mechanisms: string[] = [];
  private daemon: Daemon | undefined;
  private readonly servers: IperfServer[] = [];
  private s3rver: ChildProcess | undefined;
  private readonly workDir: string;
  private readonly stateDir: string;
  private closing: Promise<void> | undefined;

  constructor(readonly options: EnvOptions) {
    this.workDir = fs.mkdtempSync(path.join(os.tmpdir(), `petri-bench-net-${options.mode}-`));
    this.stateDir = path.join(this.workDir, 'state');
  }

  get url(): string {
    if (!this.daemon) throw new Error('daemon not started');
    return this.daemon.url;
  }

  private get auth(): { authorization: string } {
    if (!this.daemon) throw new Error('daemon not started');
    return this.daemon.headers;
  }

  async start(): Promise<void> {
    const { mode, log } = this.options;
    const configFile = path.join(this.workDir, 'config.json');
    // Off = no shaping, as on AWS Lambda; CPU and memory limits stay on in both modes.
    const config = {
      ...(mode === 'off' ? { isolation: { shaping: 'off' } } : {}),
      queue: { maxWaitMs: 600_000 },
      network: { egressAllow: this.serverPorts().map((port) => ({ address: GATEWAY, port })) },
      ...this.options.config,
    };
    fs.writeFileSync(configFile, JSON.stringify(config));
    this.daemon = await spawnDaemon({ stateDir: this.stateDir, configFile });
    const testbed = this.daemon.testbed;
    if (!testbed) throw new Error('the daemon did not get a test namespace');
    log(`isolation ${mode}: daemon ${this.daemon.url} in namespace ${testbed.name}`);
    await this.waitForBridge(testbed.name);
    const node = (await this.get('/v1/node')) as {
      isolation: { mechanisms: { name: string; active: boolean }[] };
    };
    this.mechanisms = node.isolation.mechanisms.filter((m) => m.active).map((m) => m.name);
    for (let i = 0; i < this.options.iperfServers; i++) {
      this.servers.push(
        await startIperfServer({
          address: GATEWAY,
          port: IPERF_BASE_PORT + i,
          netns: testbed.name,
        }),
      );
    }
    if (this.options.s3Objects > 0) await this.startS3rver(testbed.nsenterArgs());
  }

  /**
   * The servers' ports on the gateway. The node's firewall keeps instances
   * from the node's own addresses, so the config allow-lists exactly these
   * for functions with egress (which every function here has).
   */
  private serverPorts(): number[] {
    const iperf = Array.from({ length: this.options.iperfServers }, (_, i) => IPERF_BASE_PORT + i);
    return this.options.s3Objects > 0 ? [...iperf, S3_PORT] : iperf;
  }

  private async waitForBridge(netns: string): Promise<void> {
    for (let i = 0; i < 200; i++) {
      const out = await runCommand('ip', ['-n', netns, '-4', 'addr', 'show']).catch(() => '');
      if (out.includes(`inet ${GATEWAY}/`)) return;
      await sleep(50);
    }
    throw new Error(`bridge with ${GATEWAY} did not appear in ${netns}`);
  }

  private async startS3rver(nsenter: string[]): Promise<void> {
    const dir = path.join(this.workDir, 's3');
    fs.mkdirSync(dir);
    const script = path.join(FUNCTIONS, 's3rver.ts');
    const args = [GATEWAY, String(S3_PORT), dir, BUCKET];
    args.push(String(this.options.s3Objects), String(this.options.objectBytes));
    const command = [...nsenter, process.execPath, '--import', 'tsx', script, ...args];
    const child = spawn(command[0], command.slice(1), {
      cwd: REPO,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.s3rver = child;
    let output = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`s3rver did not start:\n${output}`)),
        120_000,
      );
      child.stdout!.setEncoding('utf8').on('data', (text: string) => {
        output += text;
        if (output.includes('ready')) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.stderr!.setEncoding('utf8').on('data', (text: string) => (output += text));
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`s3rver exited with ${code}:\n${output}`));
      });
    });
    this.options.log(
      `s3rver on ${this.s3Endpoint}, ${this.options.s3Objects} × ${this.options.objectBytes} B seeded`,
    );
  }

  /** GET a route of the daemon's API as JSON. */
  async get(route: string): Promise<unknown> {
    const response = await request(`${this.url}${route}`, { headers: this.auth });
    return response.body.json();
  }

  /**
   * Emulates the node's network link (its NIC) as a TBF on the bridge, both
   * directions: downloads leave the gateway through the bridge's root qdisc;
   * uploads enter through its ingress, redirected to an IFB with a TBF.
   * Every function's traffic to the servers on the gateway then shares one
   * link of `mbit`, as co-located Lambda functions share their host's NIC.
   * Only inside this env's test namespace; `unlimitLink` removes it.
   */
  async limitLink(mbit: number): Promise<void> {
    const netns = this.testbedName();
    const bridge = parseConfig({}).network.bridge;
    // A bucket of at least 2 ms at the rate (and 256 KB), as for the instances' TBFs.
    const burst = Math.max(256 * 1024, Math.round((mbit * 1e6) / 8 / 500));
    const tbf = `tbf rate ${Math.round(mbit * 1000)}kbit burst ${burst} latency 50ms`;
    // With br_netfilter on, a packet bridged up to the node and then redirected
    // through the bridge's own ingress IFB reaches INPUT as conntrack INVALID, so
    // the node's firewall (which passes replies by conntrack state) would drop
    // the servers' traffic. The node needs no bridged iptables (its ports are
    // isolated at layer 2): switch it off in this test namespace only.
    await runCommand('ip', BRIDGE_NF_CALL(netns, 0)).catch(() => undefined);
    await runCommand('ip', ['-n', netns, 'link', 'add', LINK_IFB, 'type', 'ifb']);
    await runCommand('ip', ['-n', netns, 'link', 'set', LINK_IFB, 'up']);
    const lines = [
      `qdisc add dev ${bridge} root handle 1: ${tbf}`,
      `qdisc add dev ${bridge} handle ffff: ingress`,
      `filter add dev ${bridge} parent ffff: protocol all prio 1 u32 match u32 0 0 action mirred egress redirect dev ${LINK_IFB}`,
      `qdisc add dev ${LINK_IFB} root handle 1: ${tbf}`,
    ];
    await runCommand('tc', ['-n', netns, '-batch', '-'], lines.join('\n') + '\n');
  }

  /** Bytes the emulated link has carried so far, per direction (its TBFs' counters). */
  async linkBytes(): Promise<LinkBytes> {
    const netns = this.testbedName();
    const bridge = parseConfig({}).network.bridge;
    const sent = async (dev: string): Promise<number> => {
      const out = await runCommand('tc', ['-n', netns, '-s', '-j', 'qdisc', 'show', 'dev', dev]);
      const qdiscs = JSON.parse(out) as { root?: boolean; bytes?: number }[];
      return qdiscs.find((q) => q.root)?.bytes ?? 0;
    };
    const [down, up] = await Promise.all([sent(bridge), sent(LINK_IFB)]);
    return { down, up };
  }

  async unlimitLink(): Promise<void> {
    const netns = this.testbedName();
    const bridge = parseConfig({}).network.bridge;
    for (const args of [
      ['tc', '-n', netns, 'qdisc', 'del', 'dev', bridge, 'root'],
      ['tc', '-n', netns, 'qdisc', 'del', 'dev', bridge, 'ingress'],
      ['ip', '-n', netns, 'link', 'del', LINK_IFB],
      ['ip', ...BRIDGE_NF_CALL(netns, 1)],
    ]) {
      await runCommand(args[0], args.slice(1)).catch(() => undefined);
    }
  }

  private testbedName(): string {
    const name = this.daemon?.testbed?.name;
    if (!name) throw new Error('daemon not started');
    return name;
  }

  /** PUT /v1/functions/{name} from a folder under src/bench/net-functions. */
  async deploy(name: string, folder: string, spec: Record<string, unknown>): Promise<void> {
    const response = await request(`${this.url}/v1/functions/${name}`, {
      method: 'PUT',
      headers: { ...this.auth, 'content-type': 'application/json' },
      body: JSON.stringify({
        runtime: 'node',
        handler: 'index.handler',
        keepAlive: { ms: 600_000 },
        // Egress, so the allow-listed servers on the gateway are reachable.
        network: { egress: true },
        ...spec,
        source: { path: path.isAbsolute(folder) ? folder : path.join(FUNCTIONS, folder) },
      }),
    });
    const text = await response.body.text();
    if (response.statusCode >= 300) throw new Error(`deploy ${name} failed: ${text}`);
  }

  async remove(name: string): Promise<void> {
    const response = await request(`${this.url}/v1/functions/${name}`, {
      method: 'DELETE',
      headers: this.auth,
    });
    await response.body.text();
  }

  /** Synchronous invoke; throws with the error body unless 200. */
  async invoke<T>(name: string, event: unknown): Promise<T> {
    return (await this.invokeWithId<T>(name, event)).value;
  }

  /** Synchronous invoke that also returns the invocation's id (x-petri-invocation-id). */
  async invokeWithId<T>(name: string, event: unknown): Promise<{ id: string; value: T }> {
    const response = await request(`${this.url}/v1/functions/${name}/invoke`, {
      method: 'POST',
      headers: { ...this.auth, 'content-type': 'application/json' },
      body: JSON.stringify(event),
      headersTimeout: 0,
      bodyTimeout: 0,
    });
    const text = await response.body.text();
    if (response.statusCode !== 200) {
      throw new Error(`invoke ${name} answered ${response.statusCode}: ${text.slice(0, 500)}`);
    }
    const id = String(response.headers['x-petri-invocation-id'] ?? '');
    return { id, value: JSON.parse(text) as T };
  }

  /** Stops everything started here and removes every namespace; safe to call twice. */
  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    this.s3rver?.kill('SIGKILL');
    await Promise.all(this.servers.map((server) => server.stop().catch(() => undefined)));
    await this.daemon?.close().catch(() => undefined);
    // A daemon that died uncleanly may leave instance namespaces (their files are global).
    const tag = nodeTagFrom(this.stateDir);
    const pattern = new RegExp(`^petri-${tag}-\\d+$`);
    for (const name of (await listNetns().catch(() => [])).filter((n) => pattern.test(n))) {
      await runCommand('ip', ['netns', 'del', name]).catch(() => undefined);
    }
    fs.rmSync(this.workDir, { recursive: true, force: true });
  }
}
