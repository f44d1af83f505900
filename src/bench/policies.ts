import { writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { spawnDaemon } from '../harness/index.ts';
import { KEEP_ALIVE_POLICY_NAMES, type KeepAlivePolicyName } from '../policy/index.ts';
import { table } from '../report/index.ts';
import { coldStartStats, relativeDifference, simulate, type PolicyResult } from '../sim/index.ts';
import {
  PetriTarget,
  Rng,
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
    'live-budget-mb': { type: 'string', default: '768' },
    'keep-alive-ms': { type: 'string', default: '20000' },
    'big-functions': { type: 'string', default: '10000' },
    'big-minutes': { type: 'string', default: '60' },
    'big-budget-mb': { type: 'string', default: '65536' },
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
  const rows: { policy: KeepAlivePolicyName; live: number; sim: number; startMs: number }[] = [];
  for (const policy of KEEP_ALIVE_POLICY_NAMES) {
    const { data, startMs } = await liveRun(trace, policy, { budget, keepAliveMs, schedule });
    const live = coldStartStats(
      trace.functions.length,
      data.fn,
      coldOf(data),
      (i) => data.warmup[i] === 0,
    );
    const [sim] = await simulate(trace, {
      policies: [policy],
      memoryBudgetMb: budget,
      keepAliveMs,
      ...schedule,
      startMs: () => startMs,
      resolutionMs: 1,
    });
    rows.push({ policy, live: live.coldStartRatio, sim: sim.coldStartRatio, startMs });
  }
  const rank = (key: 'live' | 'sim') =>
    [...rows].sort((a, b) => a[key] - b[key]).map((r) => r.policy);
  const within = rows.map((r) => relativeDifference(r.sim, r.live));
  console.log(
    table(
      [
        'policy',
        'live cold-start ratio',
        'sim cold-start ratio',
        'relative difference',
        'start ms',
      ],
      rows.map((r, k) => [r.policy, r.live, r.sim, within[k], r.startMs]),
      {
        title: `live vs simulated (${trace.functions.length} functions, ${schedule.minutes} min of ${minuteMs} ms, budget ${budget} MB)`,
      },
    ),
  );
  const sameRanking = rank('live').join() === rank('sim').join();
  console.log(
    `ranking live: ${rank('live').join(' < ')}; sim: ${rank('sim').join(' < ')} (${sameRanking ? 'same' : 'differs'})`,
  );
  return {
    trace: { functions: trace.functions.length, ...schedule },
    budget,
    keepAliveMs,
    rows,
    within,
    sameRanking,
    rankingLive: rank('live'),
    rankingSim: rank('sim'),
  };
}

function coldOf(data: RunData): Uint8Array {
  const cold = new Uint8Array(data.fn.length);
  // START_PATHS: '', warm, prewarm, restore, cold.
  for (let i = 0; i < cold.length; i++) cold[i] = data.start[i] === 4 ? 1 : 0;
  return cold;
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
): Promise<{ data: RunData; startMs: number }> {
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
  const node = await spawnDaemon({ stateDir: path.join(dir, 'state'), configFile });
  try {
    const data = await runLoad(trace, {
      target: new PetriTarget(node.url, { token: node.token, keepAlivePolicy: policy }),
      ...o.schedule,
    });
    return { data, startMs: await measuredStartMs(node.url, node.headers) };
  } finally {
    await node.close();
    await rm(dir, { recursive: true, force: true });
  }
}

/** The node's median cold-start init time (dispatch to handler start), from its own records. */
async function measuredStartMs(url: string, headers: Record<string, string>): Promise<number> {
  const response = await fetch(`${url}/v1/invocations?limit=1000`, { headers });
  const body = (await response.json()) as {
    invocations?: { startPath?: string; timings?: { initMs?: number } }[];
  };
  const inits = (body.invocations ?? [])
    .map((r) => (r.startPath === 'cold' ? r.timings?.initMs : undefined))
    .filter((ms): ms is number => typeof ms === 'number')
    .sort((a, b) => a - b);
  return inits.length > 0 ? inits[Math.floor(inits.length / 2)] : 60;
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
  const results: PolicyResult[] = await simulate(trace, {
    policies: KEEP_ALIVE_POLICY_NAMES,
    memoryBudgetMb: num(args['big-budget-mb']),
    keepAliveMs: 600_000,
    minutes,
    seed: 1,
    startMs: () => 60,
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
      ],
      results.map((r) => [
        r.policy,
        r.coldStartRatio,
        r.wastedMemoryGbS,
        r.meanInstances,
        r.failed,
        r.prewarmHits,
        r.wallSeconds,
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
  for (const v of verdicts)
    console.log(
      `${v.policy}: cold-start ratio ×${v.coldStartRatioVsFixed.toFixed(3)} of fixed, wasted memory ×${v.wastedVsFixed.toFixed(3)}`,
    );
  return {
    functions: trace.functions.length,
    maxConcurrency,
    minutes,
    invocations,
    budgetMb: num(args['big-budget-mb']),
    results: results.map(({ perFunction: _p, ...r }) => r),
    fixedAtLeastTenPercent: fixed.coldStartRatio >= 0.1,
    verdicts,
  };
}
