import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { spawnDaemon } from '../../src/harness/index.ts';
import { coldStartStats, simulate } from '../../src/sim/index.ts';
import { PetriTarget, runLoad, type Trace } from '../../src/workload/index.ts';
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
