import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { spawnDaemon, type Daemon } from '../harness/index.ts';
import { runCommand as sh } from '../net/index.ts';
import { table } from '../report/index.ts';
import { benchArgs, machineFacts, ratio, summarize, writeJson, type Summary } from './common.ts';

/**
 * `npm run bench -- net --f2f`: Boxer's function-to-function figures
 * (Short-lived Datacenters, Tables 1–3) between two members of a Petri group,
 * with shaping off and on, beside a native baseline of two plain network
 * namespaces joined by a veth pair. Each side runs the same probe
 * (net-functions/f2f/probe.mjs), and each figure is measured inside the
 * sender, so both sides are timed to the same event:
 *
 *  (a) TCP throughput member to member, forward and reverse (iperf3);
 *  (b) round trip of a 1 KB message, Nagle off (128 ping-pongs a measurement);
 *  (c) time to first byte: connect, the server sends 1 byte on accept.
 *
 * Rounds alternate native, off, on. Part (d) (aggregate receive from N
 * senders) and §7's load adaptation are not built.
 */

const PROBE_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), 'net-functions/f2f');
const ASK_SCRIPT = `const s=require('net').connect(7000,process.argv[1]);let b='';
s.setTimeout(120000,()=>{console.log(JSON.stringify({error:'timeout'}));process.exit(0)});
s.on('connect',()=>s.write(process.argv[2]+'\\n'));s.on('data',d=>b+=d);s.on('end',()=>console.log(b.trim()||'{}'));
s.on('error',e=>{console.log(JSON.stringify({error:e.code}));process.exit(0)})`;

type SideName = 'native' | 'off' | 'on';

/** Where a probe's control port is reached from, and the peer it measures towards. */
interface Side {
  name: SideName;
  netns: string;
  sender: string;
  receiver: string;
  close(): Promise<void>;
}

interface Samples {
  forwardMbit: number[];
  reverseMbit: number[];
  rttUs: number[];
  ttfbMs: number[];
}

function progress(message: string): void {
  process.stderr.write(`[bench net --f2f] ${message}\n`);
}

async function ask(netns: string, host: string, line: string): Promise<Record<string, unknown>> {
  const out = await sh('nsenter', [
    `--net=/run/netns/${netns}`,
    '--',
    process.execPath,
    '-e',
    ASK_SCRIPT,
    host,
    line,
  ]);
  const answer = JSON.parse(out.trim()) as Record<string, unknown>;
  if (answer.error !== undefined)
    throw new Error(`probe at ${host}: ${JSON.stringify(answer.error)}`);
  return answer;
}

async function waitForProbe(netns: string, host: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      await ask(netns, host, 'ping');
      return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
}

/** Two namespaces joined by a veth pair, a probe in each (as root: it is our own code). */
async function nativeSide(): Promise<Side> {
  const tag = randomBytes(3).toString('hex');
  const [a, b] = [`petri-f2f-x${tag}a`, `petri-f2f-x${tag}b`];
  const [addressA, addressB] = ['10.250.77.1', '10.250.77.2'];
  const probes: ChildProcess[] = [];
  const close = async (): Promise<void> => {
    for (const probe of probes) if (probe.pid) process.kill(-probe.pid, 'SIGKILL');
    await sh('ip', ['netns', 'del', a]).catch(() => undefined);
    await sh('ip', ['netns', 'del', b]).catch(() => undefined);
  };
  try {
    const lines = [
      `netns add ${a}`,
      `netns add ${b}`,
      `link add f2f${tag}a netns ${a} type veth peer name f2f${tag}b netns ${b}`,
    ];
    await sh('ip', ['-batch', '-'], lines.join('\n') + '\n');
    for (const [ns, dev, address] of [
      [a, `f2f${tag}a`, addressA],
      [b, `f2f${tag}b`, addressB],
    ]) {
      const inner = ['link set lo up', `addr add ${address}/30 dev ${dev}`, `link set ${dev} up`];
      await sh('ip', ['-n', ns, '-batch', '-'], inner.join('\n') + '\n');
      const probe = spawn(
        'nsenter',
        [`--net=/run/netns/${ns}`, '--', process.execPath, path.join(PROBE_DIR, 'probe.mjs')],
        {
          stdio: 'ignore',
          detached: true, // its own process group, so its iperf3 goes with it
        },
      );
      probes.push(probe);
    }
    await waitForProbe(a, addressA);
    await waitForProbe(b, addressB);
  } catch (err) {
    await close();
    throw err;
  }
  return { name: 'native', netns: a, sender: addressA, receiver: addressB, close };
}

/** A daemon (in its own test namespace) running a two-member group of the probe. */
async function petriSide(name: 'off' | 'on', memoryMb: number): Promise<Side> {
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), `petri-bench-f2f-${name}-`));
  const configFile = path.join(workDir, 'config.json');
  const config = name === 'off' ? { isolation: { shaping: 'off' } } : {};
  fs.writeFileSync(configFile, JSON.stringify(config));
  let daemon: Daemon | undefined;
  const close = async (): Promise<void> => {
    await daemon?.close();
    fs.rmSync(workDir, { recursive: true, force: true });
  };
  try {
    daemon = await spawnDaemon({
      stateDir: path.join(workDir, 'state'),
      configFile,
      allowSourcePaths: [PROBE_DIR],
    });
    const call = async (method: 'PUT' | 'POST', url: string, body: unknown) => {
      const response = await request(daemon!.url + url, {
        method,
        body: JSON.stringify(body),
        headers: { ...daemon!.headers, 'content-type': 'application/json' },
      });
      const text = await response.body.text();
      if (response.statusCode >= 300) throw new Error(`${method} ${url}: ${text}`);
      return JSON.parse(text) as { members: { address: string }[] };
    };
    const spec = JSON.parse(fs.readFileSync(path.join(PROBE_DIR, 'petri.json'), 'utf8')) as object;
    await call('PUT', '/v1/functions/f2f', { ...spec, memoryMb, source: { path: PROBE_DIR } });
    const group = await call('POST', '/v1/groups', {
      function: 'f2f',
      size: 2,
      barrier: 2,
      name: 'f2f',
    });
    const [sender, receiver] = group.members.map((m) => m.address);
    const netns = daemon.testbed!.name;
    await waitForProbe(netns, sender);
    await waitForProbe(netns, receiver);
    return { name, netns, sender, receiver, close };
  } catch (err) {
    await close();
    throw err;
  }
}

async function measure(
  side: Side,
  samples: Samples,
  options: { seconds: number; measurements: number; connects: number },
): Promise<void> {
  const { netns, sender, receiver } = side;
  for (const [reverse, into] of [
    ['0', samples.forwardMbit],
    ['1', samples.reverseMbit],
  ] as const) {
    const { mbit } = (await ask(
      netns,
      sender,
      `iperf ${receiver} ${options.seconds} ${reverse}`,
    )) as { mbit: number };
    into.push(mbit);
  }
  samples.rttUs.push(
    ...((await ask(netns, sender, `rtt ${receiver} ${options.measurements}`)).us as number[]),
  );
  samples.ttfbMs.push(
    ...((await ask(netns, sender, `ttfb ${receiver} ${options.connects}`)).ms as number[]),
  );
}

interface SideResult {
  side: SideName;
  forwardMbit: Summary;
  reverseMbit: Summary;
  rttUs: Summary;
  ttfbMs: Summary;
}

export async function run(argv: string[]): Promise<void> {
  const args = benchArgs(argv, {
    modes: { type: 'string', default: 'off,on' },
    rounds: { type: 'string', default: '3' },
    seconds: { type: 'string', default: '3' },
    measurements: { type: 'string', default: '50' },
    connects: { type: 'string', default: '100' },
    memory: { type: 'string', default: '1769' },
  });
  const modes = String(args.modes)
    .split(',')
    .map((m) => m.trim());
  if (modes.some((m) => m !== 'on' && m !== 'off')) throw new Error('--modes takes off,on');
  const memoryMb = Number(args.memory);
  const options = {
    seconds: Number(args.seconds),
    measurements: Number(args.measurements),
    connects: Number(args.connects),
  };
  const rounds = Number(args.rounds);
  const sides: Side[] = [];
  const started = performance.now();
  try {
    progress('native baseline: two namespaces and a veth pair');
    sides.push(await nativeSide());
    for (const mode of modes as ('off' | 'on')[]) {
      progress(`petri, shaping ${mode}: a daemon and a group of two ${memoryMb} MB members`);
      sides.push(await petriSide(mode, memoryMb));
    }
    const samples = new Map<SideName, Samples>(
      sides.map((s) => [s.name, { forwardMbit: [], reverseMbit: [], rttUs: [], ttfbMs: [] }]),
    );
    for (let round = 1; round <= rounds; round++) {
      for (const side of sides) {
        progress(`round ${round}/${rounds}: ${side.name}`);
        await measure(side, samples.get(side.name)!, options);
      }
    }
    const results: SideResult[] = sides.map((side) => {
      const s = samples.get(side.name)!;
      return {
        side: side.name,
        forwardMbit: summarize(s.forwardMbit),
        reverseMbit: summarize(s.reverseMbit),
        rttUs: summarize(s.rttUs),
        ttfbMs: summarize(s.ttfbMs),
      };
    });
    report(results, memoryMb);
    await writeJson(args.json, {
      benchmark: 'net --f2f',
      machine: machineFacts(),
      settings: { ...options, rounds, memoryMb, modes },
      results,
      ratios: ratios(results),
      allocationMbit: allocationMbit(memoryMb),
      elapsedS: Math.round((performance.now() - started) / 1000),
    });
  } finally {
    await Promise.all(sides.map((side) => side.close()));
  }
}

/** Petri's bandwidth rule (config resources): memoryMb / 1769 × 600 Mbit/s. */
function allocationMbit(memoryMb: number): number {
  return (memoryMb / 1769) * 600;
}

function ratios(results: SideResult[]): Record<string, Record<string, number>> {
  const native = results.find((r) => r.side === 'native')!;
  const out: Record<string, Record<string, number>> = {};
  for (const r of results) {
    if (r.side === 'native') continue;
    out[r.side] = {
      forwardMbit: ratio(r.forwardMbit.p50, native.forwardMbit.p50),
      reverseMbit: ratio(r.reverseMbit.p50, native.reverseMbit.p50),
      rttMean: ratio(r.rttUs.mean, native.rttUs.mean),
      rttP50: ratio(r.rttUs.p50, native.rttUs.p50),
      rttP99: ratio(r.rttUs.p99, native.rttUs.p99),
      ttfbMean: ratio(r.ttfbMs.mean, native.ttfbMs.mean),
      ttfbP50: ratio(r.ttfbMs.p50, native.ttfbMs.p50),
    };
  }
  return out;
}

function report(results: SideResult[], memoryMb: number): void {
  const f = (n: number, digits = 1): string => n.toFixed(digits);
  console.log(
    table(
      [
        'side',
        'fwd Mbit/s',
        'rev Mbit/s',
        'RTT mean µs',
        'RTT p50',
        'RTT p99',
        'TTFB mean ms',
        'TTFB p50',
        'TTFB p99',
      ],
      results.map((r) => [
        r.side,
        f(r.forwardMbit.p50, 0),
        f(r.reverseMbit.p50, 0),
        f(r.rttUs.mean),
        f(r.rttUs.p50),
        f(r.rttUs.p99),
        f(r.ttfbMs.mean, 3),
        f(r.ttfbMs.p50, 3),
        f(r.ttfbMs.p99, 3),
      ]),
    ),
  );
  const all = ratios(results);
  const allocation = allocationMbit(memoryMb);
  for (const [side, r] of Object.entries(all)) {
    const result = results.find((x) => x.side === side)!;
    const checks =
      side === 'off'
        ? [
            `throughput ${r.forwardMbit}× / ${r.reverseMbit}× native (target ≥ 0.95)`,
            `RTT ${r.rttMean}× native (target ≤ 1.1)`,
            `TTFB ${r.ttfbMean}× native (target ≤ 1.2)`,
          ]
        : [
            `forward ${ratio(result.forwardMbit.p50, allocation)}×, reverse ${ratio(result.reverseMbit.p50, allocation)}× the ${f(allocation, 0)} Mbit/s allocation (target within 5 %)`,
          ];
    console.log(`shaping ${side}: ${checks.join('; ')}`);
  }
}
