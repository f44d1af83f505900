import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { CommanderError } from 'commander';
import { rootCommand } from '../../src/cli/program.ts';
import type { CliIo } from '../../src/cli/verb.ts';
import { registerWorkloadCommands } from '../../src/cli/workload.ts';
import {
  coldStartStats,
  simulate,
  simulateIsolated,
  type PolicyResult,
  type SimOptions,
} from '../../src/sim/index.ts';
import { buildSchedule, writeTrace, type Trace } from '../../src/workload/index.ts';
import { tempDir } from '../helpers/tmp.ts';
import { flatFunction } from '../workload/helpers.ts';

const MIN = 60_000;

function options(over: Partial<SimOptions> = {}): SimOptions {
  return {
    policies: ['fixed'],
    memoryBudgetMb: 4096,
    minutes: 4,
    seed: 1,
    startMs: () => 60,
    ...over,
  };
}

function withoutWall(results: PolicyResult[]): unknown[] {
  return results.map(({ wallSeconds: _w, cpuSeconds: _c, ...rest }) => rest);
}

describe('simulate', () => {
  it('replays a hand-made trace: the keep-alive decides which invocations start cold', async () => {
    const trace: Trace = { minutes: 4, functions: [flatFunction(0, [1, 0, 0, 1], 100)] };
    const [short] = await simulate(trace, options({ keepAliveMs: MIN }));
    const [long] = await simulate(trace, options({ keepAliveMs: 10 * MIN }));
    assert.equal(short.invocations, 2);
    assert.deepEqual([short.coldStarts, long.coldStarts], [2, 1]);
    // Idle memory-time under the long keep-alive: from the first end to the second
    // arrival, then from the second end to the end of the window (1 ms steps).
    const { atMs } = buildSchedule(trace, {
      minutes: 4,
      warmupMinutes: 0,
      iat: 'exponential',
      seed: 1,
    });
    const idleMs = atMs[1] - (atMs[0] + 60 + 100) + (4 * MIN - (atMs[1] + 100));
    assert.ok(
      Math.abs(long.wastedMemoryGbS - (idleMs * 128) / 1024 / 1000) < (4 * 128) / 1024 / 1000,
    );
    assert.ok(short.wastedMemoryGbS < long.wastedMemoryGbS);
    assert.equal(long.failed, 0);
  });

  it('is deterministic for a seed, and another seed gives another schedule', async () => {
    const trace: Trace = {
      minutes: 3,
      functions: [
        flatFunction(0, [5, 3, 8], 200),
        flatFunction(1, [2, 9, 1], 50, 256),
        flatFunction(2, [1, 0, 2], 10),
      ],
    };
    const run = (seed: number) =>
      simulate(
        trace,
        options({
          seed,
          minutes: 3,
          memoryBudgetMb: 512,
          policies: ['fixed', 'greedy-dual', 'hybrid-histogram'],
        }),
      );
    const first = await run(7);
    assert.deepEqual(withoutWall(await run(7)), withoutWall(first));
    assert.notDeepEqual(
      buildSchedule(trace, { minutes: 3, warmupMinutes: 0, iat: 'exponential', seed: 7 }).atMs,
      buildSchedule(trace, { minutes: 3, warmupMinutes: 0, iat: 'exponential', seed: 8 }).atMs,
    );
    assert.deepEqual(
      first.map((r) => r.policy),
      ['fixed', 'greedy-dual', 'hybrid-histogram'],
    );
  });

  it('greedy-dual keeps the frequent function warm under memory pressure', async () => {
    // Room for two 128 MB instances, three functions: "often" is used 10× as often.
    const trace: Trace = {
      minutes: 6,
      functions: [
        flatFunction(0, [10, 10, 10, 10, 10, 10], 5),
        flatFunction(1, [1, 1, 1, 1, 1, 1], 5),
        flatFunction(2, [1, 1, 1, 1, 1, 1], 5),
      ],
    };
    const [fixed, gd] = await simulate(
      trace,
      options({ minutes: 6, memoryBudgetMb: 256, policies: ['fixed', 'greedy-dual'] }),
    );
    assert.equal(gd.perFunction[0].coldStarts, 1, 'the frequent one is never evicted');
    assert.ok(
      gd.coldStarts <= fixed.coldStarts,
      `greedy-dual ${gd.coldStarts}, fixed ${fixed.coldStarts}`,
    );
  });

  it('pre-warms a periodic function ahead of its arrivals (hybrid histogram)', async () => {
    // One invocation every 10 minutes, mid-minute: idle times of just under 10 minutes.
    const counts = Array.from({ length: 150 }, (_, m) => (m % 10 === 0 ? 1 : 0));
    const trace: Trace = { minutes: 150, functions: [flatFunction(0, counts, 5)] };
    const run = options({
      minutes: 150,
      iat: 'equidistant',
      keepAliveMs: 5 * MIN,
      policies: ['fixed', 'hybrid-histogram'],
    });
    const [fixed, hybrid] = await simulate(trace, run);
    assert.equal(fixed.coldStarts, 15, 'a 5-minute keep-alive misses every one');
    assert.ok(hybrid.prewarmHits >= 3, `hits ${hybrid.prewarmHits}`);
    assert.equal(hybrid.coldStarts, 15 - hybrid.prewarmHits);
    assert.ok(hybrid.wastedMemoryGbS < fixed.wastedMemoryGbS, 'unloaded between arrivals');
  });
});

describe('simulateIsolated', () => {
  it('runs each policy in a worker thread of its own, with the same results and progress', async () => {
    const trace: Trace = {
      minutes: 4,
      functions: [flatFunction(0, [30, 0, 20, 10], 50), flatFunction(1, [5, 5, 0, 5], 200)],
    };
    const common = {
      policies: ['fixed', 'greedy-dual', 'hybrid-histogram'] as const,
      memoryBudgetMb: 512,
      minutes: 4,
      seed: 3,
    };
    const inProcess = await simulate(trace, { ...common, startMs: () => 60 });
    const progress: string[] = [];
    const isolated = await simulateIsolated(trace, {
      ...common,
      startMs: 60,
      onProgress: (policy, done, total) => progress.push(`${policy} ${done}/${total}`),
    });
    assert.deepEqual(withoutWall(isolated), withoutWall(inProcess));
    for (const policy of common.policies)
      assert.ok(
        progress.some((p) => p.startsWith(`${policy} `)),
        `progress of ${policy}: ${progress.join(', ')}`,
      );
    const n = inProcess[0].data.fn.length;
    assert.ok(progress.includes(`hybrid-histogram ${n}/${n}`), 'the last policy reaches its total');
  });

  it("rejects with the worker's error", async () => {
    // No functions list: building the schedule throws in the worker.
    const trace = { minutes: 1, functions: null } as unknown as Trace;
    await assert.rejects(
      simulateIsolated(trace, {
        policies: ['fixed'],
        memoryBudgetMb: 512,
        minutes: 1,
        seed: 1,
        startMs: 60,
      }),
      { name: 'TypeError' },
    );
  });
});

describe('coldStartStats', () => {
  it('counts cold starts overall and per function, skipping what is not counted', () => {
    const stats = coldStartStats(
      2,
      Int32Array.from([0, 0, 1, 1]),
      Uint8Array.from([1, 0, 1, 1]),
      (i) => i !== 3,
    );
    assert.equal(stats.invocations, 3);
    assert.equal(stats.coldStarts, 2);
    assert.deepEqual([...stats.perFunction.coldStarts], [1, 1]);
  });
});

describe('petri sim', () => {
  it('writes sim.json, CSV and an HTML report for a tiny trace', async () => {
    const dir = tempDir('petri-sim-');
    const traceDir = path.join(dir, 'trace');
    await writeTrace(traceDir, {
      minutes: 2,
      functions: [flatFunction(0, [3, 2], 20), flatFunction(1, [1, 1], 40)],
    });
    let stdout = '';
    let code = 0;
    const io: CliIo = {
      stdout: (t) => (stdout += t),
      stderr: () => {},
      stderrIsTTY: false,
      setExitCode: (c) => (code = c),
      now: () => Date.now(),
    };
    const program = rootCommand({}).exitOverride();
    registerWorkloadCommands(program, io);
    const out = path.join(dir, 'out');
    try {
      await program.parseAsync(
        ['sim', '--trace', traceDir, '--out', out, '--memory-budget', '1024'],
        { from: 'user' },
      );
    } catch (err) {
      if (!(err instanceof CommanderError)) throw err;
      code = err.exitCode;
    }
    assert.equal(code, 0, stdout);
    assert.match(stdout, /greedy-dual/);
    const sim = JSON.parse(await readFile(path.join(out, 'sim.json'), 'utf8')) as {
      policy: string;
      coldStartRatio: number;
      wastedMemoryGbS: number;
    }[];
    assert.deepEqual(
      sim.map((p) => p.policy),
      ['fixed', 'greedy-dual', 'hybrid-histogram'],
    );
    for (const p of sim) assert.ok(p.coldStartRatio > 0 && p.wastedMemoryGbS > 0);
    assert.match(await readFile(path.join(out, 'report.html'), 'utf8'), /<svg/);
    assert.match(await readFile(path.join(out, 'policies.csv'), 'utf8'), /^policy,/);

    await program.parseAsync(['sim', '--trace', traceDir, '--out', out, '--policy', 'lru'], {
      from: 'user',
    });
    assert.equal(code, 1, 'an unknown policy is refused');
  });

  it('refuses a bad keep-alive policy list for load and sweep before touching a node', async () => {
    let stderr = '';
    let code: number | undefined;
    const io: CliIo = {
      stdout: () => {},
      stderr: (t) => (stderr += t),
      stderrIsTTY: false,
      setExitCode: (c) => (code = c),
      now: () => Date.now(),
    };
    const program = rootCommand({}).exitOverride();
    registerWorkloadCommands(program, io);
    // Port 9 (discard) on loopback: nothing answers, and nothing is asked.
    const url = ['--url', 'http://127.0.0.1:9'];
    const cases: [string[], RegExp][] = [
      [['load', '--trace', 't', '--out', 'o', '--policy', 'fixed,lru'], /--policy/],
      [['load', '--trace', 't', '--out', 'o', '--policy', 'fixed,fixed'], /twice/],
      [
        ['sweep', '--samples', 's', '--out', 'o', '--policies', 'rps', '--policy', 'fixed'],
        /give one/,
      ],
    ];
    for (const [args, message] of cases) {
      code = undefined;
      stderr = '';
      await program.parseAsync([...url, ...args], { from: 'user' });
      assert.equal(code, 1, args.join(' '));
      assert.match(stderr, message);
    }
  });
});
