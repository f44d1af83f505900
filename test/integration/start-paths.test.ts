/**
 * Start paths against a real daemon (root: cgroup freezer, bwrap, network):
 * an idle instance is frozen after the pause grace and uses no CPU, the next
 * invocation thaws it (`x-petri-start: paused`), a frozen instance is evicted
 * when another function needs its memory, and stop and crash leave nothing.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { detectCgroups } from '../../src/cgroup/index.ts';
import { spawnDaemon, type Daemon } from '../../src/harness/index.ts';
import { nodeTagFrom } from '../../src/net/index.ts';
import { requireRoot } from '../helpers/root.ts';
import { cgroupTraces, instanceCgroupTraces, processesOf } from '../helpers/traces.ts';

const codeRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'petri-start-paths-code-'));
const stateDirs: string[] = [];
const daemons: Daemon[] = [];
/** Room for one 192 MB instance and one of 64 MB, not for two of 128 MB and one of 192 MB. */
const BUDGET_MB = 256;

function missingFreezer(): string | undefined {
  const status = detectCgroups()
    .controllers()
    .find((c) => ['freezer', 'cpuacct'].includes(c.name) && !c.usable);
  return status && `cgroup ${status.name}: ${status.reason}`;
}

async function startNode(): Promise<{ daemon: Daemon; stateDir: string; tag: string }> {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'petri-start-paths-'));
  stateDirs.push(stateDir);
  const daemon = await spawnDaemon({ stateDir, args: ['--memory-budget', String(BUDGET_MB)] });
  daemons.push(daemon);
  return { daemon, stateDir, tag: nodeTagFrom(stateDir) };
}

async function call(daemon: Daemon, method: 'GET' | 'PUT' | 'POST', url: string, body?: unknown) {
  const response = await request(daemon.url + url, {
    method,
    body: body === undefined ? undefined : JSON.stringify(body),
    headers: { ...daemon.headers, 'content-type': 'application/json' },
  });
  const text = await response.body.text();
  return { status: response.statusCode, headers: response.headers, json: JSON.parse(text) };
}

async function deploy(daemon: Daemon, name: string, memoryMb: number): Promise<void> {
  const dir = path.join(codeRoot, name);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'index.mjs'), 'export async function handler(e) { return e; }\n');
  const reply = await call(daemon, 'PUT', `/v1/functions/${name}`, {
    runtime: 'node',
    memoryMb,
    source: { path: dir },
  });
  assert.ok(reply.status < 300, JSON.stringify(reply.json));
}

/** Invokes and returns the start path and the instance that served it. */
async function invoke(daemon: Daemon, name: string, event: unknown) {
  const reply = await call(daemon, 'POST', `/v1/functions/${name}/invoke`, event);
  assert.equal(reply.status, 200, JSON.stringify(reply.json));
  assert.deepEqual(reply.json, event);
  const id = String(reply.headers['x-petri-invocation-id']);
  // The record is stored once the instance's usage is read, just after the reply.
  let record: { status?: string; startPath: string; instanceId: string } | undefined;
  await until('the invocation is recorded', async () => {
    const got = await call(daemon, 'GET', `/v1/invocations/${id}`);
    record = got.status === 200 ? got.json : undefined;
    return record?.status === 'succeeded';
  });
  assert.equal(record!.startPath, reply.headers['x-petri-start'], 'the record says the same');
  return record!;
}

async function pausedCount(daemon: Daemon, name: string): Promise<number> {
  const view = (await call(daemon, 'GET', `/v1/functions/${name}`)).json as {
    instances: { paused: number };
  };
  return view.instances.paused;
}

async function until(what: string, check: () => Promise<boolean>, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    assert.ok(Date.now() < deadline, `${what} within ${ms} ms`);
    await sleep(20);
  }
}

/** The instance's directory in the hierarchy holding `file` (cpuacct.usage, freezer.state). */
async function controlFile(tag: string, instanceId: string, file: string): Promise<string> {
  const dirs = (await instanceCgroupTraces(tag, instanceId)).map((t) => t.replace(/^cgroup /, ''));
  const found = dirs.map((dir) => path.join(dir, file)).find((f) => fs.existsSync(f));
  assert.ok(found, `${file} of ${instanceId} in ${dirs.join(', ')}`);
  return found;
}

after(async () => {
  for (const daemon of daemons) await daemon.close().catch(() => undefined);
  for (const dir of [...stateDirs, codeRoot]) fs.rmSync(dir, { recursive: true, force: true });
});

describe('start paths on a real node', () => {
  let node: Awaited<ReturnType<typeof startNode>> | undefined;

  before(async () => {
    if (process.geteuid?.() !== 0 || missingFreezer()) return;
    node = await startNode();
    await deploy(node.daemon, 'light', 128);
    await deploy(node.daemon, 'big', 192);
  });

  it('freezes an idle instance after the pause grace: no CPU, and the next invocation thaws it', async (t) => {
    if (!requireRoot(t, missingFreezer)) return;
    const { daemon, tag } = node!;
    assert.deepEqual((await call(daemon, 'GET', '/v1/node')).json.startPaths, {
      policy: 'warm-first',
      pausing: true,
      pauseGraceMs: 50,
    });
    const first = await invoke(daemon, 'light', { n: 1 });
    assert.equal(first.startPath, 'cold');
    await until('light is paused', async () => (await pausedCount(daemon, 'light')) === 1);
    const state = await controlFile(tag, first.instanceId, 'freezer.state');
    // `paused` from the freeze's first step; the kernel says FROZEN once every task has stopped.
    await until('the kernel has frozen it', async () => {
      return fs.readFileSync(state, 'utf8').trim() === 'FROZEN';
    });
    const usage = await controlFile(tag, first.instanceId, 'cpuacct.usage');
    const before = Number(fs.readFileSync(usage, 'utf8'));
    await sleep(500);
    const usedNs = Number(fs.readFileSync(usage, 'utf8')) - before;
    assert.ok(usedNs <= 0.01 * 500e6, `a paused instance used ${usedNs / 1e6} ms of CPU in 500 ms`);
    const second = await invoke(daemon, 'light', { n: 2 });
    assert.equal(second.startPath, 'paused');
    assert.equal(second.instanceId, first.instanceId);
    assert.equal(fs.readFileSync(state, 'utf8').trim() === 'FROZEN', false);
  });

  it('evicts a paused instance when another function needs its memory', async (t) => {
    if (!requireRoot(t, missingFreezer)) return;
    const { daemon, tag } = node!;
    const light = await invoke(daemon, 'light', { n: 3 });
    await until('light is paused', async () => (await pausedCount(daemon, 'light')) === 1);
    const big = await invoke(daemon, 'big', { n: 4 });
    assert.equal(big.startPath, 'cold');
    await until('the paused instance is gone', async () => {
      const left = await instanceCgroupTraces(tag, light.instanceId);
      return left.length === 0 && (await processesOf(light.instanceId)).length === 0;
    });
    assert.equal(await pausedCount(daemon, 'light'), 0);
  });

  it('a stop with a paused instance leaves no process and no cgroup', async (t) => {
    if (!requireRoot(t, missingFreezer)) return;
    const { daemon, tag } = node!;
    const big = await invoke(daemon, 'big', { n: 5 });
    await until('big is paused', async () => (await pausedCount(daemon, 'big')) === 1);
    await daemon.stop('SIGTERM');
    assert.deepEqual(await processesOf(big.instanceId), []);
    assert.deepEqual(await cgroupTraces(tag), []);
  });
});

describe('a crash with a paused instance', () => {
  it('leaves no frozen process behind, and the next start removes its cgroup', async (t) => {
    if (!requireRoot(t, missingFreezer)) return;
    const { daemon, stateDir, tag } = await startNode();
    await deploy(daemon, 'light', 128);
    const light = await invoke(daemon, 'light', { n: 1 });
    await until('light is paused', async () => (await pausedCount(daemon, 'light')) === 1);
    await daemon.stop('SIGKILL');
    // Its instance host exits once its pipe to the dead daemon closes, which needs it thawed.
    await until('the paused instance is gone', async () => {
      return (await processesOf(light.instanceId)).length === 0;
    });
    const again = await spawnDaemon({ stateDir, testbed: daemon.testbed });
    daemons.push(again);
    assert.deepEqual(await instanceCgroupTraces(tag, light.instanceId), []);
    await again.stop('SIGTERM');
  });
});
