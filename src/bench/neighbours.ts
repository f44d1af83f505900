import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { Pool } from 'undici';
import { canMakeTestbed, createTestbed, spawnDaemon, type Daemon } from '../harness/index.ts';
import { table } from '../report/index.ts';
import { benchArgs, machineFacts, ratio, summarize, writeJson, type Summary } from './common.ts';

/**
 * `npm run bench -- neighbours`: how much a hostile function hurts the
 * others on its node. A neighbour function is invoked warm, one request at
 * a time, in phases: with no attacker (the baseline), while each attacker
 * runs (one after another), and while all three run together. Attackers,
 * each its own function, invoke themselves back to back for the whole
 * phase: a 200 MB log flood, a 100 MB single-line print, a 50 MB result.
 * The phases repeat for `--rounds`, so drift on a shared machine shows in
 * every phase alike. Reported per phase: the neighbour's p50/p99 over all
 * rounds, the median over rounds of their ratio to the same round's
 * baseline, the daemon's RSS growth within the phase (peak minus the RSS
 * it started with; the no-attacker phases are the control: V8 sizes its
 * heap to the neighbour's load too) and the daemon's CPU use.
 */

const HERE = path.dirname(fileURLToPath(import.meta.url));
const EXAMPLES = path.resolve(HERE, '../../examples');
const ATTACKER = path.join(HERE, 'neighbour-functions', 'attacker');
const MiB = 1024 * 1024;
const TARGET_P99_MS = 50;
const TARGET_RSS_GROWTH_MB = 64;

interface Attack {
  name: string;
  kind: 'flood' | 'line' | 'result';
  mb: number;
  /** Enough for the attack's own strings, and no more CPU than needed (memory buys CPU). */
  memoryMb: number;
  label: string;
}

const ATTACKS: Attack[] = [
  { name: 'flood', kind: 'flood', mb: 200, memoryMb: 512, label: '200 MB log flood' },
  { name: 'big-line', kind: 'line', mb: 100, memoryMb: 1024, label: '100 MB single-line print' },
  { name: 'big-result', kind: 'result', mb: 50, memoryMb: 512, label: '50 MB result attempt' },
];

interface Phase {
  name: string;
  attacks: Attack[];
}

/** One phase of one round. */
interface PhaseRun {
  phase: string;
  samples: number[];
  neighbourFailures: number;
  /** Peak daemon RSS in the phase minus its RSS when the phase started, MB. */
  rssGrowthMb: number;
  /** Daemon CPU time in the phase ÷ its length (1 = one core all the time). */
  daemonCpu: number;
  /** Attack invocations finished in the phase, by outcome (status code or error code). */
  attacks: Record<string, Record<string, number>>;
}

/** One phase over every round. */
interface PhaseResult {
  phase: string;
  neighbour: Summary;
  neighbourFailures: number;
  /** Median over rounds of this phase's neighbour p50 and p99 ÷ the same round's baseline's. */
  ratioP50: number;
  ratioP99: number;
  /** The worst round's RSS growth within the phase, MB. */
  rssGrowthMb: number;
  /** Median over rounds. */
  daemonCpu: number;
  attacks: Record<string, Record<string, number>>;
}

function progress(message: string): void {
  process.stderr.write(`[bench neighbours] ${message}\n`);
}

const CLOCK_TICKS_PER_SECOND = 100;

/** The process's CPU time so far, seconds (user + system, from /proc). */
function cpuSeconds(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND;
}

function rssBytes(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * 1024;
}

/** The store's files (database and write-ahead log), bytes. */
function storeBytes(stateDir: string): number {
  let total = 0;
  for (const file of ['petri.db', 'petri.db-wal']) {
    try {
      total += fs.statSync(path.join(stateDir, file)).size;
    } catch {
      // not there (yet)
    }
  }
  return total;
}

/** What the store counts its logs as taking on disk (log_usage, see storedLogBytes), bytes. */
function keptLogBytes(stateDir: string): number {
  const db = new Database(path.join(stateDir, 'petri.db'), { readonly: true });
  try {
    return (db.prepare('SELECT bytes FROM log_usage').get() as { bytes: number }).bytes;
  } finally {
    db.close();
  }
}

async function deploy(daemon: Daemon, name: string, spec: Record<string, unknown>): Promise<void> {
  const pool = new Pool(daemon.url, { connections: 1 });
  try {
    const response = await pool.request({
      method: 'PUT',
      path: `/v1/functions/${name}`,
      body: JSON.stringify({ runtime: 'node', handler: 'index.handler', ...spec }),
      headers: { ...daemon.headers, 'content-type': 'application/json' },
    });
    const text = await response.body.text();
    if (response.statusCode >= 300) throw new Error(`deploy ${name} failed: ${text}`);
  } finally {
    await pool.close();
  }
}

/** One invocation; returns its latency and outcome (200, or the error code). */
async function invoke(
  pool: Pool,
  auth: Daemon['headers'],
  name: string,
  event: unknown,
): Promise<{ ms: number; outcome: string }> {
  const started = performance.now();
  const response = await pool.request({
    method: 'POST',
    path: `/v1/functions/${name}/invoke`,
    body: JSON.stringify(event),
    headers: { ...auth, 'content-type': 'application/json' },
  });
  const text = await response.body.text();
  const ms = performance.now() - started;
  if (response.statusCode === 200) return { ms, outcome: '200' };
  const code = (JSON.parse(text) as { error?: { code?: string } }).error?.code;
  return { ms, outcome: code ?? String(response.statusCode) };
}

/** Invokes `attack` back to back until `stop()`; counts outcomes. */
function attackLoop(daemon: Daemon, attack: Attack, outcomes: Record<string, number>) {
  let stopped = false;
  const pool = new Pool(daemon.url, { connections: 1, bodyTimeout: 120_000 });
  const running = (async () => {
    while (!stopped) {
      const { outcome } = await invoke(pool, daemon.headers, attack.name, {
        kind: attack.kind,
        mb: attack.mb,
      });
      outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
    }
  })();
  return {
    stop: async () => {
      stopped = true;
      await running;
      await pool.close();
    },
  };
}

async function runPhase(daemon: Daemon, phase: Phase, seconds: number): Promise<PhaseRun> {
  const pid = daemon.child.pid!;
  const rssAtStart = rssBytes(pid);
  const cpuAtStart = cpuSeconds(pid);
  const started = performance.now();
  let peak = rssAtStart;
  const sampler = setInterval(() => (peak = Math.max(peak, rssBytes(pid))), 20);
  const attacks: PhaseResult['attacks'] = {};
  const loops = phase.attacks.map((attack) =>
    attackLoop(daemon, attack, (attacks[attack.name] = {})),
  );
  // Let the attacks get going before the neighbour is measured.
  if (loops.length > 0) await sleep(300);
  const pool = new Pool(daemon.url, { connections: 1 });
  const samples: number[] = [];
  let failures = 0;
  try {
    const until = performance.now() + seconds * 1000;
    while (performance.now() < until) {
      const { ms, outcome } = await invoke(pool, daemon.headers, 'neighbour', {
        n: samples.length,
      });
      if (outcome === '200') samples.push(ms);
      else failures += 1;
    }
  } finally {
    await pool.close();
    await Promise.all(loops.map((loop) => loop.stop()));
    clearInterval(sampler);
  }
  peak = Math.max(peak, rssBytes(pid));
  const elapsed = (performance.now() - started) / 1000;
  return {
    phase: phase.name,
    samples,
    neighbourFailures: failures,
    rssGrowthMb: megabytes(peak - rssAtStart),
    daemonCpu: Math.round(((cpuSeconds(pid) - cpuAtStart) / elapsed) * 1000) / 1000,
    attacks,
  };
}

export async function run(argv: string[]): Promise<void> {
  const args = benchArgs(argv, {
    seconds: { type: 'string', default: '4' },
    rounds: { type: 'string', default: '3' },
    warmup: { type: 'string', default: '15' },
  });
  const seconds = Number(args.seconds);
  const rounds = Number(args.rounds);
  const testbed = canMakeTestbed() ? await createTestbed() : undefined;
  progress(
    testbed ? `running in network namespace ${testbed.name}` : 'not root: running on loopback',
  );
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'petri-bench-neighbours-'));
  const daemon = await spawnDaemon({ stateDir, testbed });
  try {
    // One vCPU's worth, as in `bench invoke`: a 128 MB share would measure its own CPU quota.
    await deploy(daemon, 'neighbour', {
      memoryMb: 1769,
      source: { path: path.join(EXAMPLES, 'echo') },
    });
    for (const attack of ATTACKS) {
      await deploy(daemon, attack.name, { memoryMb: attack.memoryMb, source: { path: ATTACKER } });
    }
    // Long enough for V8 to size the daemon's heap to the neighbour's load.
    progress(`warming up the neighbour (${args.warmup} s) and starting the attackers`);
    const warm = new Pool(daemon.url, { connections: 1 });
    const warmUntil = performance.now() + Number(args.warmup) * 1000;
    for (let i = 0; performance.now() < warmUntil; i++)
      await invoke(warm, daemon.headers, 'neighbour', { i });
    for (const attack of ATTACKS)
      await invoke(warm, daemon.headers, attack.name, { kind: 'warmup', mb: 0 });
    await warm.close();
    await sleep(1000);
    const rssBefore = rssBytes(daemon.child.pid!);
    const storeBefore = storeBytes(stateDir);
    const phases: Phase[] = [
      { name: 'baseline (no attacker)', attacks: [] },
      ...ATTACKS.map((attack) => ({ name: attack.label, attacks: [attack] })),
      { name: 'all three together', attacks: ATTACKS },
    ];
    const runs: PhaseRun[][] = [];
    for (let round = 1; round <= rounds; round++) {
      const runsOfRound: PhaseRun[] = [];
      for (const phase of phases) {
        progress(`round ${round}/${rounds}, ${phase.name}: ${seconds} s`);
        runsOfRound.push(await runPhase(daemon, phase, seconds));
      }
      runs.push(runsOfRound);
    }
    const results = phases.map((phase, index) =>
      combine(
        phase,
        runs.map((r) => r[index]),
        runs,
      ),
    );
    await sleep(1500); // the last log lines and caps written
    const storeGrowthMb = megabytes(storeBytes(stateDir) - storeBefore);
    const keptLogMb = megabytes(keptLogBytes(stateDir));
    const totalRssGrowthMb = megabytes(rssBytes(daemon.child.pid!) - rssBefore);
    const attacked = results.filter((r) => Object.keys(r.attacks).length > 0);
    const worstP99 = Math.max(...attacked.map((r) => r.neighbour.p99));
    const worstRss = Math.max(...attacked.map((r) => r.rssGrowthMb));
    const controlRss = results[0].rssGrowthMb;
    const alive = (await fetch(`${daemon.url}/healthz`)).ok;
    console.log(
      table(
        [
          'phase',
          'neighbour p50',
          'p99',
          'p50 ÷ base',
          'p99 ÷ base',
          'daemon RSS +',
          'daemon CPU',
          'attacks',
        ],
        results.map((r) => [
          r.phase,
          `${r.neighbour.p50.toFixed(2)} ms`,
          `${r.neighbour.p99.toFixed(2)} ms`,
          String(r.ratioP50),
          String(r.ratioP99),
          `${r.rssGrowthMb} MB`,
          `${Math.round(r.daemonCpu * 100)} %`,
          Object.entries(r.attacks)
            .map(([name, outcomes]) => `${name} ${JSON.stringify(outcomes)}`)
            .join(' ') + (r.neighbourFailures ? ` neighbour failures: ${r.neighbourFailures}` : ''),
        ]),
        {
          title: `npm run bench -- neighbours · ${os.availableParallelism()} cores · ${rounds} rounds of ${seconds} s a phase`,
        },
      ),
    );
    console.log(
      `neighbour p99 under attack: worst ${worstP99.toFixed(2)} ms (target < ${TARGET_P99_MS} ms: ${worstP99 < TARGET_P99_MS ? 'met' : 'missed'}); ` +
        `daemon RSS growth in an attack phase: worst ${worstRss} MB (target < ${TARGET_RSS_GROWTH_MB} MB: ${worstRss < TARGET_RSS_GROWTH_MB ? 'met' : 'missed'}; ` +
        `${controlRss} MB with no attacker); over the whole run ${totalRssGrowthMb} MB; ` +
        `store grew ${storeGrowthMb} MB (logs: ${keptLogMb} MB as the store counts them); daemon ${alive ? 'alive' : 'DOWN'}`,
    );
    await writeJson(args.json as string | undefined, {
      benchmark: 'neighbours',
      machine: machineFacts(),
      network: testbed ? 'test namespace over veth' : 'loopback',
      settings: {
        secondsPerPhase: seconds,
        rounds,
        ratios: "medians over rounds of each phase's p50/p99 ÷ the same round's baseline",
        neighbour: { function: 'examples/echo', memoryMb: 1769 },
        attacks: ATTACKS,
        order: 'each round: baseline, each attack alone one after another, all three together',
      },
      warmupSeconds: Number(args.warmup),
      rssBeforeMb: megabytes(rssBefore),
      totalRssGrowthMb,
      phases: results,
      rounds: runs.map((round) =>
        round.map(({ samples, ...run }) => ({ ...run, neighbour: summarize(samples) })),
      ),
      storeGrowthMb,
      keptLogMb,
      targets: {
        neighbourP99Ms: { target: TARGET_P99_MS, worst: worstP99, met: worstP99 < TARGET_P99_MS },
        rssGrowthMb: {
          target: TARGET_RSS_GROWTH_MB,
          worst: worstRss,
          withNoAttacker: controlRss,
          met: worstRss < TARGET_RSS_GROWTH_MB,
        },
      },
      daemonAlive: alive,
    });
  } finally {
    await daemon.close();
    await testbed?.close();
    fs.rmSync(stateDir, { recursive: true, force: true });
  }
}

/** A phase's runs over every round, its ratios taken against each round's own baseline. */
function combine(phase: Phase, phaseRuns: PhaseRun[], runs: PhaseRun[][]): PhaseResult {
  const attacks: PhaseResult['attacks'] = {};
  for (const run of phaseRuns) {
    for (const [name, outcomes] of Object.entries(run.attacks)) {
      attacks[name] ??= {};
      for (const [outcome, count] of Object.entries(outcomes)) {
        attacks[name][outcome] = (attacks[name][outcome] ?? 0) + count;
      }
    }
  }
  const perRound = phaseRuns.map((run, round) => ({
    own: summarize(run.samples),
    base: summarize(runs[round][0].samples),
  }));
  return {
    phase: phase.name,
    neighbour: summarize(phaseRuns.flatMap((run) => run.samples)),
    neighbourFailures: phaseRuns.reduce((sum, run) => sum + run.neighbourFailures, 0),
    ratioP50: ratio(median(perRound.map((r) => r.own.p50 / r.base.p50)), 1),
    ratioP99: ratio(median(perRound.map((r) => r.own.p99 / r.base.p99)), 1),
    rssGrowthMb: Math.max(...phaseRuns.map((run) => run.rssGrowthMb)),
    daemonCpu: median(phaseRuns.map((run) => run.daemonCpu)),
    attacks,
  };
}

function megabytes(bytes: number): number {
  return Math.round((bytes / MiB) * 10) / 10;
}

function median(values: number[]): number {
  return summarize(values).p50;
}
