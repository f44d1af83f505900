/**
 * One live run of the concurrency autoscaler on a real daemon (real
 * instances, cgroups, its own network namespace), with short windows: a
 * burst on one instance panics it up to ceil(burst ÷ 0.7) instances, the
 * requests are served by them rather than by cold starts of their own, and
 * once idle the function scales to zero.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { spawnDaemon, type Daemon } from '../../src/harness/index.ts';
import { requireRoot } from '../helpers/root.ts';

const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'petri-autoscale-'));
const codeDir = fs.mkdtempSync(path.join(os.tmpdir(), 'petri-autoscale-code-'));
let daemon: Daemon | undefined;

async function call(method: 'GET' | 'PUT' | 'POST', url: string, body?: unknown) {
  const response = await request(daemon!.url + url, {
    method,
    body: body === undefined ? undefined : JSON.stringify(body),
    headers: { ...daemon!.headers, 'content-type': 'application/json' },
  });
  const text = await response.body.text();
  return { status: response.statusCode, headers: response.headers, json: () => JSON.parse(text) };
}

async function until<T>(what: string, read: () => Promise<T>, ok: (v: T) => boolean, ms = 20_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await read();
    if (ok(value)) return value;
    if (Date.now() > deadline) throw new Error(`${what}: still ${JSON.stringify(value)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

interface Decision {
  desired: number;
  actual: number;
  panic: boolean;
  observedPanic: number;
}

before(async () => {
  if (process.geteuid?.() !== 0) return;
  const configFile = path.join(stateDir, 'config.json');
  fs.writeFileSync(configFile, JSON.stringify({ autoscaling: { tickMs: 200, sampleMs: 50 } }));
  daemon = await spawnDaemon({ stateDir, configFile });
});

after(async () => {
  await daemon?.close();
  fs.rmSync(stateDir, { recursive: true, force: true });
  fs.rmSync(codeDir, { recursive: true, force: true });
});

describe('concurrency autoscaler on a live node', () => {
  it('panics up on a burst, serves it from the instances it started, and scales to zero', async (t) => {
    if (!requireRoot(t)) return;
    fs.writeFileSync(
      path.join(codeDir, 'index.mjs'),
      'export async function handler(e) { await new Promise((r) => setTimeout(r, e.ms)); return e; }\n',
    );
    const deployed = await call('PUT', '/v1/functions/burst', {
      runtime: 'node',
      source: { path: codeDir },
      autoscaling: {
        policy: 'concurrency',
        stableWindowMs: 2000,
        panicWindowMs: 400,
        scaleToZeroGraceMs: 500,
      },
    });
    assert.equal(deployed.status, 201);
    const before = (await call('GET', '/v1/node')).json().cpu;

    const replies = await Promise.all(
      Array.from({ length: 4 }, () => call('POST', '/v1/functions/burst/invoke', { ms: 2500 })),
    );
    assert.ok(replies.every((r) => r.status === 200));
    const starts = replies.map((r) => r.headers['x-petri-start']);
    assert.equal(starts.filter((s) => s === 'cold').length, 1, `only one cold start: ${starts}`);

    const decisions = async (): Promise<Decision[]> =>
      (await call('GET', '/v1/functions/burst/autoscaling?limit=1000')).json().decisions;
    const burst = (await decisions()).filter((d) => d.panic);
    assert.ok(burst.length > 0, 'four in flight on one instance is a panic');
    assert.equal(Math.max(...burst.map((d) => d.desired)), Math.ceil(4 / 0.7));

    const instances = async () => (await call('GET', '/v1/node')).json().instances;
    await until('scaled to zero', instances, (i) => i.idle + i.paused + i.busy + i.starting === 0);
    const last = (await decisions())[0];
    assert.equal(last.desired, 0);
    assert.equal(last.panic, false);
    const cpu = (await call('GET', '/v1/node')).json().cpu;
    assert.ok(cpu.instancesMs > before.instancesMs, 'the instances’ CPU is counted');
  });
});
