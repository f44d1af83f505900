import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { z } from 'zod';
import { spawnDaemon, type Daemon } from '../../harness/index.ts';
import { runCommand as sh } from '../../net/index.ts';
import { table } from '../../report/index.ts';
import { benchArgs, machineFacts, ratio, writeJson } from '../common.ts';

/**
 * `npm run bench -- net --f2f --adapt`: Boxer §7 (load adaptation) on this
 * node. A group of HTTP backends (net-functions/adapt/backend.mjs, each
 * serving 1000 / serviceMs requests/s and shedding the rest) sits behind a
 * round-robin front-end in the node's namespace (frontend.mjs), which learns
 * the members from the group's membership stream (GET
 * /v1/groups/{name}/events). An open-loop client in the same process offers
 * `rate` requests/s; at `before` seconds the group is scaled from `from` to
 * `to` members. Reported, from the scale request: when the first and the last
 * added member served a request, and when throughput settled (the 1 s
 * rolling throughput enters a band around the final level, ±10 % by
 * default, and stays in it for 5 s).
 * The native baseline does the same with freshly started plain processes,
 * each in a plain network namespace joined to the front-end's by a veth
 * pair, announced to the front-end when started. Sides alternate per round.
 */

const ADAPT_DIR = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '../net-functions/adapt',
);
const ROLLING_MS = 1000;

type SideName = 'native' | 'petri';

const FrontendLine = z.discriminatedUnion('event', [
  z.object({
    event: z.literal('joined'),
    address: z.string(),
    t: z.number(),
    streamMs: z.number().optional(),
  }),
  z.object({ event: z.literal('ready'), address: z.string(), t: z.number() }),
  z.object({ event: z.literal('left'), address: z.string(), t: z.number() }),
  z.object({ event: z.literal('mark'), t: z.number() }),
  z.object({
    event: z.literal('result'),
    t: z.number(),
    bucketMs: z.number(),
    sent: z.number(),
    mark: z.number(),
    buckets: z.array(z.object({ ok: z.number(), shed: z.number(), failed: z.number() })),
    firstOk: z.record(z.string(), z.number()),
  }),
]);
type FrontendLine = z.infer<typeof FrontendLine>;
export type Result = Extract<FrontendLine, { event: 'result' }>;

interface Settings {
  rate: number;
  from: number;
  to: number;
  before: number;
  after: number;
  serviceMs: number;
  /** Petri members' memoryMb, which sets their CPU share (memoryMb / 1769 vCPU). */
  memoryMb: number;
  settle: SettleRule;
}

/** The front-end process and what it has said. */
class Frontend {
  readonly lines: FrontendLine[] = [];
  private readonly waiters: (() => void)[] = [];
  private readonly child: ChildProcess;

  constructor(netns: string, args: string[], env: Record<string, string> = {}) {
    this.child = spawn(
      'nsenter',
      [
        `--net=/run/netns/${netns}`,
        '--',
        process.execPath,
        path.join(ADAPT_DIR, 'frontend.mjs'),
        ...args,
      ],
      { stdio: ['pipe', 'pipe', 'inherit'], env: { ...process.env, ...env } },
    );
    readline.createInterface({ input: this.child.stdout! }).on('line', (line) => {
      this.lines.push(FrontendLine.parse(JSON.parse(line)));
      for (const wake of this.waiters.splice(0)) wake();
    });
    this.child.on('exit', () => {
      for (const wake of this.waiters.splice(0)) wake();
    });
  }

  send(line: string): void {
    this.child.stdin!.write(line + '\n');
  }

  async until<T>(pick: (lines: FrontendLine[]) => T | undefined, ms: number): Promise<T> {
    const deadline = Date.now() + ms;
    for (;;) {
      const found = pick(this.lines);
      if (found !== undefined) return found;
      if (Date.now() > deadline || this.child.exitCode !== null) {
        throw new Error(`front-end: timed out; said ${JSON.stringify(this.lines.slice(-5))}`);
      }
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 200);
      });
    }
  }

  readyCount(): number {
    return this.lines.filter((l) => l.event === 'ready').length;
  }

  close(): void {
    if (this.child.exitCode === null) this.child.kill('SIGKILL');
  }
}

/** One side of the comparison: how backends are added and where the front-end runs. */
interface Side {
  name: SideName;
  frontend: Frontend;
  /** Starts `count` more backends (returns when asked, not when they serve). */
  scale(count: number): Promise<void>;
  close(): Promise<void>;
}

function progress(message: string): void {
  process.stderr.write(`[bench net --f2f --adapt] ${message}\n`);
}

/** Plain processes in plain namespaces, each joined to the front-end's by a veth pair. */
async function nativeSide(settings: Settings): Promise<Side> {
  const tag = randomBytes(3).toString('hex');
  const front = `petri-adapt-x${tag}f`;
  const namespaces = [front];
  const backends: ChildProcess[] = [];
  let frontend: Frontend | undefined;
  let next = 0;
  const close = async (): Promise<void> => {
    frontend?.close();
    for (const backend of backends) if (backend.exitCode === null) backend.kill('SIGKILL');
    for (const ns of namespaces) await sh('ip', ['netns', 'del', ns]).catch(() => undefined);
  };
  const start = async (): Promise<void> => {
    const i = next++;
    const ns = `petri-adapt-x${tag}b${i}`;
    const [frontAddress, address] = [`10.250.88.${4 * i + 1}`, `10.250.88.${4 * i + 2}`];
    namespaces.push(ns);
    const [a, b] = [`ad${tag}f${i}`, `ad${tag}b${i}`];
    await sh(
      'ip',
      ['-batch', '-'],
      `netns add ${ns}\nlink add ${a} netns ${front} type veth peer name ${b} netns ${ns}\n`,
    );
    await sh(
      'ip',
      ['-n', front, '-batch', '-'],
      `addr add ${frontAddress}/30 dev ${a}\nlink set ${a} up\n`,
    );
    await sh(
      'ip',
      ['-n', ns, '-batch', '-'],
      `link set lo up\naddr add ${address}/30 dev ${b}\nlink set ${b} up\n`,
    );
    const backend = spawn(
      'nsenter',
      [
        `--net=/run/netns/${ns}`,
        '--',
        process.execPath,
        path.join(ADAPT_DIR, 'backend.mjs'),
        address,
      ],
      { stdio: 'ignore', env: { ...process.env, SERVICE_MS: String(settings.serviceMs) } },
    );
    backends.push(backend);
    frontend!.send(`join ${address}`);
  };
  try {
    await sh('ip', ['-batch', '-'], `netns add ${front}\n`);
    await sh('ip', ['-n', front, 'link', 'set', 'lo', 'up']);
    frontend = new Frontend(front, []);
    for (let i = 0; i < settings.from; i++) await start();
  } catch (err) {
    await close();
    throw err;
  }
  return {
    name: 'native',
    frontend,
    scale: async (count) => {
      await Promise.all(Array.from({ length: count }, () => start()));
    },
    close,
  };
}

/** A daemon in its own test namespace running the backends as a group; the front-end reads its stream. */
async function petriSide(settings: Settings): Promise<Side> {
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'petri-bench-adapt-'));
  const configFile = path.join(workDir, 'config.json');
  // The backends' capacity is their timer, not their share of CPU or bandwidth.
  fs.writeFileSync(configFile, JSON.stringify({ isolation: { shaping: 'off' } }));
  let daemon: Daemon | undefined;
  let frontend: Frontend | undefined;
  const close = async (): Promise<void> => {
    frontend?.close();
    await daemon?.close();
    fs.rmSync(workDir, { recursive: true, force: true });
  };
  try {
    daemon = await spawnDaemon({
      stateDir: path.join(workDir, 'state'),
      configFile,
      allowSourcePaths: [ADAPT_DIR],
    });
    const call = async (method: 'PUT' | 'POST', url: string, body: unknown): Promise<void> => {
      const response = await request(daemon!.url + url, {
        method,
        body: JSON.stringify(body),
        headers: { ...daemon!.headers, 'content-type': 'application/json' },
      });
      const text = await response.body.text();
      if (response.statusCode >= 300) throw new Error(`${method} ${url}: ${text}`);
    };
    const spec = JSON.parse(fs.readFileSync(path.join(ADAPT_DIR, 'petri.json'), 'utf8')) as object;
    await call('PUT', '/v1/functions/adapt', {
      ...spec,
      memoryMb: settings.memoryMb,
      env: { SERVICE_MS: String(settings.serviceMs) },
      source: { path: ADAPT_DIR },
    });
    await call('POST', '/v1/groups', { function: 'adapt', size: settings.from, name: 'web' });
    frontend = new Frontend(
      daemon.testbed!.name,
      ['--events', `${daemon.url}/v1/groups/web/events`],
      {
        ADAPT_HEADERS: JSON.stringify(daemon.headers),
      },
    );
    return {
      name: 'petri',
      frontend,
      scale: (count) => call('POST', '/v1/groups/web/scale', { size: settings.from + count }),
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

export interface AdaptRow {
  side: SideName;
  round: number;
  /** From the scale request to the front-end hearing of the first added member (Petri: the stream's join). */
  joinedMs: number | null;
  /** Petri: the membership stream's own delay for the added members' joins (node saw it → front-end read it), the slowest. */
  streamMs: number | null;
  /** …to the last added member answering the front-end's health check. */
  readyMs: number | null;
  /** …to the first 200 from an added member. */
  firstNewMs: number | null;
  /** …to the first 200 from the last added member. */
  allNewMs: number | null;
  /** …to the end of the first 1 s window from which throughput stays in the band for the hold (settleTime). */
  settleMs: number | null;
  beforeRps: number;
  afterRps: number;
  sent: number;
  shed: number;
  failed: number;
  /** 200s per 100 ms bucket from the load's start (the mark is at `before` s). */
  okPerBucket: number[];
}

/** Requests/s answered 200 in [fromMs, toMs). */
export function throughput(result: Result, fromMs: number, toMs: number): number {
  const { bucketMs, buckets } = result;
  const slice = buckets.slice(
    Math.max(0, Math.floor(fromMs / bucketMs)),
    Math.max(0, Math.floor(toMs / bucketMs)),
  );
  const ok = slice.reduce((sum, b) => sum + b.ok, 0);
  return slice.length === 0 ? 0 : ok / ((slice.length * bucketMs) / 1000);
}

/** What "throughput has settled" means: a 1 s rolling window within `band` of the final level for `holdMs`. */
export interface SettleRule {
  band: number;
  holdMs: number;
}

/**
 * The first time after the mark at which the 1 s rolling throughput is
 * within the band of the final level (the last 5 s) and stays there for the
 * hold (windows every bucket); ms after the mark, at the end of that first
 * window. Null when it never does.
 */
export function settleTime(result: Result, endMs: number, rule: SettleRule): number | null {
  const { bucketMs, mark } = result;
  const final = throughput(result, endMs - 5000, endMs);
  if (final === 0) return null;
  const inside = (t: number) =>
    Math.abs(throughput(result, t, t + ROLLING_MS) - final) <= rule.band * final;
  for (let t = mark; t + ROLLING_MS + rule.holdMs <= endMs; t += bucketMs) {
    let holds = true;
    for (let u = t; u <= t + rule.holdMs && holds; u += bucketMs) holds = inside(u);
    if (holds) return t + ROLLING_MS - mark;
  }
  return null;
}

/** When the front-end said `event` about the added members: the first and the last, ms after the mark. */
function eventTimes(
  lines: FrontendLine[],
  event: 'joined' | 'ready',
  added: string[],
  mark: number,
): { first: number | null; last: number | null } {
  const times = lines
    .filter((l) => l.event === event && added.includes(l.address))
    .map((l) => l.t - mark);
  if (times.length === 0) return { first: null, last: null };
  return {
    first: Math.min(...times),
    last: times.length === added.length ? Math.max(...times) : null,
  };
}

function streamDelay(lines: FrontendLine[], added: string[]): number | null {
  const delays = lines.flatMap((l) =>
    l.event === 'joined' && l.streamMs !== undefined && added.includes(l.address)
      ? [l.streamMs]
      : [],
  );
  return delays.length ? Math.max(...delays) : null;
}

function analyse(
  side: Side,
  round: number,
  result: Result,
  settings: Settings,
  added: string[],
): AdaptRow {
  const lines = side.frontend.lines;
  const endMs = (settings.before + settings.after) * 1000;
  const firsts = added.map((address) => result.firstOk[address]).filter((t) => t !== undefined);
  const sum = (key: 'shed' | 'failed') => result.buckets.reduce((s, b) => s + b[key], 0);
  return {
    side: side.name,
    round,
    joinedMs: eventTimes(lines, 'joined', added, result.mark).first,
    readyMs: eventTimes(lines, 'ready', added, result.mark).last,
    streamMs: streamDelay(lines, added),
    firstNewMs: firsts.length ? Math.min(...firsts) - result.mark : null,
    allNewMs: firsts.length === added.length ? Math.max(...firsts) - result.mark : null,
    settleMs: settleTime(result, endMs, settings.settle),
    okPerBucket: result.buckets.map((b) => b.ok),
    beforeRps: throughput(result, result.mark - 10_000, result.mark),
    afterRps: throughput(result, endMs - 5000, endMs),
    sent: result.sent,
    shed: sum('shed'),
    failed: sum('failed'),
  };
}

async function runRound(side: Side, round: number, settings: Settings): Promise<AdaptRow> {
  const { frontend } = side;
  await frontend.until(
    (lines) =>
      lines.filter((l) => l.event === 'ready').length >= settings.from ? true : undefined,
    60_000,
  );
  const initial = new Set(
    frontend.lines
      .filter((l) => l.event === 'joined')
      .map((l) => (l as { address: string }).address),
  );
  frontend.send(`load ${settings.rate} ${settings.before + settings.after}`);
  await new Promise((resolve) => setTimeout(resolve, settings.before * 1000));
  frontend.send('mark');
  await frontend.until((lines) => (lines.some((l) => l.event === 'mark') ? true : undefined), 5000);
  await side.scale(settings.to - settings.from);
  const result = await frontend.until(
    (lines) => lines.find((l): l is Result => l.event === 'result'),
    (settings.after + 30) * 1000,
  );
  const added = frontend.lines
    .filter((l) => l.event === 'joined')
    .map((l) => (l as { address: string }).address)
    .filter((address) => !initial.has(address));
  return analyse(side, round, result, settings, added);
}

export async function run(argv: string[]): Promise<void> {
  const args = benchArgs(argv, {
    rate: { type: 'string', default: '250' },
    from: { type: 'string', default: '2' },
    to: { type: 'string', default: '4' },
    before: { type: 'string', default: '30' },
    after: { type: 'string', default: '30' },
    'service-ms': { type: 'string', default: '10' },
    memory: { type: 'string', default: '128' },
    'settle-band': { type: 'string', default: '0.1' },
    'settle-hold': { type: 'string', default: '5' },
    rounds: { type: 'string', default: '1' },
    sides: { type: 'string', default: 'native,petri' },
  });
  const settings: Settings = {
    rate: Number(args.rate),
    from: Number(args.from),
    to: Number(args.to),
    before: Number(args.before),
    after: Number(args.after),
    serviceMs: Number(args['service-ms']),
    memoryMb: Number(args.memory),
    settle: { band: Number(args['settle-band']), holdMs: Number(args['settle-hold']) * 1000 },
  };
  const values = [
    ...Object.values(settings).filter((v) => typeof v === 'number'),
    settings.settle.band,
    settings.settle.holdMs,
  ];
  if (values.some((v) => !Number.isFinite(v) || v <= 0) || settings.to <= settings.from) {
    throw new Error(
      '--rate, --from, --to, --before, --after, --service-ms, --settle-band, --settle-hold take positive numbers, --to > --from',
    );
  }
  if (settings.after * 1000 < 5000 + ROLLING_MS + settings.settle.holdMs)
    throw new Error('--after must leave room for the final level (5 s), a window and the hold');
  const sides = String(args.sides)
    .split(',')
    .map((s) => s.trim());
  if (sides.some((s) => s !== 'native' && s !== 'petri'))
    throw new Error('--sides takes native,petri');
  const rounds = Number(args.rounds);
  const rows: AdaptRow[] = [];
  const started = performance.now();
  for (let round = 1; round <= rounds; round++) {
    for (const name of sides as SideName[]) {
      progress(
        `round ${round}/${rounds}: ${name}, ${settings.from} → ${settings.to} backends at t=${settings.before} s, ${settings.rate} req/s`,
      );
      // Fresh every round: the added members are freshly started each time.
      const side = name === 'native' ? await nativeSide(settings) : await petriSide(settings);
      try {
        rows.push(await runRound(side, round, settings));
      } finally {
        await side.close();
      }
    }
  }
  report(rows, settings);
  await writeJson(args.json, {
    benchmark: 'net --f2f --adapt',
    machine: machineFacts(),
    loadAverage: os.loadavg(),
    settings: { ...settings, rounds, sides, rollingMs: ROLLING_MS },
    capacityRps: {
      before: (settings.from * 1000) / settings.serviceMs,
      after: (settings.to * 1000) / settings.serviceMs,
    },
    rows,
    elapsedS: Math.round((performance.now() - started) / 1000),
  });
}

function median(values: (number | null)[]): number | null {
  const known = values.filter((v): v is number => v !== null).sort((a, b) => a - b);
  if (known.length === 0) return null;
  const mid = Math.floor(known.length / 2);
  return known.length % 2 ? known[mid] : (known[mid - 1] + known[mid]) / 2;
}

function report(rows: AdaptRow[], settings: Settings): void {
  const ms = (v: number | null) => (v === null ? '-' : v.toFixed(0));
  console.log(
    table(
      [
        'side',
        'round',
        'joined ms',
        'stream ms',
        'ready ms',
        'first new ms',
        'all new ms',
        'settled ms',
        'before req/s',
        'after req/s',
        'sent',
        'shed',
        'failed',
      ],
      rows.map((r) => [
        r.side,
        r.round,
        ms(r.joinedMs),
        r.streamMs === null ? '-' : r.streamMs.toFixed(2),
        ms(r.readyMs),
        ms(r.firstNewMs),
        ms(r.allNewMs),
        ms(r.settleMs),
        r.beforeRps.toFixed(0),
        r.afterRps.toFixed(0),
        r.sent,
        r.shed,
        r.failed,
      ]),
    ),
  );
  const capacity = (n: number) => (n * 1000) / settings.serviceMs;
  console.log(
    `offered ${settings.rate} req/s; nominal capacity (1000 / service ms a backend) ${capacity(settings.from)} → ${capacity(settings.to)} req/s`,
  );
  type Key = 'joinedMs' | 'readyMs' | 'firstNewMs' | 'allNewMs' | 'settleMs';
  const of = (side: SideName, key: Key) =>
    median(rows.filter((r) => r.side === side).map((r) => r[key]));
  for (const key of ['joinedMs', 'readyMs', 'firstNewMs', 'allNewMs', 'settleMs'] as const) {
    const [n, p] = [of('native', key), of('petri', key)];
    if (n !== null && p !== null)
      console.log(
        `${key}: petri ${p.toFixed(0)} ms vs native ${n.toFixed(0)} ms (${ratio(p, n)}×)`,
      );
  }
}
