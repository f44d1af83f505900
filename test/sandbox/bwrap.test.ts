import assert from 'node:assert/strict';
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { once } from 'node:events';
import fsSync from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { parseConfig } from '../../src/config.ts';
import { bwrapLayer } from '../../src/sandbox/bwrap.ts';
import type { IsolationLayer, LayerInstance } from '../../src/sandbox/layer.ts';
import { instancePath } from '../../src/sandbox/process.ts';
import type { SandboxSpec } from '../../src/sandbox/types.ts';
import { resourcesFor } from '../../src/sandbox/resources.ts';
import { requireRoot } from '../helpers/root.ts';
import { tempDir } from '../helpers/tmp.ts';
import { describeLayerCases } from './layer.case.ts';

/**
 * Runs inside the sandbox and reports what it can see and do, as JSON on
 * stdout and a marker on fd 3 (the protocol pipe must pass through bwrap).
 */
const PROBE = `
import fs from 'node:fs';
import os from 'node:os';
import { spawnSync } from 'node:child_process';
const env = process.env;
const attempt = (fn) => { try { fn(); return 'ok'; } catch (e) { return e.code; } };
const exists = (p) => fs.existsSync(p);
const status = fs.readFileSync('/proc/self/status', 'utf8');
const field = (name) => status.split('\\n').find((l) => l.startsWith(name + ':')).split(/\\s+/)[1];
const run = (file, args) => {
  const r = spawnSync(file, args, { encoding: 'utf8' });
  return { status: r.status, out: (r.stdout ?? '').trim(), err: r.error?.code };
};
const result = {
  uid: process.getuid(),
  gid: process.getgid(),
  groups: process.getgroups(),
  user: os.userInfo(),
  home: env.HOME,
  capBnd: field('CapBnd'),
  capPrm: field('CapPrm'),
  capAmb: field('CapAmb'),
  noNewPrivs: field('NoNewPrivs'),
  rootEntries: fs.readdirSync('/').sort(),
  etcEntries: fs.readdirSync('/etc').sort(),
  passwd: fs.readFileSync('/etc/passwd', 'utf8'),
  shadow: attempt(() => fs.readFileSync('/etc/shadow')),
  rootHome: attempt(() => fs.readdirSync('/root')),
  homes: attempt(() => fs.readdirSync('/home')),
  varEntries: attempt(() => fs.readdirSync('/var').join(',')),
  srv: attempt(() => fs.readdirSync('/srv')),
  sys: exists('/sys'),
  writeRoot: attempt(() => fs.writeFileSync('/petri-bwrap-test', 'x')),
  shmWrite: attempt(() => fs.writeFileSync('/dev/shm/x', 'x')),
  userns: run('unshare', ['--user', 'true']).status,
  sh: run('sh', ['-c', 'id -u']),
  python: run('python3', ['-c', 'import os, sys; print(os.getuid(), sys.executable)']),
  node: run('node', ['-p', 'process.execPath']),
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

  /** Spawns a wrapped command the way the process driver does: with the layer's descriptors. */
  function spawnWrapped(
    instance: LayerInstance,
    command: string[],
    options: SpawnOptions = {},
  ): ChildProcess {
    const [file, ...args] = instance.wrap(command);
    const stdio: ('ignore' | 'pipe' | number)[] = ['ignore', 'pipe', 'pipe', 'pipe'];
    const descriptors = instance.descriptors?.() ?? [];
    for (const { fd, source } of descriptors) stdio[fd] = source;
    try {
      const child = spawn(file, args, { ...options, stdio });
      children.push(child);
      return child;
    } finally {
      for (const { source } of descriptors) fsSync.closeSync(source);
    }
  }

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

  test('minimal read-only root, own uid without capabilities, private capped /tmp, own pid namespace, fd 3', async (t) => {
    if (!requireRoot(t, missing)) return;
    const s = spec(1);
    const marker = path.join(os.tmpdir(), `petri-bwrap-marker-${process.pid}`);
    await fs.writeFile(marker, 'host');
    t.after(() => fs.rm(marker, { force: true }));
    const instance = await layer.prepare(s);
    const child = spawnWrapped(instance, [process.execPath, path.join(hostDir, 'probe.mjs')], {
      env: {
        PATH: instancePath(),
        ...instance.env,
        CODE_DIR: s.codeDir,
        TMP_MARKER: marker,
        HOST_PID: String(process.pid),
        OTHER_CODE: path.join(stateDir, 'functions/b/code/secret.js'),
        STATE_DIR: stateDir,
      },
    });
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

    // Its own reserved uid, no groups, no capabilities now or later.
    const { first, count } = parseConfig({}).sandbox.uidRange;
    assert.ok(r.uid >= first && r.uid < first + count, `uid ${r.uid}`);
    assert.equal(r.gid, r.uid);
    // Node lists the effective gid with the supplementary groups, which are none.
    assert.ok(
      r.groups.every((gid: number) => gid === r.gid),
      `groups ${r.groups}`,
    );
    assert.equal(r.user.username, 'petri');
    assert.equal(r.user.homedir, '/tmp');
    assert.equal(r.home, '/tmp');
    assert.match(r.passwd, new RegExp(`^petri:x:${r.uid}:${r.uid}:`, 'm'));
    assert.equal(Number.parseInt(r.capPrm, 16), 0);
    assert.equal(Number.parseInt(r.capBnd, 16), 0, 'empty bounding set');
    assert.equal(Number.parseInt(r.capAmb, 16), 0);
    assert.equal(r.noNewPrivs, '1');
    assert.notEqual(r.userns, 0, 'no user namespaces: no capabilities back');

    // Only what runtimes need, plus the paths leading to the node binary, the probe and the code.
    const expected = new Set(['dev', 'etc', 'proc', 'tmp']);
    for (const p of ['/usr', '/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32']) {
      if (fsSync.existsSync(p)) expected.add(p.slice(1));
    }
    for (const p of [process.execPath, stateDir]) expected.add(p.split('/')[1]);
    assert.deepEqual(r.rootEntries, [...expected].sort());
    assert.equal(r.shadow, 'ENOENT');
    assert.equal(r.rootHome, 'ENOENT');
    assert.equal(r.homes, 'ENOENT');
    assert.equal(r.srv, 'ENOENT');
    assert.equal(r.varEntries, 'ok', 'the state dir lies under /var/tmp here');
    assert.equal(r.sys, false, 'no /sys: no view of any cgroup');
    assert.ok(r.etcEntries.includes('passwd') && r.etcEntries.includes('hosts'));
    assert.ok(!r.etcEntries.includes('shadow') && !r.etcEntries.includes('sudoers'));
    assert.equal(r.writeRoot, 'EROFS');
    assert.equal(r.shmWrite, 'ok');

    // Shells, Python and the daemon's own Node work, found on the instance PATH.
    assert.deepEqual(r.sh, { status: 0, out: String(r.uid) });
    assert.equal(r.python.status, 0, JSON.stringify(r.python));
    assert.equal(r.python.out.split(' ')[0], String(r.uid));
    assert.deepEqual(r.node, { status: 0, out: process.execPath });
    await instance.destroy();
  });

  test('gives each live instance its own uid and hands it out again once the instance is gone', async (t) => {
    if (!requireRoot(t, missing)) return;
    const uidOf = async (instance: LayerInstance): Promise<number> => {
      const child = spawnWrapped(instance, ['/usr/bin/id', '-u']);
      let out = '';
      child.stdout?.on('data', (c: Buffer) => (out += c));
      await once(child, 'exit');
      return Number(out.trim());
    };
    const a = await layer.prepare(spec(1));
    const b = await layer.prepare(spec(1));
    const [uidA, uidB] = [await uidOf(a), await uidOf(b)];
    assert.notEqual(uidA, uidB);
    assert.ok(uidA > 0 && uidB > 0);
    await a.destroy();
    const c = await layer.prepare(spec(1));
    assert.equal(await uidOf(c), uidA, 'a released uid is used again');
    await b.destroy();
    await c.destroy();
  });

  test('the sandbox dies with its parent', async (t) => {
    if (!requireRoot(t, missing)) return;
    const instance = await layer.prepare(spec(1));
    const tag = `${3000 + (process.pid % 1000)}.123`;
    const command = instance.wrap(['/bin/sleep', tag]);
    // A middle process stands in for the node; SIGKILL gives it no chance to clean up.
    const descriptors = instance.descriptors?.() ?? [];
    const stdio: ('ignore' | number)[] = ['ignore', 'ignore', 'ignore', 'ignore'];
    for (const { fd, source } of descriptors) stdio[fd] = source;
    const parent = spawn(
      process.execPath,
      [
        '-e',
        `require('child_process').spawn(${JSON.stringify(command[0])}, ${JSON.stringify(command.slice(1))}, {stdio: ${JSON.stringify(stdio.map((_, fd) => (fd < 4 ? 'ignore' : fd)))}}); setInterval(() => {}, 1000)`,
      ],
      { stdio },
    );
    for (const { source } of descriptors) fsSync.closeSync(source);
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
