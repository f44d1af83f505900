import { table } from '../report/index.ts';
import { benchArgs, machineFacts, ratio, summarize, writeJson, type Summary } from './common.ts';
import {
  IperfAnswer,
  MAX_SENDERS,
  RttAnswer,
  TtfbAnswer,
  ask,
  describeLimits,
  rateOver,
  sharedWindow,
  traceRx,
  fanIn,
  nativeStar,
  petriNode,
  writeF2fCharts,
  type CpuLimits,
  type FanSample,
  type FanSender,
  type NativeStar,
  type PetriNode,
} from './f2f/index.ts';

/**
 * `npm run bench -- net --f2f`: Boxer's function-to-function figures
 * (Short-lived Datacenters, Tables 1–3) between members of a Petri group,
 * with shaping off and on, beside a native baseline of plain network
 * namespaces joined by veth pairs. Each side runs the same probe
 * (net-functions/f2f/probe.mjs), and each figure is measured inside the
 * sender, so both sides are timed to the same event:
 *
 *  (a) TCP throughput member to member, forward and reverse (iperf3);
 *  (b) round trip of a 1 KB message, Nagle off (128 ping-pongs a measurement);
 *  (c) time to first byte: connect, the server sends 1 byte on accept;
 *  (d) aggregate receive throughput at one member from N senders.
 *
 * Throughput is also counted by the bench at the receiving end's interfaces
 * (f2f/counter.ts), independently of the probe; (d) takes its aggregate from
 * there. The allocation is a wire rate (DESIGN §9: the TBF rate, which counts
 * each segment's frame), so the shaped targets hold the received TCP payload
 * against what that wire rate carries: allocation × 1448/1514 (FRAME_PAYLOAD).
 *
 * The native namespaces get the CPU limits (quota, cpuset) of the members
 * they stand for (`--native-cpu mirror`, f2f/cpu.ts), so both sides differ
 * only in the network path. Each round runs one figure on every side before
 * the next figure, in the order native, off, on, reversed every other round
 * (so drift hits every side alike). §7's load
 * adaptation is its own benchmark (net/adapt.ts, `--f2f --adapt`).
 * `--direct-path off` keeps unshaped members on the routed path (config
 * `groups.directPath`), to compare it with the direct one.
 */

type SideName = 'native' | 'off' | 'on';

/** Where a probe's control port is reached from, and the peer it measures towards. */
interface Side {
  name: SideName;
  netns: string;
  sender: string;
  receiver: string;
  /** The two ends' own namespaces, where their received bytes are counted. */
  senderNetns: string;
  receiverNetns: string;
}

interface Samples {
  forwardMbit: number[];
  reverseMbit: number[];
  /** The same runs counted at the receiving end's interfaces (≈ payload, see counter.ts). */
  forwardRxMbit: number[];
  reverseRxMbit: number[];
  rttUs: number[];
  ttfbMs: number[];
}

function progress(message: string): void {
  process.stderr.write(`[bench net --f2f] ${message}\n`);
}

type Kind = 'forward' | 'reverse' | 'rtt' | 'ttfb';
const KINDS: readonly Kind[] = ['forward', 'reverse', 'rtt', 'ttfb'];

/** One figure of one side (a round runs each kind on every side before the next kind). */
async function measure(
  side: Side,
  samples: Samples,
  kind: Kind,
  options: { seconds: number; measurements: number; connects: number },
): Promise<void> {
  const { netns, sender, receiver } = side;
  if (kind === 'rtt') {
    const rtt = await ask(netns, sender, `rtt ${receiver} ${options.measurements}`, RttAnswer);
    samples.rttUs.push(...rtt.us);
    return;
  }
  if (kind === 'ttfb') {
    const ttfb = await ask(netns, sender, `ttfb ${receiver} ${options.connects}`, TtfbAnswer);
    samples.ttfbMs.push(...ttfb.ms);
    return;
  }
  const forward = kind === 'forward';
  const into = forward ? samples.forwardMbit : samples.reverseMbit;
  const received = forward ? samples.forwardRxMbit : samples.reverseRxMbit;
  const line = `iperf ${receiver} ${options.seconds} ${forward ? '0' : '1'}`;
  const trace = await traceRx(forward ? side.receiverNetns : side.senderNetns);
  const answer = await ask(netns, sender, line, IperfAnswer).finally(() => trace.stop());
  into.push(answer.mbit);
  const window =
    answer.startedAt !== undefined && answer.endedAt !== undefined
      ? sharedWindow([{ startedAt: answer.startedAt, endedAt: answer.endedAt }])
      : undefined;
  const rate = window && rateOver(trace.stop(), window);
  if (rate !== undefined) received.push(rate);
  else
    progress(
      `${side.name}: no receiver-side figure for this run (${window ? "the counter's samples do not cover the senders' window" : 'the probe gave no shared window'})`,
    );
}

/** Even rounds run the sides in reverse, so a drift over a round hits every side alike. */
function roundOrder<T>(items: readonly T[], round: number): T[] {
  return round % 2 === 1 ? [...items] : [...items].reverse();
}

interface SideResult {
  side: SideName;
  forwardMbit: Summary;
  reverseMbit: Summary;
  forwardRxMbit: Summary;
  reverseRxMbit: Summary;
  rttUs: Summary;
  ttfbMs: Summary;
}

type Mode = 'off' | 'on';

interface FanRow {
  side: SideName;
  n: number;
  /** Median over rounds of what the receiver took in over the senders' shared window. */
  aggregateMbit: number;
  samples: FanSample[];
  /** aggregate ÷ native's at the same N */
  ratioToNative?: number;
  /** Shaped: aggregate ÷ the receiver's download allocation. */
  ratioToAllocation?: number;
  /** Shaped: aggregate ÷ the TCP payload the allocation's wire rate carries (the target). */
  ratioToPayloadRate?: number;
}

function parseList(text: string, what: string): number[] {
  if (text.trim() === '') return [];
  const list = text.split(',').map((v) => Number(v.trim()));
  if (list.some((n) => !Number.isInteger(n) || n < 1 || n > MAX_SENDERS))
    throw new Error(`${what} takes integers 1..${MAX_SENDERS}`);
  return list;
}

/** (d): each Petri node swaps its pair for a group of max(N) + 1 members; the native side a star. */
async function fanPart(
  nodes: PetriNode[],
  counts: number[],
  opts: { memoryMb: number; rounds: number; seconds: number; mirror: boolean },
  cleanups: (() => Promise<void>)[],
): Promise<{ rows: FanRow[]; cpu: Record<string, CpuLimits[]> }> {
  const most = Math.max(...counts);
  const sideSenders = new Map<SideName, FanSender[]>();
  const receivers = new Map<SideName, string>();
  const cpu: Record<string, CpuLimits[]> = {};
  for (const node of nodes) {
    await node.removeGroup('f2f');
    progress(`(d) shaping ${node.mode}: a group of ${most + 1} members of ${opts.memoryMb} MB`);
    const [receiver, ...senders] = await node.startGroup('f2f-fan', most + 1, opts.memoryMb);
    receivers.set(node.mode, await node.memberNetns(receiver));
    sideSenders.set(
      node.mode,
      senders.map((address) => ({ netns: node.netns, address, receiverAddress: receiver })),
    );
    cpu[node.mode] = await node.cpuLimits([receiver, ...senders]);
  }
  progress(`(d) native: a receiver namespace and ${most} senders, each on its own veth pair`);
  const star = await nativeStar(most);
  cleanups.push(() => star.close());
  if (opts.mirror) await star.limitCpu(cpu[nodes[0].mode]);
  sideSenders.set('native', star.senders);
  receivers.set('native', star.receiver.netns);
  const order: SideName[] = ['native', ...nodes.map((n) => n.mode)];
  const samples = new Map<string, FanSample[]>();
  for (let round = 1; round <= opts.rounds; round++) {
    for (const n of counts) {
      for (const side of roundOrder(order, round)) {
        progress(`(d) round ${round}/${opts.rounds}: N=${n} ${side}`);
        const sample = await fanIn(sideSenders.get(side)!, n, opts.seconds, receivers.get(side)!);
        const key = `${side} ${n}`;
        samples.set(key, [...(samples.get(key) ?? []), sample]);
      }
    }
  }
  const rows: FanRow[] = [];
  for (const n of counts) {
    for (const side of order) {
      const list = samples.get(`${side} ${n}`)!;
      rows.push({
        side,
        n,
        aggregateMbit: medianOfFinite(list.map((x) => x.aggregateMbit)),
        samples: list,
      });
    }
  }
  for (const row of rows) {
    const native = rows.find((r) => r.side === 'native' && r.n === row.n)!;
    if (row.side !== 'native') row.ratioToNative = ratio(row.aggregateMbit, native.aggregateMbit);
    if (row.side === 'on') {
      row.ratioToAllocation = ratio(row.aggregateMbit, allocationMbit(opts.memoryMb));
      row.ratioToPayloadRate = ratio(row.aggregateMbit, payloadRateMbit(opts.memoryMb));
    }
  }
  return { rows, cpu };
}

export async function run(argv: string[]): Promise<void> {
  const args = benchArgs(argv, {
    modes: { type: 'string', default: 'off,on' },
    rounds: { type: 'string', default: '3' },
    seconds: { type: 'string', default: '3' },
    measurements: { type: 'string', default: '50' },
    connects: { type: 'string', default: '100' },
    memory: { type: 'string', default: '1769' },
    senders: { type: 'string', default: '1,2,4,8,16' },
    'fan-memory': { type: 'string', default: '1024' },
    'fan-rounds': { type: 'string', default: '2' },
    'native-cpu': { type: 'string', default: 'mirror' },
    'direct-path': { type: 'string', default: 'on' },
    plots: { type: 'string' },
  });
  const modes = String(args.modes)
    .split(',')
    .map((m) => m.trim());
  if (modes.length === 0 || modes.some((m) => m !== 'on' && m !== 'off'))
    throw new Error('--modes takes off,on');
  const nativeCpu = String(args['native-cpu']);
  if (nativeCpu !== 'mirror' && nativeCpu !== 'free')
    throw new Error('--native-cpu takes mirror|free');
  const directPath = String(args['direct-path']);
  if (directPath !== 'on' && directPath !== 'off') throw new Error('--direct-path takes on|off');
  const counts = parseList(String(args.senders), '--senders');
  const memoryMb = Number(args.memory);
  const fanMemoryMb = Number(args['fan-memory']);
  const options = {
    seconds: Number(args.seconds),
    measurements: Number(args.measurements),
    connects: Number(args.connects),
  };
  const rounds = Number(args.rounds);
  const cleanups: (() => Promise<void>)[] = [];
  const started = performance.now();
  try {
    const nodes: PetriNode[] = [];
    const sides: Side[] = [];
    const cpu: Record<string, CpuLimits[]> = {};
    const placement: Record<string, unknown> = {};
    for (const mode of modes as Mode[]) {
      progress(`petri, shaping ${mode}: a daemon and a group of two ${memoryMb} MB members`);
      const node = await petriNode(mode, directPath === 'on');
      cleanups.push(() => node.close());
      nodes.push(node);
      const [sender, receiver] = await node.startGroup('f2f', 2, memoryMb);
      sides.push({
        name: mode,
        netns: node.netns,
        sender,
        receiver,
        senderNetns: await node.memberNetns(sender),
        receiverNetns: await node.memberNetns(receiver),
      });
      cpu[mode] = await node.cpuLimits([sender, receiver]);
      placement[mode] = await node.placement();
      progress(`  members: ${cpu[mode].map(describeLimits).join('; ')}`);
      progress(`  placement: ${JSON.stringify(placement[mode])}`);
    }
    progress('native baseline: two namespaces and a veth pair');
    const pair: NativeStar = await nativeStar(1);
    cleanups.push(() => pair.close());
    if (nativeCpu === 'mirror') await pair.limitCpu([cpu[modes[0]][1], cpu[modes[0]][0]]);
    const [link] = pair.senders;
    sides.unshift({
      name: 'native',
      netns: link.netns,
      sender: link.address,
      receiver: link.receiverAddress,
      senderNetns: link.netns,
      receiverNetns: pair.receiver.netns,
    });
    const samples = new Map<SideName, Samples>(
      sides.map((s) => [
        s.name,
        {
          forwardMbit: [],
          reverseMbit: [],
          forwardRxMbit: [],
          reverseRxMbit: [],
          rttUs: [],
          ttfbMs: [],
        },
      ]),
    );
    for (let round = 1; round <= rounds; round++) {
      for (const kind of KINDS) {
        const order = roundOrder(sides, round);
        progress(`round ${round}/${rounds}: ${kind}, ${order.map((s) => s.name).join(', ')}`);
        for (const side of order) await measure(side, samples.get(side.name)!, kind, options);
      }
    }
    const results: SideResult[] = sides.map((side) => {
      const s = samples.get(side.name)!;
      return {
        side: side.name,
        forwardMbit: summarize(s.forwardMbit),
        reverseMbit: summarize(s.reverseMbit),
        forwardRxMbit: summarize(s.forwardRxMbit),
        reverseRxMbit: summarize(s.reverseRxMbit),
        rttUs: summarize(s.rttUs),
        ttfbMs: summarize(s.ttfbMs),
      };
    });
    report(results);
    let fan: Awaited<ReturnType<typeof fanPart>> | undefined;
    if (counts.length > 0) {
      await pair.close();
      const fanOptions = {
        memoryMb: fanMemoryMb,
        rounds: Number(args['fan-rounds']),
        seconds: options.seconds,
        mirror: nativeCpu === 'mirror',
      };
      fan = await fanPart(nodes, counts, fanOptions, cleanups);
      reportFan(fan.rows, fanMemoryMb);
    }
    const targets = evaluateTargets(results, memoryMb, fan?.rows ?? []);
    for (const line of targets.lines) console.log(line);
    if (args.plots) {
      const files = await writeF2fCharts(String(args.plots), {
        sides: sides.map((side) => ({ side: side.name, ...samples.get(side.name)! })),
        fan: (fan?.rows ?? []).flatMap((r) =>
          r.samples.map((x) => ({ side: r.side, n: r.n, aggregateMbit: x.aggregateMbit })),
        ),
        allocationMbit: modes.includes('on') ? allocationMbit(memoryMb) : undefined,
        fanAllocationMbit: modes.includes('on') && fan ? allocationMbit(fanMemoryMb) : undefined,
      });
      for (const file of files) console.log(`wrote ${file}`);
    }
    await writeJson(args.json, {
      benchmark: 'net --f2f',
      machine: machineFacts(),
      settings: {
        ...options,
        rounds,
        memoryMb,
        modes,
        nativeCpu,
        directPath,
        senders: counts,
        fanMemoryMb,
      },
      cpuLimits: { pair: cpu, fan: fan?.cpu },
      placement,
      results,
      samples: Object.fromEntries(samples),
      ratios: ratios(results),
      allocationMbit: allocationMbit(memoryMb),
      fan: fan?.rows,
      targets: targets.met,
      elapsedS: Math.round((performance.now() - started) / 1000),
    });
  } finally {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  }
}

interface TargetCheck {
  /** Target name → met. */
  met: Record<string, boolean>;
  lines: string[];
}

/** The issue's targets: unshaped vs native; shaped vs the allocation (within 5 %). */
function evaluateTargets(results: SideResult[], memoryMb: number, fan: FanRow[]): TargetCheck {
  const met: Record<string, boolean> = {};
  const lines: string[] = [];
  const all = ratios(results);
  const off = all.off;
  if (off) {
    met.throughput = off.forwardMbit >= 0.95 && off.reverseMbit >= 0.95;
    met.rtt = off.rttMean <= 1.1;
    met.ttfb = off.ttfbMean <= 1.2;
    lines.push(
      `shaping off: throughput ${off.forwardMbit}× / ${off.reverseMbit}× native (target ≥ 0.95: ${mark(met.throughput)}); ` +
        `RTT ${off.rttMean}× (≤ 1.1: ${mark(met.rtt)}); TTFB ${off.ttfbMean}× (≤ 1.2: ${mark(met.ttfb)})`,
    );
  }
  const on = results.find((r) => r.side === 'on');
  if (on) {
    const allocation = allocationMbit(memoryMb);
    const payload = payloadRateMbit(memoryMb);
    const fwd = ratio(on.forwardRxMbit.p50, payload);
    const rev = ratio(on.reverseRxMbit.p50, payload);
    met.shapedWithin5pct = Math.abs(fwd - 1) <= 0.05 && Math.abs(rev - 1) <= 0.05;
    lines.push(
      `shaping on: received forward ${fwd}×, reverse ${rev}× the ${payload.toFixed(1)} Mbit/s of TCP payload a ${allocation.toFixed(0)} Mbit/s wire allocation carries (within 5 %: ${mark(met.shapedWithin5pct)}); ` +
        `iperf3 goodput ${ratio(on.forwardMbit.p50, allocation)}× / ${ratio(on.reverseMbit.p50, allocation)}× the allocation itself`,
    );
  }
  const fanOff = fan.filter((r) => r.side === 'off');
  if (fanOff.length > 0) {
    met.fanThroughput = fanOff.every((r) => (r.ratioToNative ?? 0) >= 0.95);
    lines.push(
      `(d) shaping off: aggregate ${fanOff.map((r) => `N=${r.n} ${r.ratioToNative}×`).join(', ')} native (≥ 0.95: ${mark(met.fanThroughput)})`,
    );
  }
  const fanOn = fan.filter((r) => r.side === 'on');
  if (fanOn.length > 0) {
    met.fanShapedWithin5pct = fanOn.every((r) => Math.abs((r.ratioToPayloadRate ?? 0) - 1) <= 0.05);
    lines.push(
      `(d) shaping on: aggregate ${fanOn.map((r) => `N=${r.n} ${r.ratioToPayloadRate}×`).join(', ')} the payload rate of the receiver's allocation (within 5 %: ${mark(met.fanShapedWithin5pct)})`,
    );
  }
  return { met, lines };
}

const mark = (ok: boolean): string => (ok ? 'met' : 'NOT met');

function reportFan(rows: FanRow[], memoryMb: number): void {
  const counts = [...new Set(rows.map((r) => r.n))];
  const sides = [...new Set(rows.map((r) => r.side))];
  console.log(
    `(d) aggregate received at one member over the senders' shared window, N senders (${memoryMb} MB members), Mbit/s:`,
  );
  const header = (s: SideName): string[] => {
    if (s === 'native') return [s];
    return [s, s === 'on' ? 'on ÷ payload rate' : `${s} ÷ native`, `${s} Σ senders`];
  };
  console.log(
    table(
      ['N', ...sides.flatMap(header)],
      counts.map((n) => [
        String(n),
        ...sides.flatMap((side) => {
          const row = rows.find((r) => r.side === side && r.n === n)!;
          const value = row.aggregateMbit.toFixed(0);
          if (side === 'native') return [value];
          const share = side === 'on' ? row.ratioToPayloadRate : row.ratioToNative;
          const sum = medianOfFinite(row.samples.map((x) => x.senderSumMbit)).toFixed(0);
          return [value, String(share), sum];
        }),
      ]),
    ),
  );
}

/** Median of the finite values (a fan-in round without a shared window gives NaN); NaN if none. */
function medianOfFinite(values: number[]): number {
  const finite = values.filter((v) => Number.isFinite(v));
  return finite.length > 0 ? summarize(finite).p50 : NaN;
}

/**
 * TCP payload per wire byte for full-sized segments: a 1500-byte MTU frame is
 * 1514 bytes as TBF counts it (Ethernet header included) and carries 1448
 * bytes of payload (20 IP + 32 TCP with timestamps). Members' eth0 MTU is 1500.
 */
export const FRAME_PAYLOAD = 1448 / 1514;

/** The TCP payload rate a wire allocation carries. */
function payloadRateMbit(memoryMb: number): number {
  return allocationMbit(memoryMb) * FRAME_PAYLOAD;
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
      forwardRxMbit: ratio(r.forwardRxMbit.p50, native.forwardRxMbit.p50),
      reverseRxMbit: ratio(r.reverseRxMbit.p50, native.reverseRxMbit.p50),
      rttMean: ratio(r.rttUs.mean, native.rttUs.mean),
      rttP50: ratio(r.rttUs.p50, native.rttUs.p50),
      rttP99: ratio(r.rttUs.p99, native.rttUs.p99),
      ttfbMean: ratio(r.ttfbMs.mean, native.ttfbMs.mean),
      ttfbP50: ratio(r.ttfbMs.p50, native.ttfbMs.p50),
    };
  }
  return out;
}

function report(results: SideResult[]): void {
  const f = (n: number, digits = 1): string => n.toFixed(digits);
  console.log(
    table(
      [
        'side',
        'fwd Mbit/s',
        'rev Mbit/s',
        'fwd rx',
        'rev rx',
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
        f(r.forwardRxMbit.p50, 0),
        f(r.reverseRxMbit.p50, 0),
        f(r.rttUs.mean),
        f(r.rttUs.p50),
        f(r.rttUs.p99),
        f(r.ttfbMs.mean, 3),
        f(r.ttfbMs.p50, 3),
        f(r.ttfbMs.p99, 3),
      ]),
    ),
  );
}
