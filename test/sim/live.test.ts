import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { spawnDaemon } from '../../src/harness/index.ts';
import { rootCommand } from '../../src/cli/program.ts';
import type { CliIo } from '../../src/cli/verb.ts';
import { registerWorkloadCommands } from '../../src/cli/workload.ts';
import {
  type PolicyFigures,
  coldStartStats,
  policyFigures,
  simulate,
} from '../../src/sim/index.ts';
import { PetriTarget, readRun, runLoad, writeTrace, type Trace } from '../../src/workload/index.ts';
import { tempDir } from '../helpers/tmp.ts';
import { flatFunction } from '../workload/helpers.ts';

describe('the simulator and a live node, same trace and policy', () => {
  it('agree on which invocations start cold', async () => {
    // f0 comes once a (6 s) minute, 6 s apart, past its 3 s keep-alive: cold every
    // time; f1 four times a minute, at most 2.4 s apart: cold only the first time
    // (the gaps leave room for slow starts on a busy machine).
    const trace: Trace = {
      minutes: 2,
      functions: [flatFunction(0, [1, 1], 20), flatFunction(1, [4, 4], 20)],
    };
    const schedule = {
      minutes: 2,
      warmupMinutes: 0,
      iat: 'equidistant' as const,
      seed: 3,
      minuteMs: 6000,
    };
    const keepAliveMs = 3000;
    const stateDir = tempDir('petri-sim-live-');
    const configFile = path.join(stateDir, 'config.json');
    writeFileSync(
      configFile,
      JSON.stringify({
        keepAliveMs,
        isolation: { cgroups: 'off', bwrap: 'off', network: 'off', shaping: 'off' },
      }),
    );
    const node = await spawnDaemon({ stateDir: path.join(stateDir, 'state'), configFile });
    try {
      const data = await runLoad(trace, {
        target: new PetriTarget(node.url, {
          token: node.token,
          keepAlivePolicy: 'hybrid-histogram',
        }),
        ...schedule,
      });
      const cold = Uint8Array.from(data.start, (s) => (s === 4 ? 1 : 0));
      const live = coldStartStats(2, data.fn, cold);
      const [sim] = await simulate(trace, {
        policies: ['hybrid-histogram'],
        memoryBudgetMb: 4096,
        keepAliveMs,
        ...schedule,
        startMs: () => 100,
      });
      assert.equal(live.invocations, 10);
      assert.deepEqual([...live.perFunction.coldStarts], [2, 1], 'live');
      assert.deepEqual(
        sim.perFunction.map((f) => f.coldStarts),
        [...live.perFunction.coldStarts],
        'simulated',
      );
      assert.equal(sim.coldStartRatio, live.coldStartRatio);
    } finally {
      await node.close();
      rmSync(stateDir, { recursive: true, force: true });
    }
  });
});

describe('keep-alive policies side by side: petri load --policy a,b and petri report --sim', () => {
  it('runs the trace once per policy on a live node, then compares them with the simulator by the same figures', async () => {
    const dir = tempDir('petri-policies-live-');
    const traceDir = path.join(dir, 'trace');
    // f0 once per (3 s) minute, f1 three times: a fixed 1.5 s keep-alive cold-starts
    // f0 every time, greedy-dual (kept while memory allows) only the first time.
    const trace: Trace = {
      minutes: 2,
      functions: [flatFunction(0, [1, 1], 20), flatFunction(1, [3, 3], 20)],
    };
    await writeTrace(traceDir, trace);
    const configFile = path.join(dir, 'config.json');
    writeFileSync(
      configFile,
      JSON.stringify({
        keepAliveMs: 1500,
        isolation: { cgroups: 'off', bwrap: 'off', network: 'off', shaping: 'off' },
      }),
    );
    const node = await spawnDaemon({ stateDir: path.join(dir, 'state'), configFile });
    const { io, output, code } = captureIo();
    const run = async (args: string[]): Promise<void> => {
      const program = rootCommand({}).exitOverride();
      registerWorkloadCommands(program, io);
      await program.parseAsync(['--url', node.url, '--token', node.token, ...args], {
        from: 'user',
      });
    };
    try {
      const out = path.join(dir, 'load');
      const schedule = ['--minutes', '2', '--minute-ms', '3000', '--iat', 'equidistant'];
      await run([
        'load',
        '--trace',
        traceDir,
        '--out',
        out,
        '--policy',
        'fixed,greedy-dual',
        ...schedule,
      ]);
      assert.equal(code(), 0, output());
      const rows = JSON.parse(
        await readFile(path.join(out, 'policies.json'), 'utf8'),
      ) as PolicyFigures[];
      assert.deepEqual(
        rows.map((r) => [r.policy, r.source, r.invocations]),
        [
          ['fixed', 'live', 8],
          ['greedy-dual', 'live', 8],
        ],
      );
      // The figures are those of each run's own records, by the same code as the simulator's.
      for (const row of rows) {
        const data = await readRun(path.join(out, row.policy));
        assert.equal(data.meta.keepAlivePolicy, row.policy);
        const again = policyFigures(row.policy, 'live', data, {
          idleMemoryGbS: data.meta.idleMemoryGbS,
          cpuSeconds: data.meta.nodeCpuSeconds,
        });
        // invocations.csv keeps times to the µs: the slowdown read back is that close.
        assert.ok(Math.abs(again.slowdown - row.slowdown) < 1e-4 * row.slowdown);
        assert.deepEqual({ ...again, slowdown: 0 }, { ...row, slowdown: 0 });
        assert.ok(
          row.idleMemoryGbS !== null && row.idleMemoryGbS > 0,
          'the node counted idle memory',
        );
      }
      const [fixed, greedy] = rows;
      assert.equal(fixed.coldStarts, 3, 'f0 twice, f1 once');
      assert.equal(greedy.coldStarts, 2, 'each function once');
      assert.ok(greedy.idleMemoryGbS! > fixed.idleMemoryGbS!, 'kept instances idle longer');

      const simOut = path.join(dir, 'sim');
      await run([
        'sim',
        '--trace',
        traceDir,
        '--out',
        simOut,
        '--policy',
        'fixed,greedy-dual',
        '--keep-alive-ms',
        '1500',
        '--start-ms',
        '100',
        ...schedule,
      ]);
      const compared = path.join(dir, 'compared');
      await run(['report', out, '--sim', simOut, '--out', compared]);
      assert.equal(code(), 0, output());
      const side = JSON.parse(
        await readFile(path.join(compared, 'policies.json'), 'utf8'),
      ) as PolicyFigures[];
      assert.deepEqual(
        side.map((r) => `${r.policy}/${r.source}`),
        ['fixed/live', 'greedy-dual/live', 'fixed/sim', 'greedy-dual/sim'],
      );
      assert.deepEqual(
        side.map((r) => r.coldStarts),
        [3, 2, 3, 2],
        'the simulator agrees with the node',
      );
      assert.match(output(), /keep-alive policies side by side/);
      assert.match(await readFile(path.join(compared, 'report.html'), 'utf8'), /<svg/);
    } finally {
      await node.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

function captureIo(): { io: CliIo; output: () => string; code: () => number } {
  let text = '';
  let exit = 0;
  const io: CliIo = {
    stdout: (t) => (text += t),
    stderr: (t) => (text += t),
    stderrIsTTY: false,
    setExitCode: (c) => (exit = c),
    now: () => Date.now(),
  };
  return { io, output: () => text, code: () => exit };
}
