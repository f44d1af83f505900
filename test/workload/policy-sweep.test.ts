/**
 * runPolicySweep over a scripted target: one sweep per policy over the same
 * summaries, each target made for its policy, CPU-seconds taken around each
 * size, and the comparison's files (JSON, CSV, both charts, the report).
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import {
  type InvocationRequest,
  type LoadTarget,
  comparisonRows,
  runPolicySweep,
  writeTrace,
} from '../../src/workload/index.ts';
import { policyCpuChart, policySlowdownChart } from '../../src/workload/sweep-charts.ts';
import { flatFunction } from './helpers.ts';

const dirs: string[] = [];
after(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

/** Answers at once; `cold` invocations say so, as Petri's x-petri-start does. */
function scriptedTarget(policy: string, seen: string[]): LoadTarget {
  let calls = 0;
  return {
    kind: 'petri',
    description: `scripted ${policy}`,
    connections: 16,
    prepare: async () => void seen.push(policy),
    invoke: async (_r: InvocationRequest) => ({
      status: 200,
      errorCode: '',
      start: calls++ === 0 ? 'cold' : 'warm',
      actualDurationMs: 1,
    }),
    close: async () => {},
  };
}

describe('policy sweep', () => {
  it('sweeps the same summaries once per policy and writes the comparison', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'petri-policy-sweep-'));
    dirs.push(dir);
    const samples = join(dir, 'samples');
    for (const size of [1, 2])
      await writeTrace(join(samples, String(size)), {
        minutes: 1,
        functions: Array.from({ length: size }, (_, i) => flatFunction(i, [30], 5)),
      });
    const seen: string[] = [];
    let cpu = 0;
    const results = await runPolicySweep({
      samplesDir: samples,
      out: join(dir, 'out'),
      policies: ['on-demand', 'rps'],
      makeTarget: (policy) => scriptedTarget(policy, seen),
      minutes: 1,
      warmupMinutes: 0,
      iat: 'equidistant',
      seed: 1,
      minuteMs: 300,
      threshold: 1e9,
      failureThreshold: 1,
      cpuSeconds: async () => (cpu += 1.5),
    });
    assert.deepEqual(
      seen,
      ['on-demand', 'on-demand', 'rps', 'rps'],
      'a target per policy and size',
    );
    assert.deepEqual(
      results.map((r) => [r.policy, r.points.map((p) => p.size)]),
      [
        ['on-demand', [1, 2]],
        ['rps', [1, 2]],
      ],
    );
    for (const r of results) for (const p of r.points) assert.equal(p.cpuSeconds, 1.5);
    const rows = comparisonRows(results);
    assert.equal(rows.length, 4);
    assert.ok(rows.every((r) => r.coldStartRate > 0 && r.offeredRate > 0));
    for (const file of [
      'policies.json',
      'policies.csv',
      'policies-slowdown.svg',
      'policies-cpu.svg',
      'report.html',
    ])
      assert.ok(existsSync(join(dir, 'out', file)), file);
    for (const policy of ['on-demand', 'rps'])
      assert.ok(existsSync(join(dir, 'out', policy, 'sweep.json')), policy);
    const csv = (await readFile(join(dir, 'out', 'policies.csv'), 'utf8')).trim().split('\n');
    assert.equal(
      csv[0],
      'policy,size,offeredRate,slowdown,cpuSeconds,coldStartRate,failureRate,p99LatencyMs',
    );
    assert.equal(csv.length, 5);
  });
});

describe('policy comparison charts', () => {
  const point = (policy: string, size: number, slowdown: number, failureRate: number) => ({
    policy,
    size,
    offeredRate: size / 10,
    slowdown,
    failureRate,
    nodeCpuUtilisation: 0.5,
    functionsWithoutInvocations: size === 2 ? 1 : 0,
    cpuSeconds: size * 2,
  });
  const points = [point('rps', 2, 3, 0), point('rps', 4, 6, 0.5), point('concurrency', 2, 2, 1)];

  it('start both axes at 0, draw failures as point size and name functions without invocations', () => {
    for (const spec of [policySlowdownChart(points, 5), policyCpuChart(points)]) {
      const layers = (spec as { layer: { encoding: Record<string, { scale?: unknown }> }[] }).layer;
      assert.deepEqual(layers[0].encoding.x.scale, { zero: true });
      assert.deepEqual(layers[0].encoding.y.scale, { zero: true });
      assert.equal((layers[1].encoding.size as { field: string }).field, 'failures');
      const title = (spec as { title: { subtitle: string } }).title;
      assert.match(title.subtitle, /1 of size 2/);
    }
  });

  it('draws the slowdown threshold only when it is on the scale', () => {
    const drawn = policySlowdownChart(points, 5) as { layer: unknown[] };
    assert.equal(drawn.layer.length, 3);
    const off = policySlowdownChart(points, 1e6) as { layer: unknown[]; title: { text: string } };
    assert.equal(off.layer.length, 2);
    assert.match(off.title.text, /off the scale/);
  });
});
