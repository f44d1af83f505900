import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { parseConfig } from '../../src/config.ts';
import { PetriError } from '../../src/errors.ts';
import { makeReadableByInstances } from '../../src/node/deploy.ts';
import { applyFunctionEnv, encodeFunctionEnv, FUNCTION_ENV_VAR } from '../../src/runtime/index.ts';
import { findHostTool, instancePath, SandboxRoot, UidPool } from '../../src/sandbox/index.ts';
import { userNamespaceFilter } from '../../src/sandbox/index.ts';
import { parseSpec } from '../../src/spec/index.ts';
import { tempDir } from '../helpers/tmp.ts';

describe('sandbox root config', () => {
  test('refuses root paths that would show the host (/, /root, /home, /var, /etc …)', () => {
    for (const bad of [
      '/',
      '/root',
      '/home/ada',
      '/var',
      '/var/lib/x',
      '/etc',
      '/tmp',
      'usr',
      '/usr/',
    ]) {
      assert.throws(() => parseConfig({ sandbox: { rootPaths: [bad] } }), /rootPaths/, bad);
    }
    assert.deepEqual(parseConfig({ sandbox: { rootPaths: ['/opt/tools'] } }).sandbox.rootPaths, [
      '/opt/tools',
    ]);
  });

  test('refuses /etc entries that hold or lead to secrets', () => {
    for (const bad of [
      'shadow',
      'gshadow',
      'ssl',
      'ssl/private',
      'ssh/ssh_host_rsa_key',
      '/etc/hosts',
      '../x',
    ]) {
      assert.throws(() => parseConfig({ sandbox: { etcFiles: [bad] } }), /etcFiles/, bad);
    }
    assert.deepEqual(parseConfig({ sandbox: { etcFiles: ['ssl/certs'] } }).sandbox.etcFiles, [
      'ssl/certs',
    ]);
  });
});

describe('sandbox root', () => {
  test('builds a curated /etc: copied host entries, generated accounts, nothing secret', () => {
    const stateDir = tempDir('petri-root-');
    const config = parseConfig({
      stateDir,
      sandbox: { etcFiles: ['hostname', 'services', 'ssl/certs', 'no-such-file'] },
    }).sandbox;
    const root = SandboxRoot.build({ stateDir, config, nodeBinary: process.execPath });
    const etc = path.join(stateDir, 'sandbox', 'etc');
    const report = root.report(true);
    const copied = ['hostname', 'services', 'ssl/certs'].filter((e) => fs.existsSync('/etc/' + e));
    assert.deepEqual(report.etc.copied, copied);
    assert.ok(report.etc.generated.includes('passwd'));
    // hostname is always Petri's own, even when listed.
    assert.equal(fs.readFileSync(path.join(etc, 'hostname'), 'utf8'), 'petri\n');
    assert.ok(!fs.existsSync(path.join(etc, 'shadow')));
    assert.match(fs.readFileSync(path.join(etc, 'hosts'), 'utf8'), /127\.0\.1\.1\tpetri/);
    for (const entry of fs.readdirSync(etc)) {
      const mode = fs.lstatSync(path.join(etc, entry)).mode & 0o777;
      assert.ok(fs.lstatSync(path.join(etc, entry)).isSymbolicLink() || (mode & 0o044) === 0o044);
    }
    const { passwd, group } = root.accountFiles(1_879_048_200);
    assert.match(fs.readFileSync(passwd, 'utf8'), /^petri:x:1879048200:1879048200:.*:\/tmp:/m);
    assert.match(fs.readFileSync(group, 'utf8'), /^petri:x:1879048200:$/m);
  });

  test('shows host paths as they are: folders bound, merged-/usr symlinks recreated, missing ones left out', () => {
    const stateDir = tempDir('petri-root-');
    const host = tempDir('petri-root-host-');
    fs.mkdirSync(path.join(host, 'usr'));
    fs.symlinkSync('usr', path.join(host, 'bin'));
    // Test folders live under /tmp, which the config refuses: build the section directly.
    const rootPaths = [path.join(host, 'usr'), path.join(host, 'bin'), '/no/such'];
    const config = { ...parseConfig({}).sandbox, rootPaths };
    const root = SandboxRoot.build({ stateDir, config, nodeBinary: process.execPath });
    assert.deepEqual(root.report(false).paths, [
      { path: path.join(host, 'bin'), symlink: 'usr' },
      { path: path.join(host, 'usr') },
    ]);
    const args = root.filesystemArgs(1_879_048_200, 1024, [path.join(stateDir, 'code')]);
    const joined = args.join(' ');
    assert.match(joined, new RegExp(`--symlink usr ${path.join(host, 'bin')}`));
    assert.match(joined, /--perms 1777 --size 1024 --tmpfs \/tmp/);
    // The code and the node binary are bound, with their parent folders made first.
    assert.match(joined, new RegExp(`--dir ${stateDir} --ro-bind ${path.join(stateDir, 'code')}`));
    assert.ok(args.includes(process.execPath));
    assert.equal(args.at(-1), '/', 'the root is remounted read-only last');
    assert.ok(!args.includes('/etc/shadow'));
  });
});

describe('uid pool', () => {
  test('hands out distinct uids from the start offset, reuses released ones, and runs out', () => {
    const pool = new UidPool(1000, 3, 2);
    assert.deepEqual([pool.take(), pool.take(), pool.take()], [1002, 1000, 1001]);
    assert.equal(pool.take(), undefined);
    pool.release(1000);
    assert.equal(pool.take(), 1000);
    assert.equal(pool.inUse, 3);
  });
});

describe('launch chain', () => {
  test('finds host tools only in system folders', () => {
    const sh = findHostTool('sh');
    assert.ok(sh && ['/usr/sbin/', '/usr/bin/', '/sbin/', '/bin/'].some((d) => sh.startsWith(d)));
    assert.equal(findHostTool('petri-no-such-tool'), undefined);
  });

  test("puts the node binary's folder first on the instance PATH, then system folders only", () => {
    assert.equal(
      instancePath('/opt/node/bin/node'),
      '/opt/node/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    );
    assert.equal(
      instancePath('/usr/bin/node')
        .split(':')
        .filter((d) => d === '/usr/bin').length,
      1,
    );
  });

  test("carries the function env as one value, applied inside without touching Petri's variables", () => {
    const env: NodeJS.ProcessEnv = {
      PETRI_RUNTIME: 'node',
      [FUNCTION_ENV_VAR]: encodeFunctionEnv({
        NODE_OPTIONS: '--x',
        PATH: '/code',
        PETRI_RUNTIME: 'exec',
        PETRI_SYNTH_ITERS_PER_MS: '5',
      }),
    };
    applyFunctionEnv(env);
    assert.deepEqual(env, {
      PETRI_RUNTIME: 'node',
      NODE_OPTIONS: '--x',
      PATH: '/code',
      PETRI_SYNTH_ITERS_PER_MS: '5',
    });
  });

  test('rejects env names that are not portable, NUL in values, and oversized env', () => {
    const spec = (env: Record<string, string>) => parseSpec({ name: 'f', runtime: 'node', env });
    assert.deepEqual(spec({ LD_PRELOAD: '/x.so', NODE_OPTIONS: '--y' }).env, {
      LD_PRELOAD: '/x.so',
      NODE_OPTIONS: '--y',
    });
    const invalid: Record<string, string>[] = [
      { 'A=B': 'x' },
      { '1A': 'x' },
      { '': 'x' },
      { A: 'x\0y' },
      { A: 'x'.repeat(70 * 1024) },
    ];
    for (const env of invalid) {
      assert.throws(
        () => spec(env),
        (err: unknown) => err instanceof PetriError && err.code === 'InvalidSpec',
        JSON.stringify(env).slice(0, 40),
      );
    }
  });
});

describe('seccomp filter', () => {
  test('is a whole number of BPF instructions ending in allow, for the arches Petri knows', () => {
    for (const arch of ['x64', 'arm64'] as const) {
      const program = userNamespaceFilter(arch);
      assert.ok(program && program.length % 8 === 0 && program.length / 8 <= 4096);
      assert.equal(program.readUInt16LE(program.length - 8), 0x06, 'last instruction returns');
      assert.equal(program.readUInt32LE(program.length - 4), 0x7fff0000, 'and allows');
    }
    assert.equal(userNamespaceFilter('ia32'), undefined);
  });
});

describe('deployed code modes', () => {
  test('makes code readable by everyone and writable only by its owner, never following symlinks', async () => {
    const dir = tempDir('petri-modes-');
    const outside = path.join(tempDir('petri-modes-outside-'), 'secret');
    fs.writeFileSync(outside, 'x', { mode: 0o600 });
    fs.mkdirSync(path.join(dir, 'sub'), { mode: 0o700 });
    fs.writeFileSync(path.join(dir, 'sub', 'private.js'), 'x', { mode: 0o600 });
    fs.writeFileSync(path.join(dir, 'run.sh'), 'x', { mode: 0o4770 });
    fs.symlinkSync(outside, path.join(dir, 'link'));
    await makeReadableByInstances(dir);
    const mode = (p: string) => fs.statSync(path.join(dir, p)).mode & 0o7777;
    assert.equal(mode('sub'), 0o755);
    assert.equal(mode('sub/private.js'), 0o644);
    assert.equal(mode('run.sh'), 0o755, 'executable kept, setuid dropped');
    assert.equal(fs.statSync(outside).mode & 0o777, 0o600, "a link's target is left alone");
  });
});
