import { existsSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { spawnDaemon } from '../harness/index.ts';
import { KEEP_ALIVE_POLICY_NAMES, type KeepAlivePolicyName } from '../policy/index.ts';
import { table } from '../report/index.ts';
import {
  type PolicyFigures,
  type PolicyResult,
  liveFigures,
  relativeDifference,
  simulate,
  simulateIsolated,
} from '../sim/index.ts';
import { ManualClock } from '../node/index.ts';
import {
  PetriTarget,
  Rng,
  START_PATHS,
  buildSchedule,
  runLoad,
  synthesize,
  type RunData,
  type Trace,
} from '../workload/index.ts';
import { benchArgs, machineFacts, writeJson } from './common.ts';

/**
 * Keep-alive policies, two ways (issue "keep-alive research policies"):
 *
 * 1. live vs simulated: one small trace, run open loop against a real node
 *    (its own network namespace) once per policy, and through `simulate`
 *    with the same schedule (seed), memory budget and keep-alive, with the
 *    node's measured cold-start time; cold-start ratios compared per policy
 *    and as a ranking;
 * 2. a 10,000-function trace in the simulator: each policy's cold-start
 *    ratio and wasted memory-time at one memory budget, and how long the
 *    simulation took.
 */
export async function run(argv: string[]): Promise<void> {
  const args = benchArgs(argv, {
    'live-functions': { type: 'string', default: '12' },
    'live-minutes': { type: 'string', default: '4' },
    'minute-ms': { type: 'string', default: '15000' },
    'live-budget-mb': { type: 'string', default: '512' },
    'keep-alive-ms': { type: 'string', default: '20000' },
    'big-functions': { type: 'string', default: '10000' },
    'big-minutes': { type: 'string', default: '60' },
    'big-budget-mb': { type: 'string', default: '262144' },
    'resolution-ms': { type: 'string', default: '10' },
    'big-max-concurrency': { type: 'string', default: '20' },
    skip: { type: 'string', default: '' },
  });
  const skip = new Set(String(args.skip).split(','));
  const report: Record<string, unknown> = { machine: machineFacts() };
  if (!skip.has('live')) report.live = await liveVersusSim(args);
  if (!skip.has('big')) report.big = await bigTrace(args);
  await writeJson(args.json, report);
}

type Args = Record<string, string | boolean | undefined>;

const num = (value: string | boolean | undefined): number => Number(value);

function liveTrace(functions: number, minutes: number): Trace {
  // A small trace with the published shape, kept to functions invoked at least a few times.
  const whole = synthesize({ functions: functions * 20, minutes }, new Rng(3));
  const busy = whole.functions
    .map((fn) => ({ fn, total: fn.counts.reduce((a, b) => a + b, 0) }))
    .filter(({ total }) => total >= minutes && total <= 40 * minutes)
    .slice(0, functions)
    .map(({ fn }) => ({
      ...fn,
      // Keep runs short so the node's two cores are not the bottleneck.
      duration: { ...fn.duration, p0: 5, p1: 5, p25: 10, p50: 20, p75: 40, p99: 80, p100: 100 },
      memory: { ...fn.memory, p100: 128 },
    }));
  return { minutes, functions: busy };
}

async function liveVersusSim(args: Args): Promise<unknown> {
  const trace = liveTrace(num(args['live-functions']), num(args['live-minutes']));
  const minuteMs = num(args['minute-ms']);
  const budget = num(args['live-budget-mb']);
  const keepAliveMs = num(args['keep-alive-ms']);
  const schedule = {
    minutes: trace.minutes - 1,
    warmupMinutes: 1,
    iat: 'exponential' as const,
    seed: 5,
    minuteMs,
  };
  const rows: {
    policy: KeepAlivePolicyName;
    live: number;
    /** Standard error of the live ratio (batch means over time). */
    liveSe: number;
    /** Simulated with each function's constant run time (the previous model). */
    simConstant: number;
    /** Simulated with processor sharing fitted to the same run (the model judged). */
    sim: number;
    liveFigures: PolicyFigures;
    simFigures: PolicyFigures;
    measured: MeasuredSummary;
  }[] = [];
  for (const policy of KEEP_ALIVE_POLICY_NAMES) {
    const { data, measured } = await liveRun(trace, policy, { budget, keepAliveMs, schedule });
    const live = liveFigures(data);
    // The node's own per-function figures from this run: start, run time, stop.
    const common = {
      policies: [policy],
      memoryBudgetMb: budget,
      keepAliveMs,
      ...schedule,
      startMs: (f: number) => measured.startMs[f],
      stopMs: (f: number) => measured.stopMs[f],
      resolutionMs: 1,
    };
    const [constant] = await simulate(trace, {
      ...common,
      runMs: (f, requested) => requested + measured.runOverheadMs[f],
    });
    const share = measured.share;
    const [sim] = await simulate(trace, {
      ...common,
      cpu: { cores: share.cores, demandMs: (_f, requested) => share.scale * requested },
      runMs: () => share.fixedMs,
    });
    rows.push({
      policy,
      live: live.coldStartRatio,
      liveSe: batchStandardError(data),
      simConstant: constant.coldStartRatio,
      sim: sim.coldStartRatio,
      liveFigures: live,
      simFigures: sim.figures,
      measured: summarise(measured),
    });
  }
  const rank = (key: 'live' | 'sim' | 'simConstant') =>
    [...rows].sort((a, b) => a[key] - b[key]).map((r) => r.policy);
  const within = rows.map((r) => relativeDifference(r.sim, r.live));
  // The live ratio's 95 % interval, as a relative band around it.
  const band = rows.map((r) => (r.live > 0 ? (1.96 * r.liveSe) / r.live : 0));
  console.log(
    table(
      [
        'policy',
        'live cold-start ratio',
        'live ± 1.96 SE',
        'sim, CPU shared',
        'relative difference',
        'sim, constant run time',
        'relative difference',
        'live idle GB·s',
        'sim idle GB·s',
        'start ms (median)',
        'stop ms',
      ],
      rows.map((r, k) => [
        r.policy,
        r.live,
        1.96 * r.liveSe,
        r.sim,
        within[k],
        r.simConstant,
        relativeDifference(r.simConstant, r.live),
        r.liveFigures.idleMemoryGbS ?? 'n/a',
        r.simFigures.idleMemoryGbS ?? 'n/a',
        r.measured.startMs,
        r.measured.stopMs,
      ]),
      {
        title: `live vs simulated (${trace.functions.length} functions, ${schedule.minutes} min of ${minuteMs} ms, budget ${budget} MB)`,
      },
    ),
  );
  for (const r of rows) {
    const f = r.measured.share;
    console.log(
      `${r.policy}: CPU sharing fitted on ${f.samples} runs: ${f.cores} cores, demand ${f.scale.toFixed(2)} × requested, +${f.fixedMs.toFixed(1)} ms (rms ${f.rmsMs.toFixed(1)} ms); median run overhead ${r.measured.runOverheadMs} ms`,
    );
  }
  const sameRanking = rank('live').join() === rank('sim').join();
  // Pairs whose live ratios differ by more than their noise (1.96 SE of the difference):
  // the ones a ranking can be checked on. The simulator must order each the same way.
  const pairs: {
    a: string;
    b: string;
    liveDiff: number;
    se: number;
    simDiff: number;
    agrees: boolean;
  }[] = [];
  for (let x = 0; x < rows.length; x++)
    for (let y = x + 1; y < rows.length; y++) {
      const [a, b] = [rows[x], rows[y]];
      const liveDiff = a.live - b.live;
      const se = Math.hypot(a.liveSe, b.liveSe);
      const simDiff = a.sim - b.sim;
      pairs.push({
        a: a.policy,
        b: b.policy,
        liveDiff,
        se,
        simDiff,
        agrees: Math.sign(liveDiff) === Math.sign(simDiff),
      });
    }
  const significant = pairs.filter((p) => Math.abs(p.liveDiff) > 1.96 * p.se);
  for (const p of pairs)
    console.log(
      `${p.a} − ${p.b}: live ${p.liveDiff.toFixed(3)} ± ${(1.96 * p.se).toFixed(3)}${Math.abs(p.liveDiff) > 1.96 * p.se ? ' (significant)' : ' (within noise)'}, sim ${p.simDiff.toFixed(3)} (${p.agrees ? 'same order' : 'other order'})`,
    );
  console.log(
    `ranking live: ${rank('live').join(' < ')}; sim (CPU shared): ${rank('sim').join(' < ')} (${sameRanking ? 'same' : 'differs'}); sim (constant): ${rank('simConstant').join(' < ')}`,
  );
  console.log(
    `within 10 %: ${rows.map((r, k) => `${r.policy} ${(100 * within[k]).toFixed(1)} % (live 95 % band ±${(100 * band[k]).toFixed(1)} %)`).join(', ')}`,
  );
  return {
    trace: { functions: trace.functions.length, ...schedule },
    budget,
    keepAliveMs,
    rows,
    within,
    liveBand95: band,
    sameRanking,
    pairs,
    significantPairsAgree: significant.every((p) => p.agrees),
    rankingLive: rank('live'),
    rankingSim: rank('sim'),
    rankingSimConstant: rank('simConstant'),
  };
}

/**
 * Standard error of a live run's cold-start ratio by batch means: the
 * measured invocations in 10 consecutive batches by arrival, the spread of
 * the batches' ratios over √10 (cold starts cluster in time, so the
 * binomial √(p(1−p)/n) would understate it).
 */
function batchStandardError(data: RunData, batches = 10): number {
  const measured: number[] = [];
  for (let i = 0; i < data.fn.length; i++) if (!data.warmup[i]) measured.push(i);
  measured.sort((a, b) => data.scheduledMs[a] - data.scheduledMs[b]);
  if (measured.length < batches * 5) return NaN;
  const ratios: number[] = [];
  for (let b = 0; b < batches; b++) {
    const part = measured.slice(
      Math.floor((b * measured.length) / batches),
      Math.floor(((b + 1) * measured.length) / batches),
    );
    const cold = part.filter((i) => data.start[i] === COLD_PATH).length;
    ratios.push(cold / part.length);
  }
  const mean = ratios.reduce((a, b) => a + b, 0) / batches;
  const variance = ratios.reduce((a, r) => a + (r - mean) ** 2, 0) / (batches - 1);
  return Math.sqrt(variance / batches);
}

const COLD_PATH = START_PATHS.indexOf('cold');

/** Per trace function: what the node measured of its instances in a live run (ms). */
interface Measured {
  startMs: number[];
  runOverheadMs: number[];
  stopMs: number[];
  /** Processor sharing fitted to the run's execution times (see fitCpuShare). */
  share: CpuFit;
}
type MeasuredSummary = {
  startMs: number;
  runOverheadMs: number;
  stopMs: number;
  share: CpuFit;
};

const median = (values: number[]): number | undefined => {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
};

function summarise(m: Measured): MeasuredSummary {
  return {
    startMs: median(m.startMs) ?? 0,
    runOverheadMs: median(m.runOverheadMs) ?? 0,
    stopMs: median(m.stopMs) ?? 0,
    share: m.share,
  };
}

async function liveRun(
  trace: Trace,
  policy: KeepAlivePolicyName,
  o: {
    budget: number;
    keepAliveMs: number;
    schedule: {
      minutes: number;
      warmupMinutes: number;
      iat: 'exponential';
      seed: number;
      minuteMs: number;
    };
  },
): Promise<{ data: RunData; measured: Measured }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'petri-bench-policies-'));
  const configFile = path.join(dir, 'config.json');
  writeFileSync(
    configFile,
    JSON.stringify({
      memoryBudgetMb: o.budget,
      keepAliveMs: o.keepAliveMs,
      keepAlivePolicy: policy,
      // CPU limits would stretch the synthetic function's calibrated busy loop.
      isolation: { cgroups: 'off', bwrap: 'off', network: 'off', shaping: 'off' },
      logLevel: 'warn',
    }),
  );
  const stateDir = path.join(dir, 'state');
  const node = await spawnDaemon({ stateDir, configFile });
  try {
    const data = await runLoad(trace, {
      target: new PetriTarget(node.url, { token: node.token, keepAlivePolicy: policy }),
      ...o.schedule,
    });
    const records = await invocationRecords(node.url, node.headers);
    await node.stop();
    return { data, measured: measure(trace, data, records, stopTimes(stateDir)) };
  } finally {
    await node.close();
    await rm(dir, { recursive: true, force: true });
  }
}

interface InvocationTimes {
  functionName: string;
  startPath?: string;
  status?: string;
  timings: { initMs?: number; executionMs?: number; startedAt?: number; finishedAt?: number };
}

/** The node's own records of the run's invocations (timings as it measured them). */
async function invocationRecords(
  url: string,
  headers: Record<string, string>,
): Promise<InvocationTimes[]> {
  const response = await fetch(`${url}/v1/invocations?limit=10000`, { headers });
  const body = (await response.json()) as { invocations?: InvocationTimes[] };
  return body.invocations ?? [];
}

/** Per function, how long its instances took from stopping to dead (the node's instance events). */
function stopTimes(stateDir: string): Map<string, number[]> {
  const file = path.join(stateDir, 'petri.db');
  const byFunction = new Map<string, number[]>();
  if (!existsSync(file)) return byFunction;
  const db = new Database(file, { readonly: true });
  try {
    const rows = db
      .prepare(
        `SELECT s.function_name AS fn, d.at - s.at AS ms FROM instance_events s
         JOIN instance_events d ON d.instance_id = s.instance_id AND d.event = 'dead'
         WHERE s.event = 'stopping'`,
      )
      .all() as { fn: string; ms: number }[];
    for (const { fn, ms } of rows) byFunction.set(fn, [...(byFunction.get(fn) ?? []), ms]);
  } finally {
    db.close();
  }
  return byFunction;
}

/**
 * Each function's figures from the live run: median cold-start time (the
 * node's initMs of its cold invocations), median run overhead (its warm
 * invocations' executionMs on the node minus the median time they asked
 * for), median stop time; a function with too few samples gets the
 * node-wide median.
 */
function measure(
  trace: Trace,
  data: RunData,
  records: InvocationTimes[],
  stops: Map<string, number[]>,
): Measured {
  const names = data.meta.functionNames;
  const requested = names.map(() => [] as number[]);
  for (let i = 0; i < data.fn.length; i++)
    if (data.fn[i] >= 0) requested[data.fn[i]].push(data.requestedDurationMs[i]);
  const of = (name: string, path: string, pick: (r: InvocationTimes) => number | undefined) =>
    records
      .filter((r) => r.functionName === name && r.startPath === path)
      .map(pick)
      .filter((ms): ms is number => typeof ms === 'number');
  const starts = names.map((name) => of(name, 'cold', (r) => r.timings.initMs));
  const overheads = names.map((name, f) => {
    const runs = of(name, 'warm', (r) => r.timings.executionMs);
    const asked = median(requested[f]);
    return runs.length >= 3 && asked !== undefined ? [median(runs)! - asked] : [];
  });
  const stopsOf = names.map((name) => stops.get(name) ?? []);
  const perFunction = (lists: number[][], fallback: number): number[] => {
    const all = median(lists.flat()) ?? fallback;
    return trace.functions.map((_, f) => median(lists[f]) ?? all);
  };
  const meanAsked = requested.map((r) => (r.length ? r.reduce((a, b) => a + b, 0) / r.length : 0));
  return {
    startMs: perFunction(starts, 60),
    runOverheadMs: perFunction(overheads, 0),
    stopMs: perFunction(stopsOf, 0),
    share: fitCpuShare(records, new Map(names.map((name, f) => [name, meanAsked[f]]))),
  };
}

/**
 * Processor sharing fitted to one live run's execution times (the node's
 * startedAt and finishedAt of each succeeded invocation, nothing about
 * cold starts): with `k` the mean number of invocations executing on the
 * node during an invocation (itself included) and `R` its function's mean
 * requested time,
 *
 *   executionMs ≈ scale × R × max(1, k / cores) + fixedMs,
 *
 * least squares for scale and fixedMs at each `cores` on a grid, the best
 * fit kept. The simulator then shares `cores` among running invocations,
 * each needing scale × its requested time of one core, plus fixedMs.
 */
export interface CpuFit {
  cores: number;
  scale: number;
  fixedMs: number;
  /** Root mean square error of the fit (ms), and over how many invocations. */
  rmsMs: number;
  samples: number;
}

function fitCpuShare(records: InvocationTimes[], asked: Map<string, number>): CpuFit {
  const runs = records
    .filter((r) => r.status === 'succeeded')
    .map((r) => ({
      start: r.timings.startedAt,
      end: r.timings.finishedAt,
      ms: r.timings.executionMs,
      asked: asked.get(r.functionName),
    }))
    .filter(
      (r): r is { start: number; end: number; ms: number; asked: number } =>
        typeof r.start === 'number' &&
        typeof r.end === 'number' &&
        typeof r.ms === 'number' &&
        typeof r.asked === 'number' &&
        r.end > r.start,
    );
  // Time-averaged concurrency over each run (itself included), by a sweep over all runs.
  const k = runs.map((run) => {
    let overlap = 0;
    for (const other of runs)
      overlap += Math.max(0, Math.min(run.end, other.end) - Math.max(run.start, other.start));
    return overlap / (run.end - run.start);
  });
  let best: CpuFit = { cores: 1, scale: 1, fixedMs: 0, rmsMs: Infinity, samples: runs.length };
  for (let cores = 0.25; cores <= 4.0001; cores += 0.05) {
    const x = runs.map((run, i) => run.asked * Math.max(1, k[i] / cores));
    const y = runs.map((run) => run.ms);
    const fit = leastSquares(x, y);
    if (!fit) continue;
    if (fit.rms < best.rmsMs)
      best = {
        cores: Math.round(cores * 100) / 100,
        scale: fit.slope,
        fixedMs: fit.intercept,
        rmsMs: fit.rms,
        samples: runs.length,
      };
  }
  return best;
}

/** y ≈ slope × x + intercept with both ≥ 0 (intercept 0 and the slope refitted when it would be < 0). */
function leastSquares(
  x: number[],
  y: number[],
): { slope: number; intercept: number; rms: number } | undefined {
  const n = x.length;
  if (n < 10) return undefined;
  const mx = x.reduce((a, b) => a + b, 0) / n;
  const my = y.reduce((a, b) => a + b, 0) / n;
  let sxx = 0;
  let sxy = 0;
  for (let i = 0; i < n; i++) {
    sxx += (x[i] - mx) ** 2;
    sxy += (x[i] - mx) * (y[i] - my);
  }
  if (sxx === 0) return undefined;
  let slope = sxy / sxx;
  let intercept = my - slope * mx;
  if (intercept < 0) {
    intercept = 0;
    slope = x.reduce((a, xi, i) => a + xi * y[i], 0) / x.reduce((a, xi) => a + xi * xi, 0);
  }
  if (!(slope > 0)) return undefined;
  let sse = 0;
  for (let i = 0; i < n; i++) sse += (slope * x[i] + intercept - y[i]) ** 2;
  return { slope, intercept, rms: Math.sqrt(sse / n) };
}

async function bigTrace(args: Args): Promise<unknown> {
  const functions = num(args['big-functions']);
  const minutes = num(args['big-minutes']);
  const whole = synthesize({ functions: Math.ceil(functions * 1.1), minutes }, new Rng(1));
  // The synthetic shape draws rate and duration independently, so a few functions
  // would need thousands of instances at once (80/s × 100 s): no node serves them,
  // and their refusals would drown the cold-start figures. Keep the first
  // `functions` that need at most `big-max-concurrency` instances on average.
  const maxConcurrency = num(args['big-max-concurrency']);
  const trace: Trace = {
    minutes,
    functions: whole.functions
      .filter((fn) => {
        const perMs = fn.counts.reduce((a, b) => a + b, 0) / (minutes * 60_000);
        return perMs * fn.duration.average <= maxConcurrency;
      })
      .slice(0, functions),
  };
  const invocations = trace.functions.reduce((s, f) => s + f.counts.reduce((a, b) => a + b, 0), 0);
  const floorSeconds = await replayFloor(trace, minutes, num(args['resolution-ms']));
  // Each policy in a worker thread of its own, one after another: a fresh heap each.
  const results: PolicyResult[] = await simulateIsolated(trace, {
    policies: KEEP_ALIVE_POLICY_NAMES,
    memoryBudgetMb: num(args['big-budget-mb']),
    keepAliveMs: 600_000,
    minutes,
    seed: 1,
    startMs: 60,
    maxInstancesPerFunction: 1000,
    resolutionMs: num(args['resolution-ms']),
  });
  console.log(
    table(
      [
        'policy',
        'cold-start ratio',
        'wasted GB·s',
        'mean instances',
        'failed',
        'pre-warm hits',
        'sim wall s',
        'sim CPU s',
      ],
      results.map((r) => [
        r.policy,
        r.coldStartRatio,
        r.wastedMemoryGbS,
        r.meanInstances,
        r.failed,
        r.prewarmHits,
        r.wallSeconds,
        r.cpuSeconds,
      ]),
      {
        title: `${functions} functions × ${minutes} min (${invocations} invocations), budget ${String(args['big-budget-mb'])} MB`,
      },
    ),
  );
  const fixed = results.find((r) => r.policy === 'fixed')!;
  const verdicts = results
    .filter((r) => r.policy !== 'fixed')
    .map((r) => ({
      policy: r.policy,
      lowerColdStarts: r.coldStartRatio < fixed.coldStartRatio,
      noMoreWaste: r.wastedMemoryGbS <= fixed.wastedMemoryGbS,
      coldStartRatioVsFixed: r.coldStartRatio / fixed.coldStartRatio,
      wastedVsFixed: r.wastedMemoryGbS / fixed.wastedMemoryGbS,
    }));
  console.log(
    `floor (same schedule through the same clock and step loop, one timer per invocation, no pool): ${floorSeconds.toFixed(2)} s; ` +
      results.map((r) => `${r.policy} ×${(r.wallSeconds / floorSeconds).toFixed(1)}`).join(', '),
  );
  console.log(
    `refused: ${results.map((r) => `${r.policy} ${((100 * r.failed) / r.invocations).toFixed(3)} %`).join(', ')}`,
  );
  for (const v of verdicts)
    console.log(
      `${v.policy}: cold-start ratio ×${v.coldStartRatioVsFixed.toFixed(3)} of fixed, wasted memory ×${v.wastedVsFixed.toFixed(3)}`,
    );
  return {
    functions: trace.functions.length,
    maxConcurrency,
    minutes,
    invocations,
    floorSeconds,
    budgetMb: num(args['big-budget-mb']),
    results: results.map(({ perFunction: _p, data: _d, ...r }) => r),
    fixedAtLeastTenPercent: fixed.coldStartRatio >= 0.1,
    // Refused invocations (queue full or timed out) make the comparison meaningless when common.
    refusedShare: Object.fromEntries(results.map((r) => [r.policy, r.failed / r.invocations])),
    verdicts,
  };
}

/**
 * The baseline the simulator's speed is given against, timed in the same
 * run: the same schedule (built the same way) through the same ManualClock
 * and step loop, each invocation one timer for its requested time, no pool
 * or policy. Seconds from the schedule's first arrival to its last finish.
 */
async function replayFloor(trace: Trace, minutes: number, resolutionMs: number): Promise<number> {
  const schedule = buildSchedule(trace, { minutes, warmupMinutes: 0, iat: 'exponential', seed: 1 });
  const start = performance.now();
  const clock = new ManualClock(0);
  const n = schedule.atMs.length;
  let done = 0;
  const finish = (): void => {
    done += 1;
  };
  let i = 0;
  for (;;) {
    const next = Math.min(i < n ? schedule.atMs[i] : Infinity, clock.nextDue() ?? Infinity);
    if (next === Infinity) break;
    const stepEnd = next + resolutionMs;
    while (i < n && schedule.atMs[i] <= stepEnd) {
      clock.advanceTo(schedule.atMs[i]);
      clock.setTimer(schedule.durationMs[i], finish);
      i += 1;
    }
    clock.advanceTo(stepEnd);
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  if (done !== n) throw new Error(`floor replay finished ${done} of ${n}`);
  return (performance.now() - start) / 1000;
}
