import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { table } from '../report/index.ts';
import {
  HttpTarget,
  Rng,
  TraceScorer,
  analyseRun,
  percentiles,
  runLoad,
  sampleTrace,
  synthesize,
  wasserstein1,
} from '../workload/index.ts';
import type { Trace, TraceFunction } from '../workload/index.ts';

/** One line of the table; a row without a target is evidence and has no `met`. */
interface Row {
  figure: string;
  value: number | string;
  target?: { text: string; met: boolean };
}

/**
 * `npm run bench -- workload`: the In-Vitro toolkit's targets.
 * - sampler: on a 10,000-function × 60-minute synthetic trace, sizes 10..1000
 *   step 10, 16 trials: WD of In-Vitro summaries ÷ random sampling's median
 *   (≤ 0.2 at every size), offered load strictly increasing with size, whole
 *   run < 60 s (and the rank-based WD's speed-up over a plain sort-merge WD);
 * - load generator: ≥ 5,000 invocations/s open loop against a no-op HTTP
 *   server in a child process: achieved ÷ scheduled rate within 1 %, p99
 *   dispatch lateness ≤ 2 ms (beside the event loop's own idle lateness).
 */
export async function run(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      json: { type: 'string' },
      functions: { type: 'string', default: '10000' },
      minutes: { type: 'string', default: '60' },
      rate: { type: 'string', default: '5000' },
      seconds: { type: 'string', default: '20' },
    },
  });
  const cores = os.availableParallelism();
  const sampler = benchSampler(Number(values.functions), Number(values.minutes));
  const load = await benchLoad(Number(values.rate), Number(values.seconds));
  const rows: Row[] = [
    {
      figure: 'sampler: worst In-Vitro ÷ random WD over sizes',
      value: sampler.worstRatio,
      target: { text: '≤ 0.2', met: sampler.worstRatio <= 0.2 },
    },
    {
      figure: 'sampler: median In-Vitro ÷ random WD (paper: up to 10× better)',
      value: sampler.medianRatio,
      target: { text: '< 1 (better than random)', met: sampler.medianRatio < 1 },
    },
    {
      figure: 'sampler: sizes with ratio ≤ 0.2',
      value: `${sampler.sizesMeetingTarget}/${sampler.sizes}`,
      target: { text: 'all', met: sampler.sizesMeetingTarget === sampler.sizes },
    },
    {
      figure: 'sampler: load strictly increasing with size',
      value: String(sampler.loadIncreasing),
      target: { text: 'true', met: sampler.loadIncreasing },
    },
    {
      figure: 'sampler: run time ÷ 60 s budget',
      value: sampler.seconds / 60,
      target: { text: '< 1', met: sampler.seconds < 60 },
    },
    // Evidence without a target: a local search only bounds the best ratio from above.
    ...sampler.directSearch.map((search): Row => ({
      figure: `sampler: direct search ÷ random WD at ${search.size} (${search.swaps} swaps; best found, not a floor)`,
      value: search.ratio,
    })),
    {
      figure: 'sampler: rank-WD speed-up over sort-merge WD (same run)',
      value: sampler.speedup,
      target: { text: '> 1', met: sampler.speedup > 1 },
    },
    {
      figure: 'load: achieved ÷ scheduled rate',
      value: load.rateRatio,
      target: { text: 'within 1 %', met: Math.abs(1 - load.rateRatio) <= 0.01 },
    },
    {
      figure: 'load: p99 dispatch lateness (ms)',
      value: load.p99LatenessMs,
      target: { text: '≤ 2', met: load.p99LatenessMs <= 2 },
    },
    {
      figure: 'load: p99 lateness ÷ idle event-loop p99 (baseline, same run)',
      value: load.p99LatenessMs / load.idleP99Ms,
    },
    {
      figure: 'load: failures',
      value: load.failures,
      target: { text: '0', met: load.failures === 0 },
    },
  ];
  console.log(
    table(
      ['figure', 'value', 'target', 'met'],
      rows.map(({ figure, value, target }) => [
        figure,
        typeof value === 'number' ? Number(value.toPrecision(4)) : value,
        target?.text ?? '–',
        target ? (target.met ? 'yes' : 'NO') : '–',
      ]),
      { title: `workload benchmark (${cores} cores, ${os.cpus()[0]?.model ?? 'unknown CPU'})` },
    ),
  );
  if (values.json)
    await writeFile(
      values.json,
      JSON.stringify(
        {
          cores,
          sampler,
          load,
          rows: rows.map(({ figure, value, target }) => ({
            figure,
            value,
            target: target?.text ?? null,
            met: target?.met ?? null,
          })),
        },
        null,
        2,
      ) + '\n',
    );
}

function benchSampler(functions: number, minutes: number) {
  const trace = synthesize({ functions, minutes }, new Rng(1));
  const started = performance.now();
  const results = sampleTrace(trace, {
    minSize: 10,
    maxSize: 1000,
    step: 10,
    trials: 16,
    seed: 1,
    baseline: true,
  });
  const seconds = (performance.now() - started) / 1000;
  const ratios = results.map((r) => r.score / (r.random?.score ?? NaN));
  const sorted = [...ratios].sort((a, b) => a - b);
  let loadIncreasing = true;
  for (let i = 1; i < results.length; i++)
    loadIncreasing &&= results[i].invocations > results[i - 1].invocations;
  return {
    functions,
    minutes,
    seconds,
    sizes: results.length,
    worstRatio: sorted[sorted.length - 1],
    medianRatio: sorted[Math.floor(sorted.length / 2)],
    sizesMeetingTarget: ratios.filter((r) => r <= 0.2).length,
    loadIncreasing,
    speedup: wdSpeedup(trace),
    directSearch: directSearch(trace, results),
    perSize: results.map((r, i) => ({
      size: r.size,
      invocations: r.invocations,
      score: r.score,
      random: r.random?.score,
      ratio: ratios[i],
    })),
  };
}

/**
 * Evidence for the sampler-quality target, not part of the method: starting
 * from the In-Vitro summary of a size, a hill climb swaps one function at a
 * time for any function of the whole trace, keeping a swap when it lowers the
 * score. It optimises the score directly, free of nesting. What it finds is
 * one summary of that size, so its score is an upper bound on the best score
 * any summary of that size can reach, not a floor: more swaps keep lowering
 * it, and a sampler may still do better.
 */
function directSearch(trace: Trace, results: ReturnType<typeof sampleTrace>) {
  const scorer = new TraceScorer(trace);
  const n = trace.functions.length;
  const plan: [size: number, swaps: number][] = [
    [10, 4000],
    [100, 2000],
    [1000, 300],
  ];
  return plan.flatMap(([size, swaps]) => {
    const summary = results.find((r) => r.size === size);
    if (!summary?.random) return [];
    const rng = new Rng(7).fork('search', size);
    const subset = Int32Array.from(summary.functions);
    const member = new Uint8Array(n);
    for (const f of subset) member[f] = 1;
    let score = scorer.score(subset).score;
    for (let s = 0; s < swaps; s++) {
      const slot = rng.int(size);
      let candidate = rng.int(n);
      while (member[candidate]) candidate = rng.int(n);
      const previous = subset[slot];
      subset[slot] = candidate;
      const next = scorer.score(subset).score;
      if (next < score) {
        score = next;
        member[previous] = 0;
        member[candidate] = 1;
      } else {
        subset[slot] = previous;
      }
    }
    return [{ size, swaps, score, ratio: score / summary.random.score }];
  });
}

/** Times the sampler's rank-based WD against scoring the same subsets with a plain sort-merge W1. */
function wdSpeedup(trace: Trace): number {
  const scorer = new TraceScorer(trace, 'linear');
  const rng = new Rng(9);
  const all = Int32Array.from({ length: trace.functions.length }, (_, i) => i);
  const subsets = Array.from({ length: 5 }, () => rng.sample(all, 500));
  let t = performance.now();
  for (const s of subsets) scorer.score(s);
  const fast = performance.now() - t;
  t = performance.now();
  const column = (fns: readonly TraceFunction[], m: number) => fns.map((f) => f.counts[m]);
  for (const s of subsets) {
    const chosen = Array.from(s, (i) => trace.functions[i]);
    for (let m = 0; m < trace.minutes; m++) {
      wasserstein1(column(chosen, m), column(trace.functions, m));
      wasserstein1(column(chosen, m), column(trace.functions, m));
    }
  }
  return (performance.now() - t) / fast;
}

async function benchLoad(rate: number, seconds: number) {
  const server = await startNoopServer();
  try {
    // One warm-up minute (connections opened, JIT warm) then four measured ones.
    const functions = 50;
    const minuteMs = (seconds * 1000) / 4;
    const perFunction = Math.round((rate * minuteMs) / 1000 / functions);
    const trace: Trace = {
      minutes: 5,
      functions: Array.from({ length: functions }, (_, i) => tinyFunction(i, perFunction)),
    };
    const idleP99Ms = await idleLateness();
    const data = await runLoad(trace, {
      target: new HttpTarget(`http://127.0.0.1:${server.port}/{function}`, { connections: 32 }),
      minutes: 4,
      warmupMinutes: 1,
      iat: 'exponential',
      seed: 1,
      minuteMs,
    });
    const analysis = analyseRun(data);
    return {
      scheduledRate: analysis.offeredRate,
      achievedRate: analysis.achievedRate,
      rateRatio: analysis.achievedRate / analysis.offeredRate,
      invocations: analysis.invocations,
      p50LatenessMs: analysis.latenessMs.p50,
      p99LatenessMs: analysis.latenessMs.p99,
      maxLatenessMs: analysis.latenessMs.max,
      idleP99Ms,
      p99ResponseMs: analysis.latencyMs.p99,
      failures: analysis.failed,
    };
  } finally {
    server.child.kill();
  }
}

/** How late setImmediate polling sees a deadline on an idle event loop (machine noise). */
async function idleLateness(): Promise<number> {
  const late: number[] = [];
  for (let k = 0; k < 2000; k++) {
    const due = performance.now() + 0.5;
    while (performance.now() < due) await new Promise((r) => setImmediate(r));
    late.push(performance.now() - due);
  }
  return percentiles(late).p99;
}

function tinyFunction(i: number, count: number): TraceFunction {
  const d = {
    average: 1,
    count,
    minimum: 1,
    maximum: 1,
    p0: 1,
    p1: 1,
    p25: 1,
    p50: 1,
    p75: 1,
    p99: 1,
    p100: 1,
  };
  const m = {
    sampleCount: 1,
    average: 128,
    p1: 128,
    p5: 128,
    p25: 128,
    p50: 128,
    p75: 128,
    p95: 128,
    p99: 128,
    p100: 128,
  };
  return {
    owner: 'o',
    app: `a${i}`,
    func: `f${i}`,
    trigger: 'http',
    counts: new Uint32Array(5).fill(count),
    duration: d,
    memory: m,
  };
}

/** A no-op HTTP server in its own process, so it does not share the load generator's event loop. */
async function startNoopServer(): Promise<{ port: number; child: ChildProcess }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'petri-noop-'));
  const file = path.join(dir, 'server.mjs');
  await writeFile(
    file,
    `import http from 'node:http';
const server = http.createServer((req, res) => { req.resume(); req.on('end', () => { res.setHeader('content-type', 'application/json'); res.end('{"durationMs":0}'); }); });
server.keepAliveTimeout = 60000;
server.listen(0, '127.0.0.1', () => process.stdout.write(String(server.address().port) + '\\n'));`,
  );
  const child = spawn(process.execPath, [file], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout?.once('data', (chunk: Buffer) => resolve(Number(chunk.toString().trim())));
    child.once('exit', () => reject(new Error('no-op server exited')));
  });
  child.once('exit', () => void rm(dir, { recursive: true, force: true }));
  return { port, child };
}
