/**
 * `npm run bench -- microtasks`: the sort experiment of Talluri et al.
 * ("Efficiently Improving the Performance of Serverless Applications with
 * Microtask-based Scheduling"), scaled to this node, under the task-based
 * scheduler and the microtask scheduler (static and dynamic allocation).
 *
 * A coordinator (this process) runs a distributed sort of gensort-style
 * records in an S3 server on the bridge (s3rver, as `bench net` does):
 * stage 1, one task per input part: read → partition by the key's first
 * byte → write a part per category; stage 2, one task per category: read its
 * parts → sort → write. Every task is one invocation of one Petri function
 * (1 vCPU at its peak) with shaped bandwidth, so its I/O phases are
 * I/O-bound; each stage's tasks are started all at once.
 *
 * - task: the baseline. An invocation reserves its peak share (1 vCPU) for
 *   its whole run, so the node's 2 cores hold 2 at once (the function's
 *   `maxInstances`; the rest queue in the pool).
 * - task-oversubscribed: a reference, not a baseline: no reservation, every
 *   task at once, CFS sharing the cores.
 * - microtask-static / microtask-dynamic: every task at once; phases run in
 *   their classes (io: 0.25 vCPU each on core 0, cpu: 1 vCPU each on core 1;
 *   dynamic moves cores by demand), which keep the cores' reservation honest.
 *
 * Rounds alternate the variants; every figure is a median over repetitions
 * with its ratio against the task-based baseline of the same run. Also
 * measured: one `context.microtask` transition (p50), mapped classes (a
 * cgroup write each) and the task scheduler's.
 */
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeChart, type ChartSpec } from '../report/index.ts';
import { benchArgs, machineFacts, ratio, summarize, writeJson } from './common.ts';
import { BUCKET, NetEnv } from './net/env.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const SORT_FUNCTION = path.join(HERE, 'microtask-functions', 'sort');
const PHASE_CLASSES = { read: 'io', write: 'io', partition: 'cpu', sort: 'cpu' };
/** The function's peak need: 1 vCPU (1769 MB at Lambda's ratio). */
const MEMORY_MB = 1769;
const FUNCTION_VCPU = 1;
const RECORD_BYTES = 100;

interface Variant {
  name: string;
  scheduler: Record<string, unknown>;
  /** Tasks the node runs at once (the function's maxInstances). */
  maxInstances: (tasks: number) => number;
  baseline?: boolean;
  reference?: boolean;
}

/** The io class at half a core per microtask: a second static split to compare with. */
const WIDE_IO = { io: { vcpu: 0.5, cores: [0] } };
/**
 * The io class at an eighth of a core: 8 at once on core 0, every map task's
 * read or write admitted together. An upload at the function's shaped rate
 * still runs at that rate (the write phase's running time shows it).
 */
const NARROW_IO = { io: { vcpu: 0.125, cores: [0] } };
/**
 * A static split where the cpu class also has the io class's core (allowed
 * only under static allocation): two sorts at once, as the task baseline
 * runs them, with the io class's small quotas beside them on core 0. The
 * cores are then reserved 1.5 times over, on the bet that I/O phases use
 * little of their quota.
 */
const SHARED_CORE = { io: { vcpu: 0.125, cores: [0] }, cpu: { vcpu: 1, cores: [0, 1] } };

const VARIANTS: Variant[] = [
  {
    name: 'task',
    scheduler: { policy: 'task' },
    maxInstances: () => os.availableParallelism(),
    baseline: true,
  },
  {
    name: 'task-oversubscribed',
    scheduler: { policy: 'task' },
    maxInstances: (n) => n,
    reference: true,
  },
  {
    name: 'microtask-static',
    scheduler: { policy: 'microtask', allocation: 'static' },
    maxInstances: (n) => n,
  },
  {
    name: 'microtask-dynamic',
    scheduler: { policy: 'microtask', allocation: 'dynamic' },
    maxInstances: (n) => n,
  },
  {
    name: 'microtask-static-io0.5',
    scheduler: { policy: 'microtask', allocation: 'static', classes: WIDE_IO },
    maxInstances: (n) => n,
  },
  {
    name: 'microtask-dynamic-io0.5',
    scheduler: { policy: 'microtask', allocation: 'dynamic', classes: WIDE_IO },
    maxInstances: (n) => n,
  },
  {
    name: 'microtask-static-io0.125',
    scheduler: { policy: 'microtask', allocation: 'static', classes: NARROW_IO },
    maxInstances: (n) => n,
  },
  {
    name: 'microtask-static-shared',
    scheduler: { policy: 'microtask', allocation: 'static', classes: SHARED_CORE },
    maxInstances: (n) => n,
  },
  {
    name: 'microtask-dynamic-io0.125',
    scheduler: { policy: 'microtask', allocation: 'dynamic', classes: NARROW_IO },
    maxInstances: (n) => n,
  },
];
const DEFAULT_VARIANTS = 'task,task-oversubscribed,microtask-static,microtask-dynamic';

interface Phase {
  name: string;
  class: string;
  durationMs: number;
  waitedMs: number;
}

interface JobResult {
  makespanMs: number;
  /** Each stage's wall time, from its first task sent to its last task's result. */
  stage1Ms: number;
  stage2Ms: number;
  /** Stage 1's write-partitions phase, per task (queueing for its class included). */
  writeMs: number[];
  /** Of each write phase, the time it queued for the io class. */
  writeWaitedMs: number[];
  /** Stage 2's sort-category phase, per task. */
  sortMs: number[];
  /** Of each sort phase, the time it queued for the cpu class. */
  sortWaitedMs: number[];
  waitedMs: number;
}

interface VariantResult {
  name: string;
  jobs: JobResult[];
  transitionsUs?: Record<string, number[]>;
  moves?: number;
}

function median(values: number[]): number {
  return summarize(values).p50;
}

async function phasesOf(env: NetEnv, id: string): Promise<Phase[]> {
  for (let i = 0; i < 200; i++) {
    const record = (await env.get(`/v1/invocations/${id}`)) as {
      status?: string;
      microtasks?: Phase[];
    };
    if (record.status === 'succeeded') return record.microtasks ?? [];
    if (record.status === 'failed') throw new Error(`invocation ${id} failed`);
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`invocation ${id} was not recorded`);
}

class SortJob {
  constructor(
    private readonly env: NetEnv,
    private readonly shape: { parts: number; records: number; categories: number },
  ) {}

  private event(extra: Record<string, unknown>) {
    return { endpoint: this.env.s3Endpoint, bucket: BUCKET, ...extra };
  }

  async generate(): Promise<void> {
    const { parts, records } = this.shape;
    await Promise.all(
      Array.from({ length: parts }, (_, part) =>
        this.env.invoke('sort', this.event({ op: 'gen', part, records, seed: part + 1 })),
      ),
    );
  }

  async run(): Promise<JobResult> {
    const { parts, categories } = this.shape;
    const started = performance.now();
    const maps = await Promise.all(
      Array.from({ length: parts }, (_, part) =>
        this.env.invokeWithId('sort', this.event({ op: 'map', part, categories })),
      ),
    );
    const stage1Ms = performance.now() - started;
    const reduces = await Promise.all(
      Array.from({ length: categories }, (_, category) =>
        this.env.invokeWithId<{ ordered: boolean }>(
          'sort',
          this.event({ op: 'reduce', category, parts }),
        ),
      ),
    );
    const makespanMs = performance.now() - started;
    if (reduces.some((r) => !r.value.ordered)) throw new Error('a category came back unsorted');
    const mapPhases = await Promise.all(maps.map((m) => phasesOf(this.env, m.id)));
    const reducePhases = await Promise.all(reduces.map((r) => phasesOf(this.env, r.id)));
    const pick = (all: Phase[][], name: string, field: 'durationMs' | 'waitedMs' = 'durationMs') =>
      all.map((phases) => phases.find((p) => p.name === name)?.[field] ?? NaN);
    const waitedMs = [...mapPhases, ...reducePhases].flat().reduce((s, p) => s + p.waitedMs, 0);
    return {
      makespanMs,
      stage1Ms,
      stage2Ms: makespanMs - stage1Ms,
      writeMs: pick(mapPhases, 'write'),
      writeWaitedMs: pick(mapPhases, 'write', 'waitedMs'),
      sortMs: pick(reducePhases, 'sort'),
      sortWaitedMs: pick(reducePhases, 'sort', 'waitedMs'),
      waitedMs,
    };
  }
}

/**
 * Phase pairs a transition loop alternates between: within one class (no
 * cgroup write), between the cpu class and an unmapped phase (the
 * function's own 1 vCPU: a quota and cpuset write each, no throttling), and
 * between io and cpu (the io class's 0.25 vCPU quota throttles the loop).
 */
const TRANSITIONS: Record<string, string[]> = {
  sameClass: ['partition', 'sort'],
  classChange: ['partition', 'unmapped'],
  ioCpu: ['partition', 'write'],
};

async function transitions(env: NetEnv, invocations: number): Promise<Record<string, number[]>> {
  const out: Record<string, number[]> = {};
  for (const [kind, names] of Object.entries(TRANSITIONS)) {
    out[kind] = [];
    for (let i = 0; i < invocations; i++) {
      const event = { endpoint: env.s3Endpoint, bucket: BUCKET, op: 'transitions', n: 500, names };
      const { micros } = await env.invoke<{ micros: number[] }>('sort', event);
      out[kind].push(...micros.slice(1)); // the first one enters from outside any phase
    }
  }
  return out;
}

function ecdf(values: number[], series: string, metric: string) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.map((value, i) => ({ value, fraction: (i + 1) / sorted.length, series, metric }));
}

function ecdfChart(title: string, values: Record<string, unknown>[], unit: string): ChartSpec {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title,
    width: 300,
    height: 240,
    data: { values },
    mark: { type: 'line', interpolate: 'step-after' },
    encoding: {
      x: { field: 'value', type: 'quantitative', title: unit, scale: { zero: false } },
      y: { field: 'fraction', type: 'quantitative', title: 'ECDF' },
      color: { field: 'series', type: 'nominal', title: null, legend: { labelLimit: 400 } },
    },
  } as ChartSpec;
}

export async function writePlots(dir: string, results: VariantResult[]): Promise<string[]> {
  const panels: [string, string, (j: JobResult) => number[]][] = [
    ['makespan', '(a) job makespan', (j) => [j.makespanMs]],
    ['write', '(b) stage 1 write-partitions phase, per task', (j) => j.writeMs],
    ['sort', '(c) stage 2 sort-category phase, per task', (j) => j.sortMs],
  ];
  const written: string[] = [];
  for (const [key, title, pick] of panels) {
    const values = results.flatMap((r) => ecdf(r.jobs.flatMap(pick), r.name, key));
    const out = await writeChart(ecdfChart(title, values, 'ms'), dir, `microtasks-${key}`, {
      png: true,
    });
    written.push(out.pngPath ?? out.svgPath);
  }
  return written;
}

export async function run(argv: string[]): Promise<void> {
  const args = benchArgs(argv, {
    reps: { type: 'string', default: '10' },
    parts: { type: 'string', default: '8' },
    records: { type: 'string', default: '40000' },
    categories: { type: 'string', default: '4' },
    'mbit-per-vcpu': { type: 'string', default: '80' },
    plots: { type: 'string' },
    variants: { type: 'string', default: DEFAULT_VARIANTS },
  });
  const chosen = String(args.variants).split(',');
  const unknown = chosen.filter((name) => !VARIANTS.some((v) => v.name === name));
  if (unknown.length > 0 || !chosen.includes('task')) {
    throw new Error(
      `--variants: ${unknown.length ? `unknown ${unknown.join(', ')}` : 'needs task (the baseline)'}; known: ${VARIANTS.map((v) => v.name).join(', ')}`,
    );
  }
  const variants = VARIANTS.filter((v) => chosen.includes(v.name));
  const reps = Number(args.reps);
  const shape = {
    parts: Number(args.parts),
    records: Number(args.records),
    categories: Number(args.categories),
  };
  const mbitPerVcpu = Number(args['mbit-per-vcpu']);
  if (process.geteuid?.() !== 0)
    throw new Error('bench microtasks needs root (cgroups, namespaces)');
  const log = (message: string) => console.log(message);
  const envs = new Map<string, { env: NetEnv; job: SortJob; variant: Variant }>();
  const results = new Map<string, VariantResult>();
  /** Every env made, started or not, so a failure still removes it. */
  const made: NetEnv[] = [];
  // Stopped from outside: remove every daemon and namespace before leaving.
  const onSignal = () =>
    void Promise.allSettled(made.map((env) => env.close())).then(() => process.exit(130));
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  try {
    for (const variant of variants) {
      const env = new NetEnv({
        mode: 'on',
        iperfServers: 0,
        s3Objects: 1,
        objectBytes: 1,
        log,
        config: {
          scheduler: variant.scheduler,
          resources: { mbitPerVcpu },
          // Many cold starts at once on a shared 2-core machine.
          startTimeoutMs: 120_000,
        },
      });
      made.push(env);
      await env.start();
      const tasks = Math.max(shape.parts, shape.categories);
      await env.deploy('sort', SORT_FUNCTION, {
        memoryMb: MEMORY_MB,
        timeoutMs: 600_000,
        maxInstances: variant.maxInstances(tasks),
        microtasks: PHASE_CLASSES,
      });
      const job = new SortJob(env, shape);
      await job.generate();
      await job.run(); // warm-up: instances started, caches warm; not counted
      envs.set(variant.name, { env, job, variant });
      results.set(variant.name, { name: variant.name, jobs: [] });
      log(`${variant.name}: ready`);
    }
    for (let rep = 0; rep < reps; rep++) {
      // Alternate the order, so no variant always runs right after the same one.
      const order = rep % 2 === 0 ? variants : [...variants].reverse();
      for (const variant of order) {
        const result = await envs.get(variant.name)!.job.run();
        results.get(variant.name)!.jobs.push(result);
        log(`rep ${rep + 1}/${reps} ${variant.name}: makespan ${result.makespanMs.toFixed(0)} ms`);
      }
      // After every round, so a run cut short still leaves its figures.
      await writeJson(args.json, {
        benchmark: 'microtasks',
        partial: true,
        reps: rep + 1,
        shape,
        summary: summaryOf([...results.values()]),
        results: [...results.values()],
      });
    }
    for (const name of ['task', 'microtask-static'].filter((n) => envs.has(n))) {
      const { env } = envs.get(name)!;
      results.get(name)!.transitionsUs = await transitions(env, 4);
    }
    for (const [name, { env }] of envs) {
      const status = (await env.get('/v1/node')) as { scheduler: { moves: number } };
      if (name.includes('dynamic')) results.get(name)!.moves = status.scheduler.moves;
    }
  } finally {
    for (const env of made) await env.close();
  }
  report([...results.values()], { reps, shape, mbitPerVcpu });
  const plots = args.plots ? await writePlots(args.plots, [...results.values()]) : [];
  for (const file of plots) console.log(`wrote ${file}`);
  await writeJson(args.json, {
    benchmark: 'microtasks',
    machine: machineFacts(),
    reps,
    shape,
    mbitPerVcpu,
    memoryMb: MEMORY_MB,
    summary: summaryOf([...results.values()]),
    results: [...results.values()],
  });
}

function summaryOf(results: VariantResult[]) {
  const base = results.find((r) => r.name === 'task')!;
  const med = (r: VariantResult, pick: (j: JobResult) => number[]) => median(r.jobs.flatMap(pick));
  // Jobs recorded before these fields existed have none: no figure, not NaN.
  const writeRun = (j: JobResult) => j.writeMs.map((ms, i) => ms - (j.writeWaitedMs?.[i] ?? 0));
  const sortRun = (j: JobResult) => j.sortMs.map((ms, i) => ms - (j.sortWaitedMs?.[i] ?? 0));
  return results.map((r) => ({
    variant: r.name,
    makespanMs: med(r, (j) => [j.makespanMs]),
    stage1Ratio: ratio(
      med(r, (j) => [j.stage1Ms]),
      med(base, (j) => [j.stage1Ms]),
    ),
    stage2Ratio: ratio(
      med(r, (j) => [j.stage2Ms]),
      med(base, (j) => [j.stage2Ms]),
    ),
    writeMs: med(r, (j) => j.writeMs),
    writeWaitedMs: med(r, (j) => j.writeWaitedMs),
    writeRunMs: med(r, writeRun),
    sortWaitedMs: med(r, (j) => j.sortWaitedMs ?? []),
    sortRunMs: med(r, sortRun),
    sortMs: med(r, (j) => j.sortMs),
    makespanRatio: ratio(
      med(r, (j) => [j.makespanMs]),
      med(base, (j) => [j.makespanMs]),
    ),
    writeRatio: ratio(
      med(r, (j) => j.writeMs),
      med(base, (j) => j.writeMs),
    ),
    sortRatio: ratio(
      med(r, (j) => j.sortMs),
      med(base, (j) => j.sortMs),
    ),
    transitionP50Us: r.transitionsUs
      ? Object.fromEntries(Object.entries(r.transitionsUs).map(([k, v]) => [k, median(v)]))
      : undefined,
    moves: r.moves,
  }));
}

function report(
  results: VariantResult[],
  facts: { reps: number; shape: Record<string, number>; mbitPerVcpu: number },
): void {
  const rows = summaryOf(results);
  console.log(
    `\nsort: ${facts.shape.parts} parts × ${facts.shape.records} records of 100 B, ${facts.shape.categories} categories; ` +
      `${facts.reps} reps; ${os.availableParallelism()} cores; ${MEMORY_MB} MB functions at ${facts.mbitPerVcpu} Mbit/s per vCPU`,
  );
  console.table(
    rows.map((r) => ({
      variant: r.variant,
      'makespan ms': Math.round(r.makespanMs),
      '× task': r.makespanRatio,
      'write ms': Math.round(r.writeMs),
      'of it queued': Math.round(r.writeWaitedMs),
      'write × task': r.writeRatio,
      'sort ms': Math.round(r.sortMs),
      'of it queued ': Math.round(r.sortWaitedMs),
      'sort × task': r.sortRatio,
      'stage 1 × task': r.stage1Ratio,
      'stage 2 × task': r.stage2Ratio,
      moves: r.moves ?? '',
    })),
  );
  // The least a write phase can take: its bytes at the function's shaped bandwidth.
  const writeBytes = facts.shape.records * RECORD_BYTES;
  const floorMs = ((writeBytes * 8) / (facts.mbitPerVcpu * FUNCTION_VCPU * 1e6)) * 1000;
  console.log(
    `a map task writes ${(writeBytes / 1e6).toFixed(1)} MB at ${facts.mbitPerVcpu * FUNCTION_VCPU} Mbit/s: ` +
      `${Math.round(floorMs)} ms at the least, whatever its CPU; ` +
      `write phase running (not queued) p50: ${rows.map((r) => `${r.variant} ${Math.round(r.writeRunMs)} ms`).join(', ')}`,
  );
  console.log(
    `sort phase running (not queued) p50: ${rows.map((r) => `${r.variant} ${Math.round(r.sortRunMs)} ms`).join(', ')}`,
  );
  console.log(
    'one context.microtask transition, p50 µs (inside the function, announce → admitted):',
  );
  console.table(
    rows
      .filter((r) => r.transitionP50Us)
      .map((r) => ({
        variant: r.variant,
        ...Object.fromEntries(
          Object.entries(r.transitionP50Us!).map(([k, v]) => [k, Math.round(v * 10) / 10]),
        ),
      })),
  );
  console.log(
    'targets (microtask vs task): makespan ≤ 0.75×, write phase ≤ 0.5×, sort phase ≤ 1.15×, transition p50 ≤ 100 µs',
  );
}
