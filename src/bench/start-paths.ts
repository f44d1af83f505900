/**
 * `npm run bench -- start-paths`: time to first response of each start path
 * (cold, warm, paused, prewarm, restore) for a light and an init-heavy
 * handler, in alternating rounds on one node, each as a ratio to the cold
 * and the warm path; what each idle state holds in memory (a running, a
 * paused instance, a ready prewarmed runtime); a paused instance's CPU use
 * from its cgroup's cpuacct; and the cold path beside bare `node` timed to
 * the same event (its first byte on a pipe); each handler's snapshot (on
 * the tmpfs tier) with its size, build time and the memory it holds there.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { canMakeTestbed, createTestbed, spawnDaemon, type Daemon } from '../harness/index.ts';
import { nodeTagFrom } from '../net/index.ts';
import { table } from '../report/index.ts';
import { benchArgs, machineFacts, ratio, summarize, writeJson, type Summary } from './common.ts';
import { bareNodeFirstByte } from './invoke.ts';

const CGROUP_ROOT = '/sys/fs/cgroup';
/** After a cold start with keep-alive 0, so the stopped instance's tear-down is not in the next sample. */
const COLD_GAP_MS = 300;
/** How long a paused instance's CPU use is watched each round. */
const CPU_WINDOW_MS = 1000;

const LIGHT = 'export async function handler(event) { return event; }\n';
/**
 * Module-level work of a few hundred ms (the init-heavy handler): a
 * table of chained SHA-256 digests. 100 000 digests take ~300 ms on one
 * unloaded core here (30 000, the first version of this benchmark, took
 * ~100 ms); the bench reports the init it measured (heavy cold − light cold).
 */
const HEAVY_DIGESTS = 100_000;
const HEAVY = `import { createHash } from 'node:crypto';
const table = [];
let digest = Buffer.alloc(32);
for (let i = 0; i < ${HEAVY_DIGESTS}; i++) {
  digest = createHash('sha256').update(digest).digest();
  if (i % 64 === 0) table.push(digest.toString('hex'));
}
export async function handler(event) { return { ...event, entries: table.length }; }
`;

const HANDLERS = { light: LIGHT, heavy: HEAVY } as const;
type HandlerKey = keyof typeof HANDLERS;
const PATHS = ['cold', 'warm', 'paused', 'prewarm', 'restore'] as const;
type MeasuredPath = (typeof PATHS)[number];

interface Samples {
  ms: Record<MeasuredPath, number[]>;
  /** memory.usage_in_bytes of an idle instance, running and frozen. */
  idleBytes: { running: number[]; paused: number[]; prewarm: number[] };
  /** A paused instance's CPU time as a share of one CPU over the window. */
  pausedCpuShare: number[];
  /** The `-restore` function's snapshot as GET /v1/functions shows it once built. */
  snapshot?: SnapshotFigures;
}

interface SnapshotFigures {
  state: string;
  reason?: string;
  bytes?: number;
  buildMs?: number;
  tier?: string;
  /** Memory the blob holds where it lives: its pages on tmpfs; on disk, none (page cache only). */
  memoryBytes?: number;
  /** Blocks the blob takes on its tier's filesystem. */
  storedBytes?: number;
}

const TMPFS_MAGIC = 0x01021994;

/** What the blob holds: tmpfs pages are memory; a disk file holds disk blocks and reclaimable cache. */
function heldBy(dir: string, file: string): { memoryBytes: number; storedBytes: number } {
  const stored = fs.statSync(path.join(dir, file)).blocks * 512;
  const onTmpfs = fs.statfsSync(dir).type === TMPFS_MAGIC;
  return { memoryBytes: onTmpfs ? stored : 0, storedBytes: stored };
}

function progress(message: string): void {
  console.error(`[start-paths] ${message}`);
}

function newSamples(): Samples {
  return {
    ms: { cold: [], warm: [], paused: [], prewarm: [], restore: [] },
    idleBytes: { running: [], paused: [], prewarm: [] },
    pausedCpuShare: [],
  };
}

async function call(daemon: Daemon, method: 'GET' | 'PUT' | 'POST', url: string, body?: unknown) {
  const response = await request(daemon.url + url, {
    method,
    body: body === undefined ? undefined : JSON.stringify(body),
    headers: { ...daemon.headers, 'content-type': 'application/json' },
  });
  const text = await response.body.text();
  return { status: response.statusCode, headers: response.headers, text };
}

async function deploy(daemon: Daemon, name: string, code: string, spec: object): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `petri-bench-${name}-`));
  fs.writeFileSync(path.join(dir, 'index.mjs'), code);
  const reply = await call(daemon, 'PUT', `/v1/functions/${name}`, {
    runtime: 'node',
    memoryMb: 256,
    ...spec,
    source: { path: dir },
  });
  fs.rmSync(dir, { recursive: true, force: true });
  if (reply.status >= 300) throw new Error(`deploy ${name}: ${reply.text}`);
}

/** One invocation: its time to the full response (ms), its start path and invocation id. */
async function invoke(daemon: Daemon, name: string) {
  const started = performance.now();
  const reply = await call(daemon, 'POST', `/v1/functions/${name}/invoke`, { hello: 'world' });
  const ms = performance.now() - started;
  if (reply.status !== 200) throw new Error(`invoke ${name}: ${reply.status} ${reply.text}`);
  return {
    ms,
    path: String(reply.headers['x-petri-start']),
    id: String(reply.headers['x-petri-invocation-id']),
  };
}

async function instanceOf(daemon: Daemon, invocationId: string): Promise<string> {
  for (let i = 0; i < 200; i++) {
    const reply = await call(daemon, 'GET', `/v1/invocations/${invocationId}`);
    if (reply.status === 200) {
      const record = JSON.parse(reply.text) as { instanceId?: string; status: string };
      if (record.status === 'succeeded' && record.instanceId) return record.instanceId;
    }
    await sleep(10);
  }
  throw new Error(`invocation ${invocationId} was never recorded`);
}

async function pausedCount(daemon: Daemon, name: string): Promise<number> {
  const reply = await call(daemon, 'GET', `/v1/functions/${name}`);
  return (JSON.parse(reply.text) as { instances: { paused: number } }).instances.paused;
}

async function untilPaused(daemon: Daemon, name: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while ((await pausedCount(daemon, name)) === 0) {
    if (Date.now() > deadline) throw new Error(`${name} was never paused`);
    await sleep(10);
  }
}

/** The instance's cgroup directory in a v1 hierarchy (the node's own cgroup may be nested). */
function instanceDir(controller: string, tag: string, instanceId: string): string | undefined {
  const walk = (dir: string, depth: number): string | undefined => {
    const candidate = path.join(dir, 'petri', tag, ...(instanceId ? [instanceId] : []));
    if (fs.existsSync(candidate)) return candidate;
    if (depth > 6) return undefined;
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      if (!entry.isDirectory() || entry.name === 'petri') continue;
      const found = walk(path.join(dir, entry.name), depth + 1);
      if (found) return found;
    }
    return undefined;
  };
  const root = path.join(CGROUP_ROOT, controller);
  return fs.existsSync(root) ? walk(root, 0) : undefined;
}

function readNumber(file: string | undefined): number | undefined {
  if (!file) return undefined;
  try {
    return Number(fs.readFileSync(file, 'utf8').trim());
  } catch {
    return undefined;
  }
}

function memoryBytes(tag: string, instanceId: string): number | undefined {
  const dir = instanceDir('memory', tag, instanceId);
  return readNumber(dir && path.join(dir, 'memory.usage_in_bytes'));
}

/** The node says paused from the freeze's first step; the kernel says FROZEN once every task stopped. */
async function untilFrozen(tag: string, instanceId: string): Promise<void> {
  const dir = instanceDir('freezer', tag, instanceId);
  if (!dir) throw new Error(`no freezer cgroup for ${instanceId}`);
  const deadline = Date.now() + 5000;
  while (fs.readFileSync(path.join(dir, 'freezer.state'), 'utf8').trim() !== 'FROZEN') {
    if (Date.now() > deadline) throw new Error(`${instanceId} was never frozen`);
    await sleep(5);
  }
}

/** CPU share of one CPU the (paused) instance used over `ms`, from cpuacct.usage. */
async function cpuShare(tag: string, instanceId: string, ms: number): Promise<number | undefined> {
  const dir = instanceDir('cpuacct', tag, instanceId);
  const file = dir && path.join(dir, 'cpuacct.usage');
  const before = readNumber(file);
  const started = performance.now();
  await sleep(ms);
  const after = readNumber(file);
  if (before === undefined || after === undefined) return undefined;
  return (after - before) / 1e6 / (performance.now() - started);
}

/** Ready runtimes of the node's prewarm set (GET /v1/node). */
async function prewarmsReady(daemon: Daemon): Promise<number> {
  const reply = await call(daemon, 'GET', '/v1/node');
  const node = JSON.parse(reply.text) as { prewarm: { sets: { ready: number }[] } };
  return node.prewarm.sets.reduce((sum, set) => sum + set.ready, 0);
}

/** Waits (untimed) until the set has refilled, so no refill runs during the next sample. */
async function untilPrewarmReady(daemon: Daemon): Promise<void> {
  const deadline = Date.now() + 30_000;
  while ((await prewarmsReady(daemon)) === 0) {
    if (Date.now() > deadline) throw new Error('the prewarm set never refilled');
    await sleep(10);
  }
}

/** memory.usage_in_bytes of the smallest `prewarm-*` cgroup: a ready runtime, no function. */
function prewarmBytes(tag: string): number | undefined {
  const root = instanceDir('memory', tag, '');
  if (!root) return undefined;
  const sizes = fs
    .readdirSync(root)
    .filter((id) => id.startsWith('prewarm-'))
    .map((id) => readNumber(path.join(root, id, 'memory.usage_in_bytes')))
    .filter((bytes): bytes is number => bytes !== undefined);
  return sizes.length > 0 ? Math.min(...sizes) : undefined;
}

/** One round for one handler, its paths in `order`. */
async function round(
  daemon: Daemon,
  tag: string,
  key: HandlerKey,
  order: readonly MeasuredPath[],
  samples: Samples,
): Promise<void> {
  for (const wanted of order) {
    if (wanted === 'restore') {
      const restored = await invoke(daemon, `${key}-restore`);
      if (restored.path !== 'restore') throw new Error(`${key}-restore started ${restored.path}`);
      samples.ms.restore.push(restored.ms);
      await sleep(COLD_GAP_MS);
      continue;
    }
    if (wanted === 'prewarm') {
      await untilPrewarmReady(daemon);
      const bytes = prewarmBytes(tag);
      if (bytes !== undefined) samples.idleBytes.prewarm.push(bytes);
      const bound = await invoke(daemon, `${key}-prewarm`);
      if (bound.path !== 'prewarm') throw new Error(`${key}-prewarm started ${bound.path}`);
      samples.ms.prewarm.push(bound.ms);
      await sleep(COLD_GAP_MS);
      await untilPrewarmReady(daemon);
      continue;
    }
    if (wanted === 'cold') {
      const cold = await invoke(daemon, `${key}-cold`);
      if (cold.path !== 'cold') throw new Error(`${key}-cold started ${cold.path}`);
      samples.ms.cold.push(cold.ms);
      await sleep(COLD_GAP_MS);
      continue;
    }
    // An instance of the kept function, idle and running: reuse it at once for warm.
    const primed = await invoke(daemon, key);
    const instanceId = await instanceOf(daemon, primed.id);
    if (wanted === 'warm') {
      const warm = await invoke(daemon, key);
      if (warm.path === 'warm') samples.ms.warm.push(warm.ms);
      const running = memoryBytes(tag, instanceId);
      if (running !== undefined) samples.idleBytes.running.push(running);
      continue;
    }
    await untilPaused(daemon, key);
    await untilFrozen(tag, instanceId);
    const share = await cpuShare(tag, instanceId, CPU_WINDOW_MS);
    if (share !== undefined) samples.pausedCpuShare.push(share);
    const frozen = memoryBytes(tag, instanceId);
    if (frozen !== undefined) samples.idleBytes.paused.push(frozen);
    const paused = await invoke(daemon, key);
    if (paused.path !== 'paused') throw new Error(`${key} was ${paused.path}, not paused`);
    samples.ms.paused.push(paused.ms);
  }
}

interface HandlerReport {
  ms: Record<MeasuredPath, Summary>;
  overCold: Record<MeasuredPath, number>;
  overWarm: Record<MeasuredPath, number>;
  idleMb: { running: number; paused: number; prewarm: number };
  pausedCpuPercent: { max: number; mean: number };
}

function report(samples: Samples): HandlerReport {
  const ms = Object.fromEntries(PATHS.map((p) => [p, summarize(samples.ms[p])])) as Record<
    MeasuredPath,
    Summary
  >;
  const over = (base: MeasuredPath) =>
    Object.fromEntries(PATHS.map((p) => [p, ratio(ms[p].p50, ms[base].p50)])) as Record<
      MeasuredPath,
      number
    >;
  const mb = (values: number[]) =>
    values.length === 0 ? Number.NaN : Math.round(summarize(values).p50 / 2 ** 20);
  const shares = samples.pausedCpuShare.map((share) => share * 100);
  return {
    ms,
    overCold: over('cold'),
    overWarm: over('warm'),
    idleMb: {
      running: mb(samples.idleBytes.running),
      paused: mb(samples.idleBytes.paused),
      prewarm: mb(samples.idleBytes.prewarm),
    },
    pausedCpuPercent: {
      max: Math.max(...shares),
      mean: shares.reduce((a, b) => a + b, 0) / Math.max(1, shares.length),
    },
  };
}

const fixed = (value: number, digits = 2): string => value.toFixed(digits);

/** Waits for the function's snapshot build to end, ready or failed. */
async function builtSnapshot(daemon: Daemon, name: string): Promise<SnapshotFigures> {
  const deadline = Date.now() + 120_000;
  for (;;) {
    const reply = await call(daemon, 'GET', `/v1/functions/${name}`);
    const view = JSON.parse(reply.text) as { snapshot?: SnapshotFigures };
    if (view.snapshot && view.snapshot.state !== 'building') return view.snapshot;
    if (Date.now() > deadline) throw new Error(`the snapshot of ${name} was never built`);
    await sleep(100);
  }
}

/** A tier on tmpfs (when /dev/shm is one) before one on disk, as a node would list them. */
function snapshotTiers(stateDir: string): { name: string; dir: string; capacityMb: number }[] {
  const tmpfs = fs.existsSync('/dev/shm')
    ? [{ name: 'tmpfs', dir: fs.mkdtempSync('/dev/shm/petri-bench-tier-'), capacityMb: 512 }]
    : [];
  return [...tmpfs, { name: 'disk', dir: path.join(stateDir, 'tier-disk'), capacityMb: 4096 }];
}

export async function run(argv: string[]): Promise<void> {
  const args = benchArgs(argv, { rounds: { type: 'string', default: '10' } });
  const rounds = Number(args.rounds);
  const testbed = canMakeTestbed() ? await createTestbed() : undefined;
  if (!testbed) throw new Error('start-paths needs root (cgroup freezer, a network namespace)');
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'petri-bench-start-'));
  const configFile = path.join(stateDir, 'config.json');
  const tiers = snapshotTiers(stateDir);
  fs.writeFileSync(
    configFile,
    JSON.stringify({
      startPaths: { pauseGraceMs: 50 },
      snapshots: { tiers },
      // Only the `-prewarm` functions match (egress on): every other one starts as before.
      prewarm: [{ runtime: 'node', memoryMb: 256, count: 1, egress: true }],
    }),
  );
  const daemon = await spawnDaemon({ stateDir, testbed, configFile });
  const tag = nodeTagFrom(stateDir);
  const samples: Record<HandlerKey, Samples> = { light: newSamples(), heavy: newSamples() };
  const bare: number[] = [];
  try {
    for (const [key, code] of Object.entries(HANDLERS)) {
      await deploy(daemon, key, code, {});
      await deploy(daemon, `${key}-cold`, code, { keepAlive: { ms: 0 } });
      await deploy(daemon, `${key}-restore`, code, { keepAlive: { ms: 0 }, snapshot: true });
      await deploy(daemon, `${key}-prewarm`, code, {
        keepAlive: { ms: 0 },
        network: { egress: true },
      });
    }
    for (const key of Object.keys(HANDLERS) as HandlerKey[]) {
      const snapshot = await builtSnapshot(daemon, `${key}-restore`);
      if (snapshot.state !== 'ready') throw new Error(`no snapshot of ${key}: ${snapshot.reason}`);
      const tier = tiers.find((t) => t.name === snapshot.tier)!;
      samples[key].snapshot = { ...snapshot, ...heldBy(tier.dir, `${key}-restore-1.blob`) };
    }
    for (let r = 0; r < rounds; r++) {
      progress(`round ${r + 1}/${rounds}`);
      // Rotate the order, so no path always runs first (or right after a cold start).
      const order = PATHS.map((_, i) => PATHS[(i + r) % PATHS.length]);
      for (const key of Object.keys(HANDLERS) as HandlerKey[])
        await round(daemon, tag, key, order, samples[key]);
      bare.push(await bareNodeFirstByte(process.execPath));
    }
  } finally {
    await daemon.close();
    // The daemon only borrowed the namespace: it is the bench's to remove.
    await testbed.close();
    fs.rmSync(stateDir, { recursive: true, force: true });
    for (const tier of tiers) fs.rmSync(tier.dir, { recursive: true, force: true });
  }
  const light = report(samples.light);
  const heavy = report(samples.heavy);
  const bareSummary = summarize(bare);
  const targets = {
    pausedOverWarmLight: {
      value: light.overWarm.paused,
      target: 2,
      met: light.overWarm.paused <= 2,
    },
    pausedOverWarmHeavy: {
      value: heavy.overWarm.paused,
      target: 2,
      met: heavy.overWarm.paused <= 2,
    },
    pausedCpuPercent: {
      value: Math.max(light.pausedCpuPercent.max, heavy.pausedCpuPercent.max),
      target: 1,
      met: Math.max(light.pausedCpuPercent.max, heavy.pausedCpuPercent.max) <= 1,
    },
    prewarmOverColdLight: {
      value: light.overCold.prewarm,
      target: 0.25,
      met: light.overCold.prewarm <= 0.25,
    },
    restoreOverColdHeavy: {
      value: heavy.overCold.restore,
      target: 0.5,
      met: heavy.overCold.restore <= 0.5,
    },
  };
  const rows: (string | number)[][] = [];
  for (const [key, r] of [
    ['light', light],
    ['heavy', heavy],
  ] as const) {
    for (const p of PATHS) {
      rows.push([
        key,
        p,
        fixed(r.ms[p].p50),
        fixed(r.ms[p].p99),
        fixed(r.overCold[p], 3),
        fixed(r.overWarm[p], 3),
        r.ms[p].n,
      ]);
    }
  }
  console.log(
    table(['handler', 'path', 'p50 ms', 'p99 ms', '÷ cold', '÷ warm', 'n'], rows, {
      title: `npm run bench -- start-paths · ${os.availableParallelism()} cores · ${rounds} alternating rounds · time to full response`,
    }),
  );
  console.log(
    table(
      ['figure', 'light', 'heavy'],
      [
        ['idle running instance, memory (MB)', light.idleMb.running, heavy.idleMb.running],
        ['paused instance, memory (MB)', light.idleMb.paused, heavy.idleMb.paused],
        [
          'paused instance CPU, max % of one CPU',
          fixed(light.pausedCpuPercent.max, 3),
          fixed(heavy.pausedCpuPercent.max, 3),
        ],
        [
          'cold p50 ÷ bare node to first byte p50',
          fixed(ratio(light.ms.cold.p50, bareSummary.p50), 2),
          fixed(ratio(heavy.ms.cold.p50, bareSummary.p50), 2),
        ],
        ['bare node to first byte, p50 ms', fixed(bareSummary.p50), ''],
        [
          'module-level init: cold p50 − light cold p50 (ms)',
          '',
          fixed(heavy.ms.cold.p50 - light.ms.cold.p50, 1),
        ],
        [
          'snapshot size (MB), tier',
          `${fixed((samples.light.snapshot?.bytes ?? 0) / 2 ** 20, 1)} ${samples.light.snapshot?.tier}`,
          `${fixed((samples.heavy.snapshot?.bytes ?? 0) / 2 ** 20, 1)} ${samples.heavy.snapshot?.tier}`,
        ],
        [
          'snapshot held in memory (MB): tmpfs pages; on disk 0 (page cache only)',
          fixed((samples.light.snapshot?.memoryBytes ?? 0) / 2 ** 20, 1),
          fixed((samples.heavy.snapshot?.memoryBytes ?? 0) / 2 ** 20, 1),
        ],
        [
          'snapshot build time (ms)',
          samples.light.snapshot?.buildMs ?? '',
          samples.heavy.snapshot?.buildMs ?? '',
        ],
        ['ready prewarmed runtime, memory (MB)', light.idleMb.prewarm, heavy.idleMb.prewarm],
      ],
      { title: 'idle states and the cold path against bare node (same rounds)' },
    ),
  );
  console.log(
    table(
      ['target', 'value', 'target', 'met'],
      Object.entries(targets).map(([name, t]) => [
        name,
        fixed(t.value, 3),
        `≤ ${t.target}`,
        t.met ? 'yes' : 'no',
      ]),
      { title: 'targets (issue #11)' },
    ),
  );
  await writeJson(args.json as string | undefined, {
    benchmark: 'start-paths',
    machine: machineFacts(),
    method: {
      rounds,
      order: 'cold, warm, paused, prewarm, restore rotated each round; light then heavy',
      timedTo: 'full HTTP response (client side); bare node to its first byte on a pipe',
      pauseGraceMs: 50,
      cpuWindowMs: CPU_WINDOW_MS,
      coldFunction: 'keepAlive.ms 0, so every invocation is a cold start',
      restoreFunction: 'snapshot: true and keepAlive.ms 0: every invocation restores the snapshot',
      heavyDigests: HEAVY_DIGESTS,
      heavyInitMs: heavy.ms.cold.p50 - light.ms.cold.p50,
      prewarmFunction:
        'keepAlive.ms 0 and egress on, matching the one prewarm set (256 MB, egress): every invocation binds a ready runtime; the set refills (untimed) before the next sample. Its cold baseline has egress off, which, if anything, makes cold cheaper',
    },
    light,
    heavy,
    snapshots: { light: samples.light.snapshot, heavy: samples.heavy.snapshot },
    bareNodeFirstByteMs: bareSummary,
    targets,
  });
}
