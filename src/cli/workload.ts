import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { SingleBar, Presets } from 'cli-progress';
import type { Command } from 'commander';
import { z } from 'zod';
import { PetriError } from '../errors.ts';
import {
  KEEP_ALIVE_POLICY_NAMES,
  type KeepAlivePolicyName,
  isKeepAlivePolicyName,
} from '../policy/index.ts';
import { table } from '../report/index.ts';
import {
  type PolicyFigures,
  formatPolicyComparison,
  formatSimResults,
  liveFigures,
  simSummary,
  simulateIsolated,
  writePolicyComparison,
  writeSimResults,
} from '../sim/index.ts';
import {
  type LoadTarget,
  HttpTarget,
  PetriTarget,
  Rng,
  formatAnalysis,
  loadTrace,
  parseWindowStart,
  preprocess,
  readRun,
  runLoad,
  runPolicySweep,
  runSweep,
  sampleTrace,
  scaleLabel,
  synthesize,
  writeReport,
  writeSamples,
  writeTrace,
} from '../workload/index.ts';
import { AUTOSCALE_POLICY_NAMES } from '../spec/index.ts';
import { PetriClient } from './client.ts';
import { type CliIo, cliToken, processIo, reportFailure } from './verb.ts';

/**
 * Verbs of the workload toolkit: trace, load, report, sweep. Output goes
 * through `io` (the process' streams by default), so tests can run them
 * in-process as `runCli` does the core verbs.
 */
export function registerWorkloadCommands(program: Command, io: CliIo = processIo()): void {
  const out = (text: string): void => io.stdout(`${text}\n`);
  const action = <S extends z.ZodTypeAny>(
    schema: S,
    run: (options: z.infer<S>, cmd: Command) => Promise<unknown>,
  ): ((...args: unknown[]) => Promise<void>) => wrapAction(program, io, schema, run);
  const trace = program
    .command('trace')
    .description('Azure traces: preprocess, synthesise, sample');

  trace
    .command('preprocess')
    .description(
      'slice a window of an Azure 2019 (or 2021) trace, join its files, drop unusable rows',
    )
    .requiredOption('--trace <dir>', 'trace directory (or a 2021 per-invocation file)')
    .requiredOption('--out <dir>', 'output directory')
    .option('--start <dd:hh:mm>', 'window start: day (1-based), hour, minute', '01:00:00')
    .option('--minutes <n>', 'window length in minutes', '60')
    .option('--lenient', 'skip and count malformed rows instead of failing')
    .option('--memory-mb <mb>', 'memory for traces without memory data (Azure 2021)', '256')
    .action(
      action(PreprocessOptions, async (o) => {
        const report = await preprocess(o.trace, o.out, {
          start: parseWindowStart(o.start),
          minutes: o.minutes,
          lenient: o.lenient,
          defaultMemoryMb: o.memoryMb,
        });
        if (json(program)) return report;
        const malformed = report.malformedRows;
        out(
          table(
            ['', 'functions'],
            [
              ['read', report.functionsRead],
              ['kept', report.functionsKept],
              ['dropped: no invocations in window', report.dropped.noInvocationsInWindow],
              ['dropped: zero average duration', report.dropped.zeroAverageDuration],
              ['dropped: no duration row', report.dropped.noDurationRow],
              ['dropped: no memory row (app)', report.dropped.noMemoryRow],
              ['duplicate rows ignored', report.dropped.duplicateRows],
              ['malformed rows skipped (invocations)', malformed.invocations.count],
              ['malformed rows skipped (durations)', malformed.durations.count],
              ['malformed rows skipped (memory)', malformed.memory.count],
            ],
            {
              title: `${report.format}, window ${report.window.start} + ${report.window.minutes} min`,
            },
          ),
        );
        for (const note of report.notes) out(`note: ${note}`);
        out(`${report.invocationsKept} invocations kept; wrote ${o.out}`);
        return undefined;
      }),
    );

  trace
    .command('synth')
    .description(
      'write a synthetic Azure-2019-format trace with the published shape of the real one',
    )
    .requiredOption('--out <dir>', 'output directory')
    .option('--functions <n>', 'number of functions', '10000')
    .option('--minutes <n>', 'minutes', '60')
    .option('--seed <n>', 'PRNG seed', '1')
    .option('--start-hour <h>', 'hour of day the window starts (diurnal cycle)', '0')
    .action(
      action(SynthOptions, async (o) => {
        const result = synthesize(
          { functions: o.functions, minutes: o.minutes, startMinuteOfDay: o.startHour * 60 },
          new Rng(o.seed),
        );
        await writeTrace(o.out, result);
        const invocations = result.functions.reduce(
          (s, f) => s + f.counts.reduce((a, b) => a + b, 0),
          0,
        );
        const summary = {
          functions: result.functions.length,
          minutes: result.minutes,
          invocations,
          out: o.out,
        };
        if (json(program)) return summary;
        out(
          `wrote ${summary.functions} functions × ${summary.minutes} min (${invocations} invocations) to ${o.out}`,
        );
        return undefined;
      }),
    );

  trace
    .command('sample')
    .description(
      'In-Vitro sampling: nested summaries of increasing size, scored by Wasserstein distance',
    )
    .requiredOption('--trace <dir>', 'trace directory (preprocessed or synthetic)')
    .requiredOption('--out <dir>', 'output directory')
    .option('--min <n>', 'smallest summary', '10')
    .option('--max <n>', 'largest summary', '1000')
    .option('--step <n>', 'size step', '10')
    .option('--trials <n>', 'random draws per size; the best is kept', '16')
    .option('--seed <n>', 'PRNG seed', '1')
    .option('--baseline <kind>', '"random": also score plain random sampling (median of 5 runs)')
    .option(
      '--scale <scale>',
      '"linear" (the paper\'s metric) or "log" (not the paper\'s metric)',
      'linear',
    )
    .option(
      '--method <method>',
      '"invitro" (the paper\'s best of trials) or "search" (optimises the score, never worse than invitro at any size; nests too)',
      'invitro',
    )
    .option('--no-png', 'skip the PNG chart')
    .action(
      action(SampleOptions, async (o) => {
        const whole = await loadTrace(o.trace);
        const bar = progressBar('sampling');
        const started = performance.now();
        const results = sampleTrace(whole, {
          minSize: o.min,
          maxSize: o.max,
          step: o.step,
          trials: o.trials,
          seed: o.seed,
          scale: o.scale,
          method: o.method,
          baseline: o.baseline === 'random',
          onProgress: bar?.update,
        });
        bar?.stop();
        await writeSamples(o.out, whole, results, {
          png: o.png,
          seed: o.seed,
          trials: o.trials,
          scale: o.scale,
          method: o.method,
        });
        const seconds = (performance.now() - started) / 1000;
        if (json(program))
          return { seconds, sizes: results.map(({ functions: _f, ...rest }) => rest) };
        const every = Math.max(1, Math.floor(results.length / 20));
        out(
          table(
            [
              'size',
              'invocations',
              'invocation WD',
              'resource WD',
              'random inv. WD',
              'random res. WD',
              'ratio',
              'load share',
            ],
            results
              .filter((_, i) => i % every === 0 || i === results.length - 1)
              .map((r) => [
                r.size,
                r.invocations,
                r.invocationWd,
                r.resourceWd,
                r.random?.invocationWd,
                r.random?.resourceWd,
                r.random ? r.score / r.random.score : undefined,
                r.loadShare,
              ]),
          ),
        );
        out(`WD scale: ${scaleLabel(o.scale)}; method ${o.method}`);
        out(
          `${results.length} summaries in ${seconds.toFixed(1)} s; wrote ${o.out}/samples, wd.csv, wd.json, wd.svg`,
        );
        return undefined;
      }),
    );

  program
    .command('load')
    .description(
      'replay a trace open loop against Petri (synthetic functions) or any HTTP endpoint',
    )
    .requiredOption('--trace <dir>', 'trace directory (e.g. a summary samples/<N>)')
    .requiredOption('--out <dir>', 'results directory')
    .option('--target <kind>', '"petri" (uses --url) or "http" (uses --url-template)', 'petri')
    .option(
      '--url-template <t>',
      'for --target http: URL with {function}, {index}, {durationMs}, {memoryMb}',
    )
    .option('--minutes <n>', 'measured minutes', '1')
    .option('--warmup <n>', 'warm-up minutes (sent, excluded from results)', '0')
    .option(
      '--iat <kind>',
      'inter-arrival gaps: exponential, uniform or equidistant',
      'exponential',
    )
    .option('--seed <n>', 'PRNG seed', '1')
    .option('--minute-ms <ms>', 'length of a trace minute (compress time for quick runs)', '60000')
    .option('--connections <n>', 'most concurrent connections', '1024')
    .option('--keep', 'for --target petri: leave the synthetic functions deployed')
    .option(
      '--policy <names>',
      `for --target petri: keep-alive policy of the functions (${POLICY_LIST}); a comma-separated list runs once per policy into <out>/<policy> and compares them`,
    )
    .action(
      action(LoadCommandOptions, async (o, cmd) => {
        const url = globalUrl(cmd);
        if (o.policy && o.policy.length > 1)
          return loadPerPolicy(o, o.policy, url, globalToken(cmd), io, json(program));
        const target = makeTarget({ ...o, policy: o.policy?.[0] }, url, globalToken(cmd));
        const whole = await loadTrace(o.trace);
        const bar = progressBar('dispatch');
        const data = await runLoad(whole, {
          target,
          minutes: o.minutes,
          warmupMinutes: o.warmup,
          iat: o.iat,
          seed: o.seed,
          minuteMs: o.minuteMs,
          out: o.out,
          traceLabel: path.resolve(o.trace),
          onPhase: (phase) => {
            if (!bar) io.stderr(`${phase}…\n`);
          },
          onProgress: (sent, total) => bar?.update(sent, total),
        });
        bar?.stop();
        const report = await writeReport(o.out, data);
        if (json(program)) return report.analysis;
        out(formatAnalysis(report.analysis));
        out(`wrote ${o.out}/invocations.csv, results.db, run.json, report.html`);
        return undefined;
      }),
    );

  program
    .command('sim')
    .description(
      'replay a trace through the live pool and keep-alive policy code on a simulated clock',
    )
    .requiredOption(
      '--trace <dir>',
      'trace directory (Azure 2019 format, or Azure 2021 invocations)',
    )
    .requiredOption(
      '--out <dir>',
      'results directory (sim.json, policies.csv, per-function.csv, report.html)',
    )
    .option(
      '--policy <names>',
      `comma-separated keep-alive policies (${POLICY_LIST})`,
      POLICY_LIST.replaceAll(' ', ''),
    )
    .option('--memory-budget <mb>', "the node's memory budget (MB)", '16384')
    .option(
      '--keep-alive-ms <ms>',
      "the fixed policy's keep-alive and the hybrid's fallback",
      '600000',
    )
    .option('--minutes <n>', 'minutes to replay (default: the whole trace)')
    .option('--warmup <n>', 'warm-up minutes (replayed, excluded from the figures)', '0')
    .option(
      '--iat <kind>',
      'inter-arrival gaps: exponential, uniform or equidistant',
      'exponential',
    )
    .option('--seed <n>', 'PRNG seed (the same schedule as `petri load` with this seed)', '1')
    .option('--minute-ms <ms>', 'length of a trace minute', '60000')
    .option(
      '--start-ms <ms>',
      'cold-start time of an instance (cold start p50 measured here: 57 ms)',
      '60',
    )
    .option(
      '--max-instances <n>',
      'most instances per function (node config maxInstancesPerFunction)',
      '32',
    )
    .option('--resolution-ms <ms>', 'events this close are one simulation step', '1')
    .action(
      action(SimCommandOptions, async (o) => {
        const whole = await loadTrace(o.trace);
        const bar = progressBar('simulate');
        // Each policy in a worker thread of its own (a fresh heap each), one after another.
        const results = await simulateIsolated(whole, {
          policies: o.policy,
          memoryBudgetMb: o.memoryBudget,
          keepAliveMs: o.keepAliveMs,
          minutes: o.minutes ?? whole.minutes,
          warmupMinutes: o.warmup,
          iat: o.iat,
          seed: o.seed,
          minuteMs: o.minuteMs,
          startMs: o.startMs,
          maxInstancesPerFunction: o.maxInstances,
          resolutionMs: o.resolutionMs,
          onProgress: (_policy, done, total) => bar?.update(done, total),
        });
        bar?.stop();
        const files = await writeSimResults(o.out, results, {
          trace: path.resolve(o.trace),
          functions: whole.functions.length,
          memoryBudgetMb: o.memoryBudget,
          seed: o.seed,
          startMs: o.startMs,
          resolutionMs: o.resolutionMs,
        });
        if (json(program)) return simSummary(results);
        out(formatSimResults(results));
        out(`wrote ${files.join(', ')}`);
        return undefined;
      }),
    );

  program
    .command('report')
    .description(
      'slowdown, latency, cold starts and failures of a load run; writes report.html and a PNG per chart. ' +
        'Several runs (or a `petri load --policy a,b` directory), or --sim, put keep-alive policies side by side',
    )
    .argument('<results...>', '`petri load` results directories')
    .option('--no-png', 'skip the PNG charts (the HTML report keeps them as SVG)')
    .option('--sim <dir>', 'a `petri sim` out directory: its policies go beside the live runs')
    .option('--out <dir>', 'where a side-by-side comparison goes (default: the first results dir)')
    .action(
      action(ReportOptions, async (o, cmd) => {
        const dirs = cmd.args;
        const runs = await runDirs(dirs);
        if (runs.length > 1 || o.sim !== undefined) {
          const rows = await comparisonRowsOf(runs, o.sim);
          const files = await writePolicyComparison(o.out ?? dirs[0], rows);
          if (json(program)) return rows;
          out(formatPolicyComparison(rows));
          out(`wrote ${files.join(', ')}`);
          return undefined;
        }
        const dir = runs[0];
        const { analysis, html, pngs } = await writeReport(dir, await readRun(dir), {
          png: o.png,
        });
        if (json(program)) return analysis;
        out(formatAnalysis(analysis));
        out(`wrote ${[html, ...pngs].join(', ')}`);
        return undefined;
      }),
    );

  program
    .command('sweep')
    .description('run nested summaries in increasing size until slowdown passes a threshold')
    .requiredOption('--samples <dir>', 'the samples/ directory of `petri trace sample`')
    .requiredOption('--out <dir>', 'results directory')
    .option('--target <kind>', '"petri" (uses --url) or "http" (uses --url-template)', 'petri')
    .option('--url-template <t>', 'for --target http')
    .option('--minutes <n>', 'measured minutes per size', '1')
    .option('--warmup <n>', 'warm-up minutes per size', '0')
    .option('--iat <kind>', 'exponential, uniform or equidistant', 'exponential')
    .option('--seed <n>', 'PRNG seed', '1')
    .option('--minute-ms <ms>', 'length of a trace minute', '60000')
    .option('--connections <n>', 'most concurrent connections', '1024')
    .option('--threshold <x>', 'stop once slowdown exceeds this', '5')
    .option('--failure-threshold <share>', 'or once this share of invocations fails', '0.05')
    .option('--keep', 'leave the synthetic functions deployed')
    .option(
      '--policies <list>',
      'compare autoscaling policies: sweep once per policy (on-demand, concurrency, rps; comma-separated)',
    )
    .option('--concurrency-target <n>', 'with --policies: in-flight invocations per instance')
    .option('--rps-target <n>', 'with --policies: invocations per second per instance')
    .option(
      '--policy <names>',
      `keep-alive policy of the functions (${POLICY_LIST}); a comma-separated list sweeps once per policy`,
    )
    .action(
      action(SweepCommandOptions, async (o, cmd) => {
        const url = globalUrl(cmd);
        if (o.policies && o.policy)
          throw new PetriError(
            'InvalidRequest',
            '--policies (autoscaling) and --policy (keep-alive) compare different things: give one',
          );
        if (o.policies)
          return policySweep(
            o,
            o.policies,
            'autoscaling',
            url,
            globalToken(cmd),
            io,
            json(program),
          );
        if (o.policy && o.policy.length > 1)
          return policySweep(o, o.policy, 'keep-alive', url, globalToken(cmd), io, json(program));
        const points = await runSweep({
          samplesDir: o.samples,
          out: o.out,
          makeTarget: () => makeTarget({ ...o, policy: o.policy?.[0] }, url, globalToken(cmd)),
          minutes: o.minutes,
          warmupMinutes: o.warmup,
          iat: o.iat,
          seed: o.seed,
          minuteMs: o.minuteMs,
          threshold: o.threshold,
          failureThreshold: o.failureThreshold,
          onRun: (size, point) => {
            if (!point) io.stderr(`size ${size}…\n`);
          },
        });
        if (json(program)) return points;
        out(
          table(
            [
              'size',
              'offered inv/s',
              'slowdown',
              'p99 ms',
              'failure rate',
              'open loop',
              'node CPU',
              'stopped by',
            ],
            points.map((p) => [
              p.size,
              p.offeredRate,
              p.slowdown,
              p.p99LatencyMs,
              p.failureRate,
              p.openLoop ? 'yes' : 'NO',
              p.nodeCpuUtilisation ?? 'n/a',
              p.stoppedBy ?? '',
            ]),
          ),
        );
        out(
          `wrote ${o.out}/sweep.json, sweep.csv, sweep-slowdown.svg, sweep-failures.svg, sweep-cpu.svg, report.html`,
        );
        return undefined;
      }),
    );
}

/**
 * `petri sweep --policies`: the same summaries once per autoscaling policy,
 * each deployed with that policy, with the node's CPU-seconds read from
 * `GET /v1/node` around every size.
 */
async function policySweep(
  o: z.infer<typeof SweepCommandOptions>,
  policies: string[],
  kind: 'autoscaling' | 'keep-alive',
  url: string,
  token: string | undefined,
  io: CliIo,
  asJson: boolean,
): Promise<unknown> {
  const out = (text: string): void => io.stdout(`${text}\n`);
  if (o.target !== 'petri')
    throw new PetriError(
      'InvalidRequest',
      '--policies needs --target petri (it deploys with each policy)',
    );
  const client = new PetriClient(url, token);
  const cpuSeconds = async (): Promise<number | null> => {
    const { cpu } = await client.node();
    return cpu && cpu.instancesMs !== null ? (cpu.instancesMs + cpu.daemonMs) / 1000 : null;
  };
  const autoscaling = (policy: string): Record<string, unknown> => {
    if (policy === 'concurrency' && o.concurrencyTarget !== undefined)
      return { policy, target: o.concurrencyTarget };
    if (policy === 'rps' && o.rpsTarget !== undefined) return { policy, target: o.rpsTarget };
    return { policy };
  };
  const results = await runPolicySweep({
    samplesDir: o.samples,
    out: o.out,
    policies,
    kind,
    makeTarget: (policy) =>
      new PetriTarget(url, {
        connections: o.connections,
        cleanup: !o.keep,
        token,
        ...(kind === 'autoscaling'
          ? { autoscaling: autoscaling(policy) }
          : { keepAlivePolicy: PolicyName.parse(policy) }),
      }),
    minutes: o.minutes,
    warmupMinutes: o.warmup,
    iat: o.iat,
    seed: o.seed,
    minuteMs: o.minuteMs,
    threshold: o.threshold,
    failureThreshold: o.failureThreshold,
    cpuSeconds,
    onRun: (policy, size, point) => {
      if (!point) io.stderr(`${policy}: size ${size}…\n`);
    },
  });
  if (asJson) return results;
  out(
    table(
      ['policy', 'size', 'offered inv/s', 'slowdown', 'CPU-s', 'cold-start rate', 'failure rate'],
      results.flatMap(({ policy, points }) =>
        points.map((p) => [
          policy,
          p.size,
          p.offeredRate,
          p.slowdown,
          p.cpuSeconds ?? 'n/a',
          p.coldStartRate,
          p.failureRate,
        ]),
      ),
    ),
  );
  out(
    `wrote ${o.out}/policies.json, policies.csv, policies-slowdown.svg, policies-cpu.svg, report.html and a sweep per policy`,
  );
  return undefined;
}

/**
 * `petri load --policy a,b,…`: the same trace, schedule and seed once per
 * keep-alive policy into `<out>/<policy>`, then the policies side by side
 * (the figures `petri report` and `petri sim` compute, by the same code).
 */
async function loadPerPolicy(
  o: z.infer<typeof LoadCommandOptions>,
  policies: KeepAlivePolicyName[],
  url: string,
  token: string | undefined,
  io: CliIo,
  asJson: boolean,
): Promise<unknown> {
  if (o.target !== 'petri')
    throw new PetriError('InvalidRequest', '--policy needs --target petri (it deploys with it)');
  const whole = await loadTrace(o.trace);
  const rows: PolicyFigures[] = [];
  for (const policy of policies) {
    io.stderr(`${policy}…\n`);
    const out = path.join(o.out, policy);
    const data = await runLoad(whole, {
      target: makeTarget({ ...o, policy }, url, token),
      minutes: o.minutes,
      warmupMinutes: o.warmup,
      iat: o.iat,
      seed: o.seed,
      minuteMs: o.minuteMs,
      out,
      label: policy,
      traceLabel: path.resolve(o.trace),
    });
    await writeReport(out, data, { png: false });
    rows.push(liveFigures(data));
  }
  const files = await writePolicyComparison(o.out, rows);
  if (asJson) return rows;
  io.stdout(`${formatPolicyComparison(rows)}\n`);
  io.stdout(`wrote ${files.join(', ')} and a run per policy\n`);
  return undefined;
}

/** The load runs named: a results directory, or one whose subdirectories are (per policy). */
async function runDirs(dirs: string[]): Promise<string[]> {
  const runs: string[] = [];
  for (const dir of dirs) {
    if (await exists(path.join(dir, 'run.json'))) {
      runs.push(dir);
      continue;
    }
    const entries = await readdir(dir, { withFileTypes: true }).catch(() => {
      throw new PetriError('InvalidRequest', `${dir} is not a directory`);
    });
    const inside = [];
    for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name)))
      if (entry.isDirectory() && (await exists(path.join(dir, entry.name, 'run.json'))))
        inside.push(path.join(dir, entry.name));
    if (inside.length === 0)
      throw new PetriError('InvalidRequest', `${dir} is not a load result (no run.json)`);
    runs.push(...inside);
  }
  return runs;
}

async function exists(file: string): Promise<boolean> {
  return stat(file).then(
    () => true,
    () => false,
  );
}

/** What `petri sim` wrote in sim.json: an entry per policy with its figures. */
const SimFiguresFile = z.array(
  z.object({
    figures: z.object({
      policy: z.string().max(200),
      source: z.literal('sim'),
      invocations: z.number(),
      coldStarts: z.number(),
      coldStartRatio: z.number(),
      slowdown: z.number(),
      failureRate: z.number(),
      idleMemoryGbS: z.number().nullable(),
      cpuSeconds: z.number().nullable(),
    }),
  }),
);

async function comparisonRowsOf(
  runs: string[],
  simDir: string | undefined,
): Promise<PolicyFigures[]> {
  const rows: PolicyFigures[] = [];
  for (const dir of runs) rows.push(liveFigures(await readRun(dir)));
  if (simDir !== undefined) {
    const file = path.join(simDir, 'sim.json');
    const text = await readFile(file, 'utf8').catch(() => {
      throw new PetriError('InvalidRequest', `${simDir} is not a petri sim result (no sim.json)`);
    });
    const parsed = SimFiguresFile.safeParse(safeJson(text));
    if (!parsed.success)
      throw new PetriError('InvalidRequest', `${file}: ${parsed.error.issues[0]?.message}`);
    rows.push(...parsed.data.map((entry) => entry.figures));
  }
  return rows;
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

const int = (min: number) => z.coerce.number().int().min(min);
const iat = z.enum(['exponential', 'uniform', 'equidistant']);

const PreprocessOptions = z.object({
  trace: z.string(),
  out: z.string(),
  start: z.string(),
  minutes: int(1),
  lenient: z.boolean().default(false),
  memoryMb: int(1),
});
const SynthOptions = z.object({
  out: z.string(),
  functions: int(1),
  minutes: int(1),
  seed: int(0),
  startHour: z.coerce.number().min(0).max(23),
});
const SampleOptions = z.object({
  trace: z.string(),
  out: z.string(),
  min: int(1),
  max: int(1),
  step: int(1),
  trials: int(1),
  seed: int(0),
  baseline: z.enum(['random']).optional(),
  scale: z.enum(['log', 'linear']),
  method: z.enum(['invitro', 'search']),
  png: z.boolean().default(true),
});
const ReportOptions = z.object({
  png: z.boolean().default(true),
  sim: z.string().optional(),
  out: z.string().optional(),
});
const POLICY_LIST = KEEP_ALIVE_POLICY_NAMES.join(', ');
const PolicyName = z.enum(KEEP_ALIVE_POLICY_NAMES, { error: `must be one of ${POLICY_LIST}` });
const TargetOptions = z.object({
  target: z.enum(['petri', 'http']),
  urlTemplate: z.string().optional(),
  connections: int(1),
  keep: z.boolean().default(false),
  policy: z
    .string()
    .transform((list) => list.split(',').map((p) => p.trim()))
    .pipe(
      z
        .array(PolicyName)
        .min(1)
        .refine((l) => new Set(l).size === l.length, 'lists a policy twice'),
    )
    .optional(),
});
const SimCommandOptions = z.object({
  trace: z.string(),
  out: z.string(),
  policy: z
    .string()
    .transform((list) => list.split(',').map((name) => name.trim()))
    .refine((names) => names.length > 0 && names.every(isKeepAlivePolicyName), {
      message: `a comma-separated list of ${POLICY_LIST}`,
    })
    .transform((names) => names.filter(isKeepAlivePolicyName)),
  memoryBudget: int(1),
  keepAliveMs: int(0),
  minutes: int(1).optional(),
  warmup: int(0),
  iat,
  seed: int(0),
  minuteMs: z.coerce.number().positive(),
  startMs: z.coerce.number().min(0),
  maxInstances: int(1),
  resolutionMs: z.coerce.number().positive().max(1000),
});
const RunOptions = z.object({
  out: z.string(),
  minutes: int(1),
  warmup: int(0),
  iat,
  seed: int(0),
  minuteMs: z.coerce.number().positive(),
});
const LoadCommandOptions = RunOptions.merge(TargetOptions).extend({ trace: z.string() });
const SweepCommandOptions = RunOptions.merge(TargetOptions).extend({
  samples: z.string(),
  threshold: z.coerce.number().positive(),
  policies: z
    .string()
    .transform((list) => list.split(',').map((p) => p.trim()))
    .pipe(
      z
        .array(
          z.enum(AUTOSCALE_POLICY_NAMES, { error: 'each must be on-demand, concurrency or rps' }),
        )
        .min(1)
        .refine((l) => new Set(l).size === l.length, 'lists a policy twice'),
    )
    .optional(),
  concurrencyTarget: z.coerce.number().positive().optional(),
  rpsTarget: z.coerce.number().positive().optional(),
  failureThreshold: z.coerce.number().min(0).max(1),
});

function makeTarget(
  o: Omit<z.infer<typeof TargetOptions>, 'policy'> & { policy?: KeepAlivePolicyName },
  url: string,
  token: string | undefined,
): LoadTarget {
  if (o.target === 'http') {
    if (!o.urlTemplate)
      throw new PetriError('InvalidRequest', '--target http needs --url-template');
    return new HttpTarget(o.urlTemplate, { connections: o.connections });
  }
  return new PetriTarget(url, {
    connections: o.connections,
    cleanup: !o.keep,
    token,
    keepAlivePolicy: o.policy,
  });
}

function globalToken(cmd: Command): string | undefined {
  return cliToken(cmd.optsWithGlobals<{ token?: string }>().token);
}

function globalUrl(cmd: Command): string {
  const { url } = cmd.optsWithGlobals<{ url?: string }>();
  return url ?? 'http://127.0.0.1:8080';
}

function json(program: Command): boolean {
  return program.opts<{ json?: boolean }>().json === true;
}

/**
 * Wraps a command's action: validates its options with zod, prints the
 * returned value as JSON under --json, and reports a PetriError as the
 * core verbs do (exit 1; text on stderr, or JSON on stdout under --json).
 */
function wrapAction<S extends z.ZodTypeAny>(
  program: Command,
  io: CliIo,
  schema: S,
  run: (options: z.infer<S>, cmd: Command) => Promise<unknown>,
): (...args: unknown[]) => Promise<void> {
  return async (...args: unknown[]) => {
    const cmd = args[args.length - 1] as Command;
    try {
      const parsed = schema.safeParse(cmd.opts());
      if (!parsed.success) {
        const issue = parsed.error.issues[0];
        throw new PetriError(
          'InvalidRequest',
          `--${kebab(String(issue?.path[0] ?? ''))}: ${issue?.message}`,
        );
      }
      const result = await run(parsed.data, cmd);
      if (result !== undefined && json(program)) io.stdout(`${JSON.stringify(result, null, 2)}\n`);
    } catch (err) {
      if (!(err instanceof PetriError)) throw err;
      reportFailure(io, err, json(program));
    }
  };
}

function kebab(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/** A progress bar on stderr when stdout is a terminal; undefined otherwise. */
function progressBar(
  label: string,
): { update: (done: number, total: number) => void; stop: () => void } | undefined {
  if (!process.stdout.isTTY) return undefined;
  const bar = new SingleBar(
    {
      format: `${label} [{bar}] {percentage}% {value}/{total} eta {eta_formatted}`,
      stream: process.stderr,
    },
    Presets.shades_classic,
  );
  let started = false;
  return {
    update: (done, total) => {
      if (!started) {
        bar.start(total, 0);
        started = true;
      }
      bar.update(done);
    },
    stop: () => {
      if (started) bar.stop();
    },
  };
}
