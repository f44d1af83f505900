import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { parseConfig } from '../../src/config.ts';
import { bwrapLayer } from '../../src/sandbox/bwrap.ts';
import type { IsolationLayer } from '../../src/sandbox/layer.ts';
import { resourcesFor } from '../../src/sandbox/resources.ts';
import type { SandboxSpec } from '../../src/sandbox/types.ts';
import { requireRoot } from '../helpers/root.ts';
import { tempDir } from '../helpers/tmp.ts';
import { describeLayerCases } from './layer.case.ts';

/**
 * Runs inside the sandbox and reports what it can see and do, as JSON on
 * stdout and a marker on fd 3 (the protocol pipe must pass through bwrap).
 */
const PROBE = `
import fs from 'node:fs';
const env = process.env;
const attempt = (fn) => { try { fn(); return 'ok'; } catch (e) { return e.code; } };
const exists = (p) => fs.existsSync(p);
const result = {
  cwd: process.cwd(),
  writeCode: attempt(() => fs.writeFileSync(env.CODE_DIR + '/x', 'x')),
  writeEtc: attempt(() => fs.writeFileSync('/etc/petri-bwrap-test', 'x')),
  writeUsr: attempt(() => fs.writeFileSync('/usr/petri-bwrap-test', 'x')),
  readCode: fs.readFileSync(env.CODE_DIR + '/handler.js', 'utf8'),
  hostTmpMarker: exists(env.TMP_MARKER),
  smallTmpWrite: attempt(() => fs.writeFileSync('/tmp/small', Buffer.alloc(256 * 1024))),
  bigTmpWrite: attempt(() => fs.writeFileSync('/tmp/big', Buffer.alloc(2 * 1024 * 1024))),
  procPids: fs.readdirSync('/proc').filter((n) => /^\\d+$/.test(n)).map(Number),
  hostPidVisible: exists('/proc/' + env.HOST_PID),
  otherCode: exists(env.OTHER_CODE),
  database: exists(env.STATE_DIR + '/petri.db'),
  stateDirEntries: fs.readdirSync(env.STATE_DIR),
  hostname: fs.readFileSync('/proc/sys/kernel/hostname', 'utf8').trim(),
  capEff: /CapEff:\\s+(\\w+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1],
};
fs.writeSync(3, 'fd3-ok');
console.log(JSON.stringify(result));
`;

describe('bwrap layer (root)', () => {
  let stateDir: string;
  let hostDir: string;
  let layer: IsolationLayer;
  const children: ChildProcess[] = [];
  const missing = () => {
    const status = layer.mechanisms()[0];
    return status.active ? undefined : `bwrap: ${status.reason}`;
  };

  before(async () => {
    // The state dir outside /tmp exercises the tmpfs that hides it; the host script under /tmp
    // exercises re-binding the command's folder after the private /tmp.
    stateDir = await fs.mkdtemp('/var/tmp/petri-bwrap-state-');
    hostDir = await fs.mkdtemp(path.join(os.tmpdir(), 'petri-bwrap-host-'));
    await fs.mkdir(path.join(stateDir, 'functions/a/code/src'), { recursive: true });
    await fs.mkdir(path.join(stateDir, 'functions/b/code'), { recursive: true });
    await fs.writeFile(path.join(stateDir, 'functions/a/code/handler.js'), 'export const a = 1;');
    await fs.writeFile(path.join(stateDir, 'functions/b/code/secret.js'), 'secret');
    await fs.writeFile(path.join(stateDir, 'petri.db'), 'db');
    await fs.writeFile(path.join(hostDir, 'probe.mjs'), PROBE);
    layer = bwrapLayer(parseConfig({ stateDir }));
  });

  after(async () => {
    for (const child of children) child.kill('SIGKILL');
    await fs.rm(stateDir, { recursive: true, force: true });
    await fs.rm(hostDir, { recursive: true, force: true });
  });

  function spec(tmpSizeMb: number): SandboxSpec {
    return {
      instanceId: 'i1',
      functionName: 'a',
      version: 1,
      codeDir: path.join(stateDir, 'functions/a/code'),
      cwd: path.join(stateDir, 'functions/a/code/src'),
      entry: { runtime: 'node', bundle: 'handler.js', exportName: 'handler' },
      env: {},
      resources: {
        memoryMb: 128,
        cpu: 0.072,
        initCpu: 1,
        bandwidthMbit: 43,
        burstBytes: 262144,
        pidsMax: 64,
        tmpSizeMb,
      },
      network: { inbound: false, egress: false },
    };
  }

  test('read-only root and code, private capped /tmp, own pid namespace, hidden state dir, fd 3', async (t) => {
    if (!requireRoot(t, missing)) return;
    const s = spec(1);
    const marker = path.join(os.tmpdir(), `petri-bwrap-marker-${process.pid}`);
    await fs.writeFile(marker, 'host');
    t.after(() => fs.rm(marker, { force: true }));
    const instance = await layer.prepare(s);
    const [file, ...args] = instance.wrap([process.execPath, path.join(hostDir, 'probe.mjs')]);
    const child = spawn(file, args, {
      stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
      env: {
        ...process.env,
        CODE_DIR: s.codeDir,
        TMP_MARKER: marker,
        HOST_PID: String(process.pid),
        OTHER_CODE: path.join(stateDir, 'functions/b/code/secret.js'),
        STATE_DIR: stateDir,
      },
    });
    children.push(child);
    let out = '';
    let err = '';
    let fd3 = '';
    child.stdout?.on('data', (c: Buffer) => (out += c));
    child.stderr?.on('data', (c: Buffer) => (err += c));
    (child.stdio[3] as NodeJS.ReadableStream).on('data', (c: Buffer) => (fd3 += c));
    const [code] = await once(child, 'exit');
    assert.equal(code, 0, err);
    const r = JSON.parse(out);
    assert.equal(r.cwd, s.cwd);
    assert.equal(r.readCode, 'export const a = 1;');
    assert.equal(r.writeCode, 'EROFS');
    assert.equal(r.writeEtc, 'EROFS');
    assert.equal(r.writeUsr, 'EROFS');
    assert.equal(r.hostTmpMarker, false, '/tmp is private');
    assert.equal(r.smallTmpWrite, 'ok');
    assert.equal(r.bigTmpWrite, 'ENOSPC', '/tmp is capped at tmpSizeMb');
    // bwrap's init (pid 1) and the probe: nothing of the host.
    assert.ok(r.procPids.length <= 3, `sees pids ${r.procPids}`);
    assert.ok(
      r.procPids.every((pid: number) => pid < 10),
      `sees pids ${r.procPids}`,
    );
    assert.equal(r.hostPidVisible, false);
    assert.equal(Number.parseInt(r.capEff, 16), 0, 'no capabilities, so no remounts');
    assert.equal(r.otherCode, false, "another function's code is hidden");
    assert.equal(r.database, false, 'the database is hidden');
    assert.deepEqual(r.stateDirEntries, ['functions']);
    assert.equal(r.hostname, 'petri');
    assert.equal(fd3, 'fd3-ok');
    await instance.destroy();
  });

  test('the sandbox dies with its parent', async (t) => {
    if (!requireRoot(t, missing)) return;
    const instance = await layer.prepare(spec(1));
    const tag = `${3000 + (process.pid % 1000)}.123`;
    const command = instance.wrap(['/bin/sleep', tag]);
    // A middle process stands in for the node; SIGKILL gives it no chance to clean up.
    const parent = spawn(process.execPath, [
      '-e',
      `require('child_process').spawn(${JSON.stringify(command[0])}, ${JSON.stringify(command.slice(1))}, {stdio:'ignore'}); setInterval(() => {}, 1000)`,
    ]);
    children.push(parent);
    await waitFor(async () => (await sleepers(tag)).length > 0);
    parent.kill('SIGKILL');
    await waitFor(async () => (await sleepers(tag)).length === 0);
    assert.deepEqual(await sleepers(tag), []);
  });

  test('degraded: bwrap off or missing wraps nothing and says why', async () => {
    const warnings: string[] = [];
    const off = bwrapLayer(parseConfig({ stateDir, isolation: { bwrap: 'off' } }), {
      warn: (m) => warnings.push(m),
    });
    assert.deepEqual(off.mechanisms(), [
      { name: 'bwrap', active: false, reason: 'disabled by config (isolation.bwrap=off)' },
    ]);
    assert.deepEqual((await off.prepare(spec(1))).wrap(['x']), ['x']);
    assert.equal(warnings.length, 0);
    const absent = bwrapLayer(parseConfig({ stateDir }), {
      binary: '/nonexistent/bwrap',
      warn: (m) => warnings.push(m),
    });
    assert.equal(absent.mechanisms()[0].active, false);
    assert.deepEqual((await absent.prepare(spec(1))).wrap(['x']), ['x']);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0], /^bwrap isolation inactive/);
  });
});

/** Host PIDs of `sleep <tag>` processes (found by command line, as the sandbox has its own pid namespace). */
async function sleepers(tag: string): Promise<number[]> {
  const pids: number[] = [];
  for (const name of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const cmdline = await fs.readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '');
    if (cmdline === `/bin/sleep\0${tag}\0`) pids.push(Number(name));
  }
  return pids;
}

async function waitFor(check: () => Promise<boolean>, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('timed out');
    await sleep(20);
  }
}

/** bwrap only adds arguments: it makes nothing on the system to remove or reconcile. */
const conformanceState = tempDir('petri-bwrap-conformance-');
const conformanceCode = path.join(conformanceState, 'functions/f/v1');
await fs.mkdir(path.join(conformanceCode, 'code'), { recursive: true });

describeLayerCases({
  kind: 'layer',
  name: 'bwrap layer',
  make: (_tag, options = {}) =>
    bwrapLayer(
      parseConfig({
        stateDir: conformanceState,
        isolation: options.off ? { bwrap: 'off' } : {},
      }),
    ),
  spec: (id) => ({
    instanceId: id,
    functionName: 'f',
    version: 1,
    codeDir: conformanceCode,
    cwd: path.join(conformanceCode, 'code'),
    entry: { runtime: 'exec', command: ['true'] },
    env: {},
    resources: resourcesFor(128, parseConfig({}).resources),
    network: { inbound: false, egress: false },
  }),
  missing: () => {
    const [status] = bwrapLayer(parseConfig({ stateDir: conformanceState })).mechanisms();
    return status.active ? undefined : `bwrap: ${status.reason}`;
  },
  makesTraces: false,
  traces: async () => [],
  leftovers: async () => [],
});
