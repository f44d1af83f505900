import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { tempDir } from '../helpers/tmp.ts';
import {
  HttpTarget,
  PetriTarget,
  analyseRun,
  readRun,
  runLoad,
  writeReport,
} from '../../src/workload/index.ts';
import type { Trace } from '../../src/workload/index.ts';
import { flatFunction } from './helpers.ts';
import { spawnDaemon } from '../../src/harness/index.ts';
import { requireRoot } from '../helpers/root.ts';

describe('petri load against a local HTTP target', () => {
  let server: http.Server;
  let port = 0;
  const seen: string[] = [];
  before(async () => {
    server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c));
      req.on('end', () => {
        seen.push(req.url ?? '');
        const event = JSON.parse(body) as { durationMs: number };
        if (req.url?.includes('fail')) {
          res.statusCode = 502;
          res.end('{"error":{"code":"HandlerError","message":"boom"}}');
          return;
        }
        res.setHeader('x-petri-start', seen.length === 1 ? 'cold' : 'warm');
        setTimeout(
          () => res.end(JSON.stringify({ durationMs: event.durationMs })),
          event.durationMs,
        );
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('replays the schedule, records every invocation and excludes warm-up', async () => {
    const out = tempDir('petri-load-');
    const trace: Trace = {
      minutes: 2,
      functions: [
        flatFunction(0, [4, 6], 5),
        flatFunction(1, [2, 3], 10),
        { ...flatFunction(2, [0, 2], 1), func: 'fail' },
      ],
    };
    const data = await runLoad(trace, {
      target: new HttpTarget(`http://127.0.0.1:${port}/run/{function}?ms={durationMs}`),
      minutes: 2,
      warmupMinutes: 1,
      minuteMs: 300,
      iat: 'exponential',
      seed: 1,
      out,
      traceLabel: 'hand-made',
    });
    // Warm-up replays minute 1 (6 invocations), then minutes 2 and 1 are measured.
    assert.equal(data.fn.length, 6 + 11 + 6);
    assert.equal(seen.length, 23);
    assert.ok(
      seen.some((u) => /^\/run\/synth-0-func0\?ms=5$/.test(u)),
      seen[0],
    );
    const analysis = analyseRun(data);
    assert.equal(analysis.invocations, 17);
    assert.equal(analysis.failed, 2);
    assert.deepEqual(analysis.errors, { HandlerError: 2 });
    assert.ok(analysis.slowdown >= 1, `slowdown ${analysis.slowdown}`);
    assert.ok(analysis.latenessMs.p99 < 50);
    for (const file of ['run.json', 'invocations.csv', 'results.db'])
      assert.ok(existsSync(path.join(out, file)), file);
    assert.equal(
      readFileSync(path.join(out, 'invocations.csv'), 'utf8').trim().split('\n').length,
      24,
    );

    const back = await readRun(out);
    assert.deepEqual(analyseRun(back).invocations, 17);
    const { html } = await writeReport(out, back);
    assert.match(readFileSync(html, 'utf8'), /<svg/);
  });
});

describe('petri load against a real Petri node', () => {
  it('deploys synthetic functions, meets requested runtimes and cleans up', async () => {
    const stateDir = tempDir('petri-load-node-');
    // CPU limits would stretch the calibrated busy loops (a 128 MB function gets
    // 0.07 vCPU), so this node runs without isolation; as root it still runs in
    // a network namespace made for the test.
    const configFile = path.join(stateDir, 'config.json');
    writeFileSync(
      configFile,
      JSON.stringify({
        isolation: { cgroups: 'off', bwrap: 'off', network: 'off', shaping: 'off' },
      }),
    );
    const node = await spawnDaemon({ stateDir: path.join(stateDir, 'state'), configFile });
    try {
      const trace: Trace = {
        minutes: 1,
        functions: [flatFunction(0, [3], 40), flatFunction(1, [2], 80, 256)],
      };
      const data = await runLoad(trace, {
        target: new PetriTarget(node.url, { token: node.token }),
        minutes: 1,
        warmupMinutes: 0,
        minuteMs: 1500,
        iat: 'equidistant',
        seed: 2,
      });
      const analysis = analyseRun(data);
      assert.equal(analysis.failed, 0, JSON.stringify(analysis.errors));
      assert.equal(analysis.completed, 5);
      assert.ok((analysis.startPaths.cold ?? 0) >= 1, JSON.stringify(analysis.startPaths));
      for (let i = 0; i < data.fn.length; i++) {
        const ratio = data.actualDurationMs[i] / data.requestedDurationMs[i];
        assert.ok(
          ratio > 0.8 && ratio < 3,
          `actual ${data.actualDurationMs[i]} for ${data.requestedDurationMs[i]} ms`,
        );
      }
      const list = await request(`${node.url}/v1/functions`, { headers: node.headers });
      const body = (await list.body.json()) as unknown;
      const names = JSON.stringify(body);
      assert.ok(!names.includes('synth-'), `functions left behind: ${names}`);
    } finally {
      await node.close();
      rmSync(stateDir, { recursive: true, force: true });
    }
  });
});

describe('petri load against a Petri node with cgroups', () => {
  it('calibrates in CPU time, so a CPU quota stretches wall time but not measured execution; node CPU from its cgroups', async (t) => {
    if (!requireRoot(t)) return;
    const stateDir = tempDir('petri-load-cgroup-');
    const configFile = path.join(stateDir, 'config.json');
    writeFileSync(
      configFile,
      JSON.stringify({ isolation: { bwrap: 'off', network: 'off', shaping: 'off' } }),
    );
    const node = await spawnDaemon({ stateDir: path.join(stateDir, 'state'), configFile });
    try {
      // 512 MB = 0.29 vCPU: 400 ms of CPU (touching the memory included) take about 1.4 s.
      const trace: Trace = { minutes: 1, functions: [flatFunction(0, [3], 400, 512)] };
      const data = await runLoad(trace, {
        target: new PetriTarget(node.url, { token: node.token }),
        minutes: 1,
        warmupMinutes: 0,
        minuteMs: 3000,
        iat: 'equidistant',
        seed: 2,
      });
      const analysis = analyseRun(data);
      assert.equal(analysis.failed, 0, JSON.stringify(analysis.errors));
      for (let i = 0; i < data.fn.length; i++) {
        const measured = data.actualDurationMs[i] / data.requestedDurationMs[i];
        assert.ok(measured > 0.9 && measured < 1.3, `measured ${data.actualDurationMs[i]} ms`);
        const wall = data.doneMs[i] - data.sentMs[i];
        assert.ok(wall > 1.5 * data.requestedDurationMs[i], `wall ${wall} ms under the quota`);
      }
      const cpu = data.meta.nodeCpuUtilisation;
      assert.ok(cpu !== null && cpu > 0 && cpu <= 1, `node CPU ${cpu}`);
    } finally {
      await node.close();
      rmSync(stateDir, { recursive: true, force: true });
    }
  });
});
