import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { Pool } from 'undici';
import { spawnDaemon, type Daemon } from '../harness/index.ts';
import { canMakeTestbed, createTestbed, type Testbed } from '../harness/index.ts';
import { table } from '../report/index.ts';
import { benchArgs, machineFacts, ratio, summarize, writeJson, type Summary } from './common.ts';

const EXAMPLES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../examples');
const BODY = JSON.stringify({ hello: 'world', n: 42 });
const ECHO_MEMORY_MB = 1769;

/** A raw node:http server that echoes the body: the floor any HTTP invoke path sits on. */
const ECHO_SERVER = `
const http = require('node:http');
const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => { res.setHeader('content-type', 'application/json'); res.end(Buffer.concat(chunks)); });
});
server.keepAliveTimeout = 60000;
server.listen(0, process.argv[1], () => console.log('port ' + server.address().port));
`;

interface Target {
  origin: string;
  path: string;
}

function progress(message: string): void {
  process.stderr.write(`[bench invoke] ${message}\n`);
}

async function startEchoServer(
  host: string,
  testbed?: Testbed,
): Promise<{ origin: string; stop(): void }> {
  const command = [...(testbed?.nsenterArgs() ?? []), process.execPath, '-e', ECHO_SERVER, host];
  const child = spawn(command[0], command.slice(1), { stdio: ['ignore', 'pipe', 'inherit'] });
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
    headers: { 'content-type': 'application/json' },
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

/** Time from spawn to exit of `node -e 0`: the cost of starting the runtime at all. */
async function bareNodeStart(): Promise<number> {
  const started = performance.now();
  await new Promise<void>((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', '0'], { stdio: 'ignore' });
    child.once('exit', () => resolve());
    child.once('error', reject);
  });
  return performance.now() - started;
}

/** A daemon with its own temp state dir and `placement.policy`; closing it removes the dir. */
async function nodeWithPlacement(policy: string, testbed: Testbed | undefined): Promise<Daemon> {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'petri-bench-'));
  const configFile = path.join(stateDir, 'config.json');
  fs.writeFileSync(configFile, JSON.stringify({ placement: { policy } }));
  const daemon = await spawnDaemon({ stateDir, testbed, configFile });
  return {
    ...daemon,
    close: async () => {
      await daemon.close();
      fs.rmSync(stateDir, { recursive: true, force: true });
    },
  };
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
      ...spec,
      source: { path: path.join(EXAMPLES, 'echo') },
    }),
    headers: { 'content-type': 'application/json' },
  });
  const text = await response.body.text();
  await pool.close();
  if (response.statusCode >= 300) throw new Error(`deploy ${name} failed: ${text}`);
}

async function coldStarts(
  daemon: Daemon,
  count: number,
): Promise<{ cold: number[]; bare: number[] }> {
  const target = { origin: daemon.url, path: '/v1/functions/echo-cold/invoke' };
  const cold: number[] = [];
  const bare: number[] = [];
  const pool = new Pool(daemon.url, { connections: 1 });
  try {
    for (let i = 0; cold.length < count && i < count * 3; i++) {
      bare.push(await bareNodeStart());
      const started = performance.now();
      const headers = await post(pool, target);
      const elapsed = performance.now() - started;
      if (headers['x-petri-start'] === 'cold') cold.push(elapsed);
      // keepAlive 0 stops the instance right away; give it a moment to go.
      await sleep(100);
    }
  } finally {
    await pool.close();
  }
  return { cold, bare };
}

async function nodeFacts(daemon: Daemon): Promise<{ active: string[]; placement: string }> {
  const response = await fetch(`${daemon.url}/v1/node`);
  const node = (await response.json()) as {
    isolation: { mechanisms: { name: string; active: boolean }[] };
    placement: { policy: string; active: boolean; reason?: string };
  };
  const { placement } = node;
  return {
    active: node.isolation.mechanisms.filter((m) => m.active).map((m) => m.name),
    placement: placement.active
      ? placement.policy
      : `${placement.policy} (off: ${placement.reason})`,
  };
}

function row(
  name: string,
  value: number,
  baseline: number,
  unit: string,
  target: string,
  /** The headline ratio when it is not simply value ÷ baseline (per-round medians). */
  headline = ratio(value, baseline),
): string[] {
  return [
    name,
    `${value.toFixed(unit === 'req/s' ? 0 : 3)} ${unit}`,
    `${baseline.toFixed(unit === 'req/s' ? 0 : 3)} ${unit}`,
    String(headline),
    target,
  ];
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
  });
  const requests = Number(args.requests);
  const rounds = Number(args.rounds);
  const connections = Number(args.connections);
  const testbed = canMakeTestbed() ? await createTestbed() : undefined;
  const host = testbed?.innerAddress ?? '127.0.0.1';
  progress(
    testbed ? `running in network namespace ${testbed.name}` : 'not root: running on loopback',
  );
  const echo = await startEchoServer(host, testbed);
  // The node's own default placement unless asked otherwise (`--placement spread`: the kernel's choice).
  const daemon = await nodeWithPlacement(String(args.placement), testbed);
  // The same node with the kernel's placement, measured in the same rounds: what placement buys.
  const spreadDaemon =
    args.placement !== 'spread' ? await nodeWithPlacement('spread', testbed) : undefined;
  try {
    // One vCPU's worth of memory, like the single-threaded baseline server: a
    // 128 MB share (0.07 vCPU) would measure the CPU limit, not the invoke path.
    await deploy(daemon, 'echo', { memoryMb: ECHO_MEMORY_MB, concurrency: connections });
    await deploy(daemon, 'echo-cold', { keepAlive: { ms: 0 } });
    if (spreadDaemon)
      await deploy(spreadDaemon, 'echo', { memoryMb: ECHO_MEMORY_MB, concurrency: connections });
    const baseTarget = { origin: echo.origin, path: '/' };
    const petriTarget = { origin: daemon.url, path: '/v1/functions/echo/invoke' };
    const spreadTarget = spreadDaemon && { origin: spreadDaemon.url, path: petriTarget.path };
    progress('warming up');
    await latencies(baseTarget, 300);
    await latencies(petriTarget, 300);
    if (spreadTarget) await latencies(spreadTarget, 300);
    const base: number[] = [];
    const petri: number[] = [];
    const rounds_: Round[] = [];
    for (let round = 1; round <= rounds; round++) {
      progress(`round ${round}/${rounds}: latency at 1 connection (${requests} requests each)`);
      // Alternate who goes first, so drift on a shared machine favours neither.
      const order = [baseTarget, petriTarget, ...(spreadTarget ? [spreadTarget] : [])];
      if (round % 2 === 0) order.reverse();
      const measured = new Map<Target, number[]>();
      for (const target of order)
        measured.set(target, await latencies(target, requests, Number(args.settle)));
      const roundBase = measured.get(baseTarget) ?? [];
      const roundPetri = measured.get(petriTarget) ?? [];
      const roundSpread = spreadTarget && measured.get(spreadTarget);
      base.push(...roundBase);
      petri.push(...roundPetri);
      const [first, second] = round % 2 ? [baseTarget, petriTarget] : [petriTarget, baseTarget];
      progress(
        `round ${round}/${rounds}: throughput at ${connections} connections (${args.seconds} s each)`,
      );
      const rpsA = await throughput(first, connections, Number(args.seconds));
      const rpsB = await throughput(second, connections, Number(args.seconds));
      const [baseRps, petriRps] = round % 2 ? [rpsA, rpsB] : [rpsB, rpsA];
      rounds_.push({
        baseP50: summarize(roundBase).p50,
        petriP50: summarize(roundPetri).p50,
        ...(roundSpread ? { spreadP50: summarize(roundSpread).p50 } : {}),
        baseRps,
        petriRps,
      });
    }
    progress(`cold starts (${args.cold}, each against a bare node -e 0)`);
    const { cold, bare } = await coldStarts(daemon, Number(args.cold));
    const { active, placement } = await nodeFacts(daemon);
    const result = report(
      summarize(base),
      summarize(petri),
      rounds_,
      summarize(cold),
      summarize(bare),
    );
    console.log(
      table(
        ['figure', 'petri', 'baseline', 'ratio', 'target'],
        [
          row(
            'warm p50 (1 conn)',
            result.warm.petri.p50,
            result.warm.baseline.p50,
            'ms',
            '≤ 2',
            result.warm.ratioP50,
          ),
          row('warm p99 (1 conn)', result.warm.petri.p99, result.warm.baseline.p99, 'ms', ''),
          row(
            `throughput (${connections} conn)`,
            result.throughput.petri,
            result.throughput.baseline,
            'req/s',
            '≥ 0.3',
            result.throughput.ratio,
          ),
          row('cold start p50', result.cold.petri.p50, result.cold.baseline.p50, 'ms', '≤ 1.5'),
          ...(result.placement
            ? [
                row(
                  'warm p50, placement spread',
                  result.placement.spreadP50,
                  result.warm.baseline.p50,
                  'ms',
                  '',
                  result.placement.spreadRatioP50,
                ),
                [
                  'placement gain: spread p50 ÷ this p50',
                  '',
                  '',
                  String(result.placement.spreadOverConfigured),
                  '',
                ],
              ]
            : []),
        ],
        {
          title: `npm run bench -- invoke · ${os.availableParallelism()} cores · isolation: ${active.join(', ') || 'none'} · placement: ${placement}`,
        },
      ),
    );
    await writeJson(args.json as string | undefined, {
      benchmark: 'invoke',
      machine: machineFacts(),
      network: testbed ? 'test namespace over veth' : 'loopback',
      isolation: active,
      placementPolicy: placement,
      settings: {
        requests,
        settleRequests: Number(args.settle),
        rounds,
        connections,
        seconds: Number(args.seconds),
        cold: Number(args.cold),
        echoFunction: { memoryMb: ECHO_MEMORY_MB, concurrency: connections },
        coldFunction: { memoryMb: 128, keepAliveMs: 0 },
        ratios:
          'warm and throughput ratios are medians of per-round ratios (same round, alternating order)',
      },
      rounds: rounds_,
      ...result,
    });
  } finally {
    echo.stop();
    await daemon.close();
    await spreadDaemon?.close();
    await testbed?.close();
  }
}

function median(values: number[]): number {
  return summarize(values).p50;
}

interface Round {
  baseP50: number;
  petriP50: number;
  /** The same node with `placement.policy: spread`. */
  spreadP50?: number;
  baseRps: number;
  petriRps: number;
}

function report(base: Summary, petri: Summary, rounds: Round[], cold: Summary, bare: Summary) {
  const latencyRatio = median(rounds.map((r) => r.petriP50 / r.baseP50));
  const throughputRatio = median(rounds.map((r) => r.petriRps / r.baseRps));
  return {
    warm: {
      baseline: base,
      petri,
      ratioP50: ratio(latencyRatio, 1),
      ratioP99: ratio(petri.p99, base.p99),
      targetP50: 2,
      met: latencyRatio <= 2,
    },
    throughput: {
      baseline: median(rounds.map((r) => r.baseRps)),
      petri: median(rounds.map((r) => r.petriRps)),
      ratio: ratio(throughputRatio, 1),
      target: 0.3,
      met: throughputRatio >= 0.3,
    },
    cold: {
      baseline: bare,
      petri: cold,
      ratioP50: ratio(cold.p50, bare.p50),
      target: 1.5,
      met: cold.p50 <= 1.5 * bare.p50,
    },
    placement: placementEffect(rounds),
  };
}

/** Warm p50 of the node with placement spread, against the echo server and against the node as configured. */
function placementEffect(rounds: Round[]) {
  const compared = rounds.filter((r) => r.spreadP50 !== undefined);
  if (compared.length === 0) return undefined;
  const spread = (r: Round): number => r.spreadP50 ?? NaN;
  return {
    spreadP50: median(compared.map(spread)),
    spreadRatioP50: ratio(median(compared.map((r) => spread(r) / r.baseP50)), 1),
    spreadOverConfigured: ratio(median(compared.map((r) => spread(r) / r.petriP50)), 1),
  };
}
