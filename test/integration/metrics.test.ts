/**
 * `GET /metrics` of a real daemon, after successful and failed invocations of
 * every start path, through `promtool check metrics` (Prometheus' own linter).
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { request } from 'undici';
import { spawnDaemon, type Daemon } from '../../src/harness/index.ts';

const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'petri-metrics-'));
const codeRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'petri-metrics-code-'));
/** The daemon's memory budget: small, so a larger function is refused at once. */
const BUDGET_MB = 512;
let daemon: Daemon;

async function call(method: 'GET' | 'PUT' | 'POST', url: string, body?: unknown) {
  const response = await request(daemon.url + url, {
    method,
    body: body === undefined ? undefined : JSON.stringify(body),
    headers: { ...daemon.headers, 'content-type': 'application/json' },
  });
  const text = await response.body.text();
  return { status: response.statusCode, headers: response.headers, text };
}

/** Deploys a one-file node function and returns its name. */
async function deploy(name: string, code: string, spec: Record<string, unknown> = {}) {
  const dir = path.join(codeRoot, name);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'index.mjs'), code);
  const reply = await call('PUT', `/v1/functions/${name}`, {
    runtime: 'node',
    ...spec,
    source: { path: dir },
  });
  assert.equal(reply.status, 201, reply.text);
}

/** Like requireRoot: promtool must be there under CI=true; elsewhere the test skips. */
function requirePromtool(t: TestContext): boolean {
  if (spawnSync('promtool', ['--version']).status === 0) return true;
  if (process.env.CI === 'true') throw new Error('promtool missing under CI (Debian: prometheus)');
  t.skip('promtool not installed (Debian package prometheus)');
  return false;
}

/** Pipes `text` through `promtool check metrics`; resolves with its exit code and output. */
function promtoolCheck(text: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('promtool', ['check', 'metrics'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output }));
    child.stdin.end(text);
  });
}

/** Every value one label takes in the exposition text. */
function labelValues(text: string, label: string): Set<string> {
  return new Set([...text.matchAll(new RegExp(`[{,]${label}="([^"]*)"`, 'g'))].map((m) => m[1]));
}

/** Long enough that an invocation right after another is warm; then the instance is paused. */
const PAUSE_GRACE_MS = 1000;

before(async () => {
  // Autoscaler decisions every 100 ms, so the autoscaled function has one to export soon.
  const configFile = path.join(stateDir, 'config.json');
  fs.writeFileSync(
    configFile,
    JSON.stringify({
      startPaths: { pauseGraceMs: PAUSE_GRACE_MS },
      autoscaling: { tickMs: 100, sampleMs: 50 },
    }),
  );
  daemon = await spawnDaemon({
    stateDir,
    configFile,
    args: ['--memory-budget', String(BUDGET_MB)],
  });
});

/** Waits until the function's instance has been frozen. */
async function paused(name: string): Promise<void> {
  const deadline = Date.now() + PAUSE_GRACE_MS + 5000;
  for (;;) {
    const view = JSON.parse((await call('GET', `/v1/functions/${name}`)).text) as {
      instances: { paused: number };
    };
    if (view.instances.paused > 0) return;
    assert.ok(Date.now() < deadline, `${name} was not paused`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

after(async () => {
  await daemon?.close();
  fs.rmSync(stateDir, { recursive: true, force: true });
  fs.rmSync(codeRoot, { recursive: true, force: true });
});

describe('GET /metrics', () => {
  it('passes promtool check metrics after warm, paused, cold, failed and unserved invocations', async (t) => {
    await deploy('ok', 'export async function handler(e) { return e; }\n');
    await deploy('thrower', 'export async function handler() { throw new Error("no"); }\n');
    await deploy(
      'broken-init',
      'throw new Error("fails while loading");\nexport const handler = () => 1;\n',
    );
    await deploy('too-big', 'export const handler = () => 1;\n', { memoryMb: BUDGET_MB * 2 });
    await deploy('scaled', 'export async function handler(e) { return e; }\n', {
      autoscaling: { policy: 'rps', target: 10 },
    });
    assert.equal((await call('POST', '/v1/functions/scaled/invoke')).status, 200);
    await new Promise((resolve) => setTimeout(resolve, 250)); // two decisions, 100 ms apart
    assert.equal(
      (await call('POST', '/v1/functions/ok/invoke', { n: 1 })).headers['x-petri-start'],
      'cold',
    );
    assert.equal(
      (await call('POST', '/v1/functions/ok/invoke', { n: 2 })).headers['x-petri-start'],
      'warm',
    );
    await paused('ok');
    assert.equal(
      (await call('POST', '/v1/functions/ok/invoke', { n: 3 })).headers['x-petri-start'],
      'paused',
    );
    assert.equal((await call('POST', '/v1/functions/thrower/invoke')).status, 502);
    const initFailure = await call('POST', '/v1/functions/broken-init/invoke');
    assert.equal(initFailure.status, 502);
    assert.equal(initFailure.headers['x-petri-start'], 'cold', 'a failed cold start is a cold one');
    const refused = await call('POST', '/v1/functions/too-big/invoke');
    assert.match(refused.text, /CapacityExceeded/);

    const metrics = await call('GET', '/metrics');
    assert.equal(metrics.status, 200);
    const text = metrics.text;
    assert.match(text, /^petri_memory_in_use_bytes \d+$/m);
    assert.doesNotMatch(text, /_mb\b/, 'no abbreviated units');
    assert.match(text, /petri_invocations_total\{function="ok",start="warm",outcome="success"\} 1/);
    assert.match(
      text,
      /petri_invocations_total\{function="thrower",start="cold",outcome="HandlerError"\} 1/,
    );
    assert.match(
      text,
      /petri_invocations_total\{function="broken-init",start="cold",outcome="HandlerError"\} 1/,
    );
    assert.match(
      text,
      /petri_invocations_total\{function="too-big",start="unserved",outcome="CapacityExceeded"\} 1/,
    );
    assert.match(
      text,
      /petri_invocations_total\{function="ok",start="paused",outcome="success"\} 1/,
    );
    assert.deepEqual([...labelValues(text, 'start')].sort(), [
      'cold',
      'paused',
      'unserved',
      'warm',
    ]);
    const states = labelValues(text, 'state');
    for (const state of ['starting', 'idle', 'paused', 'busy', 'stopping'])
      assert.ok(states.has(state), state);
    assert.ok(!states.has('dead'), 'dead instances are not a state');
    for (const gauge of ['desired_instances', 'actual_instances', 'panic'])
      assert.match(
        text,
        new RegExp(`^petri_autoscaler_${gauge}\\{function="scaled",policy="rps"\\} \\d+$`, 'm'),
      );
    assert.match(
      text,
      /^petri_autoscaler_observed\{function="scaled",policy="rps",window="panic"\} /m,
    );
    assert.doesNotMatch(
      text,
      /petri_autoscaler_\w+\{function="ok"/,
      'on-demand functions have none',
    );

    if (!requirePromtool(t)) return;
    const lint = await promtoolCheck(text);
    assert.equal(lint.output, '', 'promtool reports nothing');
    assert.equal(lint.code, 0);
  });
});
