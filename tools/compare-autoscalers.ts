// Reproduces In-Vitro §4.4 on this node: a daemon of its own (in a test
// network namespace when root), a synthetic trace, nested summaries, then
// `petri sweep --policies …` against it. Usage:
//   node --import tsx tools/compare-autoscalers.ts OUT [--functions N] [--sizes 5,10,20]
//        [--sample-step S] [--sample-max M] [--minutes M] [--policies on-demand,concurrency,rps]
//        [--rps-target R] [--concurrency-target C] [--lock FILE] [--mb-per-vcpu N]
// The node runs with resources.mbPerVcpu = N (default 64): every synthetic
// function (≥ 64 MB) then gets at least a core's quota, as a Knative pod
// without a tight CPU limit would, so the comparison measures autoscaling on
// shared cores rather than Lambda-style CPU sizing (with the default 1769 a
// 128 MB function gets 7 % of a core and a 9 s invocation takes 2 minutes).
// Each policy is swept on its own (under `flock FILE` when --lock is given, so
// a shared machine's other benchmarks wait only one policy's sweep), then the
// comparison (policies.json, charts, report.html) is written over all of them.
// Everything it makes lives under OUT; the daemon and namespace go at the end.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { spawnDaemon } from '../src/harness/index.ts';
import { type PolicySweepResult, writePolicyComparison } from '../src/workload/index.ts';

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    functions: { type: 'string', default: '1000' },
    sizes: { type: 'string', default: '5,10,20' },
    'sample-step': { type: 'string' },
    'sample-max': { type: 'string' },
    lock: { type: 'string' },
    'mb-per-vcpu': { type: 'string', default: '64' },
    // Keep a policy's finished sweep from an earlier run into the same OUT instead of sweeping it again.
    resume: { type: 'boolean', default: false },
    minutes: { type: 'string', default: '1' },
    policies: { type: 'string', default: 'on-demand,concurrency,rps' },
    seed: { type: 'string', default: '1' },
    'rps-target': { type: 'string' },
    'concurrency-target': { type: 'string' },
  },
});
const out = path.resolve(positionals[0] ?? 'autoscale-comparison');
const sizes = values.sizes.split(',').map(Number);
const petri = path.resolve(import.meta.dirname, '../bin/petri.js');

function run(args: string[], lock?: string): void {
  console.error(`$ petri ${args.join(' ')}`);
  const command = [process.execPath, petri, ...args];
  const result = lock
    ? spawnSync('flock', [lock, ...command], { stdio: 'inherit' })
    : spawnSync(command[0], command.slice(1), { stdio: 'inherit' });
  if (result.status !== 0) throw new Error(`petri ${args[0]} failed (${result.status})`);
}

fs.mkdirSync(out, { recursive: true });
const trace = path.join(out, 'trace');
const samples = path.join(out, 'samples');
if (!fs.existsSync(trace))
  run([
    'trace',
    'synth',
    '--out',
    trace,
    '--functions',
    values.functions,
    '--minutes',
    '2',
    '--seed',
    values.seed,
  ]);
if (!fs.existsSync(samples)) {
  const [min, max] = [Math.min(...sizes), Math.max(...sizes)];
  run([
    'trace',
    'sample',
    '--trace',
    trace,
    '--out',
    out,
    '--min',
    String(min),
    '--max',
    values['sample-max'] ?? String(max),
    '--step',
    values['sample-step'] ?? String(min),
    '--no-png',
  ]);
  for (const dir of fs.readdirSync(samples))
    if (!sizes.includes(Number(dir))) fs.rmSync(path.join(samples, dir), { recursive: true });
}
const stateDir = path.join(out, 'node');
fs.mkdirSync(stateDir, { recursive: true });
const configFile = path.join(out, 'node-config.json');
fs.writeFileSync(
  configFile,
  // A loaded machine can take longer than the default 10 s to start an instance.
  JSON.stringify({
    resources: { mbPerVcpu: Number(values['mb-per-vcpu']) },
    startTimeoutMs: 60_000,
  }) + '\n',
);
const daemon = await spawnDaemon({
  stateDir,
  configFile,
  allowSourcePaths: [path.resolve(import.meta.dirname, '../src/workload')],
});
const sweepOut = path.join(out, 'sweep');
const threshold = 1_000_000;
const results: PolicySweepResult[] = [];
try {
  for (const policy of values.policies.split(',')) {
    const policyOut = path.join(sweepOut, `${policy}-run`);
    const done = path.join(policyOut, 'policies.json');
    if (!values.resume || !fs.existsSync(done))
      run(
        [
          '--url',
          daemon.url,
          '--token',
          daemon.token,
          'sweep',
          '--samples',
          samples,
          '--out',
          policyOut,
          '--policies',
          policy,
          '--minutes',
          values.minutes,
          '--threshold',
          String(threshold),
          // Every size runs: the comparison wants the whole curve, failures included.
          '--failure-threshold',
          '1',
          ...(values['rps-target'] ? ['--rps-target', values['rps-target']] : []),
          ...(values['concurrency-target']
            ? ['--concurrency-target', values['concurrency-target']]
            : []),
        ],
        values.lock,
      );
    const swept = JSON.parse(fs.readFileSync(done, 'utf8')) as {
      policies: PolicySweepResult[];
    };
    results.push(...swept.policies);
  }
  await writePolicyComparison(sweepOut, results, threshold);
} finally {
  await daemon.close();
}
