import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { spawnDaemon, type Daemon } from '../../src/harness/index.ts';
import { requireRoot } from '../helpers/root.ts';

/**
 * The trust boundary tried as an attacker would, on a real daemon (as root,
 * in a namespace made for this test): a function that plants its own `sh`,
 * `nsenter`, `bwrap`, `setpriv` … first on its PATH and sets LD_PRELOAD,
 * LD_DEBUG_OUTPUT, BASH_ENV and NODE_OPTIONS must not get anything run
 * outside its sandbox; a function that looks around sees only a minimal
 * root as its own unprivileged user. After each attack the node still serves.
 */
const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'petri-esc-'));
const codeRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'petri-esc-code-'));
/** Where a planted program leaves a file if it ever runs on the host. Writable by anyone. */
const markerDir = fs.mkdtempSync(path.join(os.tmpdir(), 'petri-esc-marker-'));
fs.chmodSync(markerDir, 0o1777);
const PLANTED = ['sh', 'nsenter', 'bwrap', 'setpriv', 'env', 'ip', 'tc', 'iptables', 'node'];
let daemon: Daemon | undefined;
let missing = 'not started';
let preloadBuilt = false;

/** A stand-in for a host tool: marks the host if it runs there, notes that it ran, then runs the real one. */
function plantedTool(name: string): string {
  return [
    '#!/bin/sh',
    `echo "$(id -u)" > ${markerDir}/${name} 2>/dev/null`,
    `echo x > /tmp/ran-${name} 2>/dev/null`,
    `for dir in /usr/sbin /usr/bin /sbin /bin; do [ -x "$dir/${name}" ] && exec "$dir/${name}" "$@"; done`,
    'exit 127',
    '',
  ].join('\n');
}

/** A preload library with the same two effects, built when a C compiler is at hand. */
const PRELOAD_C = `
#include <stdio.h>
#include <unistd.h>
__attribute__((constructor)) static void hijack(void) {
  char path[4096];
  snprintf(path, sizeof path, "${markerDir}/preload-%d", (int)getuid());
  FILE *host = fopen(path, "w");
  if (host) { fputs("x", host); fclose(host); }
  FILE *inside = fopen("/tmp/preloaded", "a");
  if (inside) { fputs("x", inside); fclose(inside); }
}
`;

const HIJACK_HANDLER = `
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
export function handler() {
  const shOut = execFileSync('sh', ['-c', 'echo inside'], { encoding: 'utf8' }).trim();
  return {
    cwd: process.cwd(),
    uid: process.getuid(),
    preloaded: globalThis.__petriPreloaded === true,
    nodeOptions: process.env.NODE_OPTIONS,
    ldPreload: process.env.LD_PRELOAD,
    path: process.env.PATH,
    shOut,
    ran: fs.readdirSync('/tmp').filter((n) => n.startsWith('ran-') || n === 'preloaded').sort(),
  };
}
`;

const SNOOP_HANDLER = `
import fs from 'node:fs';
import v8 from 'node:v8';
const attempt = (fn) => { try { return { ok: fn() }; } catch (e) { return { error: e.code }; } };
export function handler(event) {
  return {
    uid: process.getuid(),
    shadow: attempt(() => fs.readFileSync('/etc/shadow', 'utf8').length),
    root: attempt(() => fs.readdirSync('/root')),
    home: attempt(() => fs.readdirSync('/home')),
    varLib: attempt(() => fs.readdirSync('/var/lib')),
    srv: attempt(() => fs.readdirSync('/srv')),
    otherCode: attempt(() => fs.readFileSync(event.otherCode, 'utf8').length),
    database: attempt(() => fs.readFileSync(event.stateDir + '/petri.db').length),
    stateDir: attempt(() => fs.readdirSync(event.stateDir).sort()),
    functions: attempt(() => fs.readdirSync(event.stateDir + '/functions')),
    sandboxDir: attempt(() => fs.readdirSync(event.stateDir + '/sandbox')),
    pids: fs.readdirSync('/proc').filter((n) => /^\\d+$/.test(n)).length,
    sys: fs.readdirSync('/sys'),
    // Every cgroup folder in sight, and the instance's own (from /proc/self/cgroup).
    cgroupDirs: fs.readdirSync('/sys', { recursive: true })
      .filter((p) => p.endsWith('/cgroup.procs'))
      .map((p) => '/sys/' + p.slice(0, -'/cgroup.procs'.length)),
    ownCgroups: fs.readFileSync('/proc/self/cgroup', 'utf8').split('\\n').filter(Boolean)
      .map((line) => line.split(':').slice(2).join(':')),
    heapLimitMb: v8.getHeapStatistics().heap_size_limit / 2 ** 20,
    etc: fs.readdirSync('/etc').sort(),
  };
}
`;

async function call(method: 'GET' | 'PUT' | 'POST', url: string, body?: unknown) {
  const response = await request(daemon!.url + url, {
    method,
    body: body === undefined ? undefined : JSON.stringify(body),
    headers: { ...daemon!.headers, 'content-type': 'application/json' },
  });
  return {
    status: response.statusCode,
    body: (await response.body.json()) as Record<string, unknown>,
  };
}

/** Where the node keeps version 1 of `name`'s code (the handlers report their cwd to confirm). */
function deployedCode(name: string): string {
  return path.join(stateDir, 'functions', name, 'v1', 'code');
}

async function deploy(
  name: string,
  files: Record<string, string>,
  spec: Record<string, unknown>,
): Promise<void> {
  const dir = path.join(codeRoot, name);
  fs.mkdirSync(dir, { recursive: true });
  for (const [file, text] of Object.entries(files)) {
    fs.writeFileSync(path.join(dir, file), text, { mode: 0o755 });
  }
  if (files['preload.c'] !== undefined) {
    const cc = spawnSync('cc', ['-shared', '-fPIC', '-o', 'preload.so', 'preload.c'], { cwd: dir });
    preloadBuilt = cc.status === 0;
  }
  const reply = await call('PUT', `/v1/functions/${name}`, { ...spec, source: { path: dir } });
  assert.ok(reply.status < 300, JSON.stringify(reply.body));
}

function invoke(name: string, event: Record<string, unknown> = {}) {
  return call('POST', `/v1/functions/${name}/invoke`, event);
}

/** The env of a function that wants its own files to run in place of the host's tools. */
function hostileEnv(name: string): Record<string, string> {
  const code = deployedCode(name);
  return {
    PATH: `${code}:/usr/sbin:/usr/bin:/sbin:/bin`,
    LD_PRELOAD: path.join(code, 'preload.so'),
    LD_LIBRARY_PATH: code,
    LD_DEBUG: 'libs',
    LD_DEBUG_OUTPUT: path.join(markerDir, 'ld-debug'),
    BASH_ENV: path.join(code, 'evil.sh'),
    ENV: path.join(code, 'evil.sh'),
    NODE_OPTIONS: `--require ${path.join(code, 'evil.cjs')}`,
  };
}

function hostileFiles(): Record<string, string> {
  const files: Record<string, string> = {
    'preload.c': PRELOAD_C,
    'evil.sh': `echo x > ${markerDir}/bash-env 2>/dev/null\n`,
    'evil.cjs': `globalThis.__petriPreloaded = true;\ntry { require('fs').writeFileSync('${markerDir}/node-options', 'x'); } catch {}\n`,
  };
  for (const tool of PLANTED) files[tool] = plantedTool(tool);
  return files;
}

before(async () => {
  if (process.getuid?.() !== 0) return;
  daemon = await spawnDaemon({ stateDir });
  const node = (await call('GET', '/v1/node')).body as {
    isolation: { mechanisms: { name: string; active: boolean; reason?: string }[] };
  };
  const bwrap = node.isolation.mechanisms.find((m) => m.name === 'bwrap');
  missing = bwrap?.active ? '' : `bwrap: ${bwrap?.reason ?? 'not reported'}`;
  await deploy(
    'hijack',
    { ...hostileFiles(), 'index.mjs': HIJACK_HANDLER },
    { runtime: 'node', env: hostileEnv('hijack') },
  );
  // exec: the host spawns the command itself, resolving `sh` with the function's PATH.
  await deploy('hijack-exec', hostileFiles(), {
    runtime: 'exec',
    command: [
      'sh',
      '-c',
      'printf \'{"uid": %s, "ran": "%s"}\' "$(id -u)" "$(ls /tmp | tr "\\n" " ")"',
    ],
    // LD_DEBUG would put the linker's notes in the command's output; the node function has it.
    env: { ...hostileEnv('hijack-exec'), LD_DEBUG: undefined, LD_DEBUG_OUTPUT: undefined },
  });
  await deploy('snoop', { 'index.mjs': SNOOP_HANDLER }, { runtime: 'node' });
  await deploy(
    'python',
    {},
    {
      runtime: 'exec',
      command: [
        'python3',
        '-c',
        'import json, os, pwd, sys; print(json.dumps({"uid": os.getuid(), "user": pwd.getpwuid(os.getuid()).pw_name, "exe": os.path.realpath(sys.executable), "home": os.path.expanduser("~")}))',
      ],
    },
  );
  await deploy(
    'shell',
    {},
    {
      runtime: 'exec',
      command: [
        'sh',
        '-c',
        'unshare --user true 2>/dev/null; userns=$?; printf \'{"uid": %s, "user": "%s", "userns": %s}\' "$(id -u)" "$(id -un)" "$userns"',
      ],
    },
  );
});

after(async () => {
  await daemon?.close();
  fs.rmSync(stateDir, { recursive: true, force: true });
  fs.rmSync(codeRoot, { recursive: true, force: true });
  fs.rmSync(markerDir, { recursive: true, force: true });
});

function ready(t: Parameters<typeof requireRoot>[0]): boolean {
  return requireRoot(t, () => (missing === '' ? undefined : missing));
}

/** The node still answers another function after an attack. */
async function assertServing(): Promise<void> {
  const reply = await invoke('shell');
  assert.equal(reply.status, 200, JSON.stringify(reply.body));
}

describe('no escape from the sandbox (real daemon)', () => {
  it("runs none of a function's planted tools, preloads or startup hooks outside its sandbox", async (t) => {
    if (!ready(t)) return;
    const node = await invoke('hijack');
    assert.equal(node.status, 200, JSON.stringify(node.body));
    const exec = await invoke('hijack-exec');
    assert.equal(exec.status, 200, JSON.stringify(exec.body));
    // Cold starts of both ran the whole launch chain with the hostile env in the spec.
    assert.deepEqual(fs.readdirSync(markerDir), [], 'nothing ran on the host');

    // Not vacuous: the planted `sh` did run, inside, for the commands the function ran.
    const body = node.body as Record<string, unknown>;
    assert.equal(body.cwd, deployedCode('hijack'));
    assert.notEqual(body.uid, 0);
    // LD_DEBUG acted too, inside: the linker's notes lead the command's output.
    assert.equal(String(body.shOut).split('\n').at(-1), 'inside');
    assert.ok((body.ran as string[]).includes('ran-sh'), `ran ${body.ran}`);
    if (preloadBuilt) assert.ok((body.ran as string[]).includes('preloaded'));
    // The env reached the handler and its commands, but not the host's own start.
    assert.equal(body.nodeOptions, hostileEnv('hijack').NODE_OPTIONS);
    assert.equal(body.path, hostileEnv('hijack').PATH);
    assert.equal(body.preloaded, false, 'NODE_OPTIONS did not act on the instance host');
    assert.match(String((exec.body as { ran: string }).ran), /ran-sh/);
    assert.notEqual((exec.body as { uid: number }).uid, 0);
    await assertServing();
  });

  it('reports the launch tools by absolute path, found only in system folders', async (t) => {
    if (!ready(t)) return;
    const { isolation } = (await call('GET', '/v1/node')).body as {
      isolation: { launch: { trustedPath: string; tools: Record<string, string | null> } };
    };
    assert.equal(isolation.launch.trustedPath, '/usr/sbin:/usr/bin:/sbin:/bin');
    for (const tool of ['sh', 'nsenter', 'bwrap', 'setpriv']) {
      const file = isolation.launch.tools[tool];
      assert.ok(file && /^\/(usr\/)?s?bin\//.test(file), `${tool}: ${file}`);
    }
  });
});

describe('unprivileged instances on a minimal root (real daemon)', () => {
  it("cannot read /etc/shadow, /root, /home, /var, another function's code or the state dir", async (t) => {
    if (!ready(t)) return;
    const reply = await invoke('snoop', {
      otherCode: path.join(deployedCode('hijack'), 'index.mjs'),
      stateDir,
    });
    assert.equal(reply.status, 200, JSON.stringify(reply.body));
    const body = reply.body;
    assert.notEqual(body.uid, 0);
    for (const key of ['shadow', 'root', 'home', 'varLib', 'srv', 'otherCode', 'database']) {
      const { error } = body[key] as { error?: string };
      assert.ok(error === 'ENOENT' || error === 'EACCES', `${key}: ${JSON.stringify(body[key])}`);
    }
    // Of the state dir only the paths to its own version and to the instance host exist.
    assert.deepEqual(body.stateDir, { ok: ['functions', 'runtime'] });
    assert.deepEqual(body.functions, { ok: ['snoop'] });
    assert.deepEqual(body.sandboxDir, { error: 'ENOENT' });
    assert.ok((body.pids as number) <= 3, `sees ${body.pids} processes`);
    // /sys holds only the instance's own cgroup folders: no other instance's, nothing else.
    assert.deepEqual(body.sys, ['fs']);
    const own = body.ownCgroups as string[];
    const dirs = body.cgroupDirs as string[];
    assert.ok(dirs.length > 0, 'its own cgroup folders are there');
    for (const dir of dirs) {
      assert.ok(
        own.some((rel) => rel !== '/' && dir.endsWith(rel)),
        `${dir} is not one of ${own}`,
      );
    }
    // So Node sizes its heap from the function's 128 MB (V8's floor is about 256 MB), not
    // from the host's memory, which gives GBs.
    assert.ok((body.heapLimitMb as number) <= 512, `heap limit ${body.heapLimitMb} MB`);
    assert.ok(!(body.etc as string[]).includes('shadow'));
    assert.ok((body.etc as string[]).includes('passwd'));
    await assertServing();
  });

  it('runs python3 and sh in exec functions as its own unprivileged user, without user namespaces', async (t) => {
    if (!ready(t)) return;
    const python = await invoke('python');
    assert.equal(python.status, 200, JSON.stringify(python.body));
    const shell = await invoke('shell');
    assert.equal(shell.status, 200, JSON.stringify(shell.body));
    const { first, count } = { first: 1_879_048_192, count: 65_536 };
    for (const body of [python.body, shell.body]) {
      const uid = body.uid as number;
      assert.ok(uid >= first && uid < first + count, `uid ${uid}`);
      assert.equal(body.user, 'petri');
    }
    assert.notEqual(python.body.uid, shell.body.uid, 'each instance has its own uid');
    // The real interpreter, not a shim from the host's PATH (pyenv, asdf live in home folders).
    assert.match(String(python.body.exe), /^\/usr\//);
    assert.equal(python.body.home, '/tmp');
    assert.notEqual(shell.body.userns, 0, 'unshare --user is refused');
  });

  it('reports what the root holds in GET /v1/node', async (t) => {
    if (!ready(t)) return;
    const { isolation } = (await call('GET', '/v1/node')).body as {
      isolation: {
        sandboxRoot: {
          uids: { first: number; count: number; user: string };
          paths: { path: string; symlink?: string }[];
          etc: { copied: string[]; generated: string[] };
          node: string;
          tmpfs: string[];
          userNamespacesBlocked: boolean;
        };
      };
    };
    const root = isolation.sandboxRoot;
    assert.deepEqual(root.uids, { first: 1_879_048_192, count: 65_536, user: 'petri' });
    assert.ok(root.paths.some((entry) => entry.path === '/usr' && !entry.symlink));
    const bin = fs.lstatSync('/bin');
    const binEntry = root.paths.find((entry) => entry.path === '/bin');
    if (bin.isSymbolicLink()) assert.equal(binEntry?.symlink, fs.readlinkSync('/bin'));
    assert.ok(root.etc.generated.includes('passwd') && root.etc.generated.includes('group'));
    assert.ok(![...root.etc.copied, ...root.etc.generated].includes('shadow'));
    assert.ok(path.isAbsolute(root.node));
    assert.deepEqual(root.tmpfs, ['/tmp', '/dev/shm']);
    assert.equal(root.userNamespacesBlocked, ['x64', 'arm64'].includes(process.arch));
  });
});
