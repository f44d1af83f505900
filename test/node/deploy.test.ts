import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import zlib from 'node:zlib';
import { PetriError } from '../../src/errors.ts';
import { deployBody, fakeNode, handlerDir, type FakeNode } from '../helpers/node.ts';
import { requireRoot } from '../helpers/root.ts';
import { archiveOf, gzipBomb, type TarEntrySpec } from '../helpers/tar.ts';
import { tempDir } from '../helpers/tmp.ts';

const MiB = 1024 * 1024;
const LIMITS = {
  maxArchiveBytes: 2 * MiB,
  maxCodeBytes: 8 * MiB,
  maxEntries: 1000,
  keepVersions: 2,
};

let fake: FakeNode;

before(async () => {
  fake = await fakeNode({ deploy: LIMITS });
  await fake.node.deploy('neighbour', deployBody(handlerDir()));
});
after(async () => {
  await fake.close();
});

/** The node keeps serving its other function. */
async function neighbourServes(): Promise<void> {
  const { record, value } = await fake.node.invoke('neighbour', { still: 'here' });
  assert.equal(record.status, 'succeeded');
  assert.deepEqual(value, { still: 'here' });
}

function functionDir(name: string): string {
  return path.join(fake.dir, 'functions', name);
}

/** An `exec` function needs no bundling, so only the archive rules are at play. */
function deployArchive(name: string, archive: string, node = fake) {
  return node.node.deploy(name, { runtime: 'exec', command: ['true'], source: { archive } });
}

function deployPath(name: string, dir: string, node = fake) {
  return node.node.deploy(name, { runtime: 'exec', command: ['true'], source: { path: dir } });
}

/** Asserts the deploy fails with `code` and a message matching `pattern`; returns the error. */
async function refused(
  deploy: Promise<unknown>,
  code: string,
  pattern: RegExp,
): Promise<PetriError> {
  let caught: unknown;
  await deploy.catch((err: unknown) => (caught = err));
  assert.ok(caught instanceof PetriError, `expected a PetriError, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  assert.match(caught.message, pattern);
  return caught;
}

/** A refused archive names the entry, leaves nothing on disk and harms no one else. */
async function refusedEntry(
  name: string,
  entries: TarEntrySpec[],
  entry: string,
  why: RegExp,
): Promise<void> {
  const error = await refused(deployArchive(name, archiveOf(entries)), 'InvalidSpec', why);
  assert.ok(error.message.includes(JSON.stringify(entry)), error.message);
  assert.equal((error.details as { entry?: string }).entry, entry);
  assert.ok(!fs.existsSync(functionDir(name)), 'nothing of the deploy is left on disk');
  assert.throws(() => fake.node.getFunction(name), /no function named/);
  await neighbourServes();
}

/** Bytes this process has passed to write(2) so far (all threads: zlib and fs run on the pool). */
function bytesWritten(): number {
  const io = fs.readFileSync('/proc/self/io', 'utf8');
  return Number(/^wchar: (\d+)$/m.exec(io)![1]);
}

/** Every path under `dir`, not following symlinks (readdirSync's recursive mode does). */
function filesUnder(dir: string, rel = ''): string[] {
  const at = path.join(dir, rel);
  if (!fs.existsSync(at)) return [];
  const found: string[] = [];
  for (const entry of fs.readdirSync(at, { withFileTypes: true })) {
    const child = rel ? `${rel}/${entry.name}` : entry.name;
    found.push(child);
    if (entry.isDirectory()) found.push(...filesUnder(dir, child));
  }
  return found.sort();
}

async function until(condition: () => boolean, what: string, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

describe('archive deploys refuse every dangerous entry, naming it', () => {
  it('an absolute path', () =>
    refusedEntry('abs', [{ name: '/etc/cron.d/evil', data: 'x' }], '/etc/cron.d/evil', /absolute/));

  it('a ".." component', () =>
    refusedEntry('dotdot', [{ name: 'a/../../../evil', data: 'x' }], 'a/../../../evil', /"\.\."/));

  it('a hard link, even to a file inside', () =>
    refusedEntry(
      'hard',
      [
        { name: 'f', data: 'x' },
        { name: 'h', type: '1', linkName: 'f' },
      ],
      'h',
      /hard link/,
    ));

  it('a symlink climbing out of the folder', () =>
    refusedEntry(
      'up',
      [{ name: 'lib/out', type: '2', linkName: '../../../../../etc/shadow' }],
      'lib/out',
      /leaves the function folder/,
    ));

  it('a symlink to an absolute path', () =>
    refusedEntry(
      'abslink',
      [{ name: 'shadow', type: '2', linkName: '/etc/shadow' }],
      'shadow',
      /absolute path "\/etc\/shadow"/,
    ));

  it('a chain of symlinks that are harmless one by one but climb out together', () =>
    refusedEntry(
      'chain',
      [
        { name: 'a', type: '2', linkName: '.' },
        { name: 'b', type: '2', linkName: 'a/..' },
      ],
      'b',
      /resolves outside the function folder/,
    ));

  it('a file written through a symlink the archive planted first', () =>
    refusedEntry(
      'planted',
      [
        { name: 'd', type: '2', linkName: '.' },
        { name: 'd/x', data: 'y' },
      ],
      'd/x',
      /lies under the symlink "d"/,
    ));

  it('a second entry of the same name (an overwrite)', () =>
    refusedEntry(
      'twice',
      [
        { name: 'a', data: '1' },
        { name: 'a', data: '2' },
      ],
      'a',
      /appears twice/,
    ));

  it('a character device', () =>
    refusedEntry('chr', [{ name: 'null', type: '3' }], 'null', /character device/));

  it('a block device', () =>
    refusedEntry('blk', [{ name: 'sda', type: '4' }], 'sda', /block device/));

  it('a FIFO', () => refusedEntry('fifo', [{ name: 'pipe', type: '6' }], 'pipe', /FIFO/));

  // Sockets: ustar and pax have no type for them (GNU tar skips them with
  // "socket ignored"), so an archive cannot carry one; see the path deploys.

  it('an entry type it does not know', () =>
    refusedEntry('sparse', [{ name: 's', type: 'S' }], 's', /unsupported tar type/));

  it('a symlink to nothing', () =>
    refusedEntry(
      'dangling',
      [{ name: 'ghost', type: '2', linkName: 'missing/file' }],
      'ghost',
      /to nothing/,
    ));

  it('bytes that are not gzip, or gzip that is not tar', async () => {
    await refused(deployArchive('notgz', 'aGVsbG8gd29ybGQ='), 'InvalidSpec', /not a readable gzip/);
    const notTar = zlib.gzipSync(Buffer.from('x'.repeat(2000))).toString('base64');
    await refused(deployArchive('nottar', notTar), 'InvalidSpec', /not a valid tar/);
    await neighbourServes();
  });
});

describe('archive deploys read what tar writes and refuse broken tar', () => {
  for (const format of ['gnu', 'pax', 'ustar']) {
    it(`unpacks a ${format} archive from the system tar`, async () => {
      const dir = tempDir('petri-tar-src-');
      const deep = `${'d'.repeat(60)}/${'e'.repeat(60)}`;
      fs.mkdirSync(path.join(dir, deep), { recursive: true });
      fs.writeFileSync(path.join(dir, deep, 'deep.txt'), 'deep\n');
      fs.writeFileSync(path.join(dir, 'run.sh'), '#!/bin/sh\n', { mode: 0o755 });
      fs.symlinkSync('run.sh', path.join(dir, 'run'));
      const tar = execFileSync('tar', [`--format=${format}`, '-czf', '-', '-C', dir, '.']);
      const name = `fmt-${format}`;
      await deployArchive(name, tar.toString('base64'));
      const code = path.join(functionDir(name), 'v1', 'code');
      assert.equal(fs.readFileSync(path.join(code, deep, 'deep.txt'), 'utf8'), 'deep\n');
      assert.equal(fs.statSync(path.join(code, 'run.sh')).mode & 0o7777, 0o755);
      assert.equal(fs.readlinkSync(path.join(code, 'run')), 'run.sh');
    });
  }

  it('refuses a header with a wrong checksum, naming the entry before it', async () => {
    const tar = zlib.gunzipSync(
      Buffer.from(
        archiveOf([
          { name: 'ok', data: 'x' },
          { name: 'bad', data: 'y' },
        ]),
        'base64',
      ),
    );
    tar[1024 + 1] ^= 1; // inside the second header's name
    const error = await refused(
      deployArchive('checksum', zlib.gzipSync(tar).toString('base64')),
      'InvalidSpec',
      /source\.archive is not a valid tar: .*\(after "ok"\)/,
    );
    assert.deepEqual((error.details as { issues: unknown }).issues, [
      { field: 'source.archive', message: error.message },
    ]);
    assert.ok(!fs.existsSync(functionDir('checksum')));
    await neighbourServes();
  });

  it('refuses an archive cut off inside an entry, naming it', async () => {
    const tar = zlib.gunzipSync(
      Buffer.from(archiveOf([{ name: 'cut.bin', data: 'z'.repeat(4000) }]), 'base64'),
    );
    const error = await refused(
      deployArchive('cut', zlib.gzipSync(tar.subarray(0, 2000)).toString('base64')),
      'InvalidSpec',
      /not a valid tar: .*inside "cut\.bin"/,
    );
    assert.equal((error.details as { entry?: string }).entry, 'cut.bin');
    assert.ok(!fs.existsSync(functionDir('cut')));
    await neighbourServes();
  });
});

describe('archive deploys write safely what they accept', () => {
  it('drops setuid and odd modes, keeps exec bits and relative symlinks inside', async () => {
    const archive = archiveOf([
      { name: './', type: '5', mode: 0o777 },
      { name: './secret-dir/', type: '5', mode: 0o700 },
      { name: './secret-dir/key', data: 'k', mode: 0o600 },
      { name: './lib/tool.js', data: 'tool', mode: 0o4755 },
      { name: './bin/tool', type: '2', linkName: '../lib/tool.js' },
      { name: './run.sh', data: '#!/bin/sh\n', mode: 0o6775 },
    ]);
    await deployArchive('modes', archive);
    const code = path.join(functionDir('modes'), 'v1', 'code');
    const mode = (file: string): number => fs.lstatSync(path.join(code, file)).mode & 0o7777;
    assert.equal(mode('.'), 0o755);
    assert.equal(mode('secret-dir'), 0o755, 'readable by the unprivileged instance');
    assert.equal(mode('secret-dir/key'), 0o644);
    assert.equal(mode('lib/tool.js'), 0o755, 'setuid dropped, exec kept');
    assert.equal(mode('run.sh'), 0o755, 'setuid and setgid dropped');
    assert.equal(fs.readlinkSync(path.join(code, 'bin/tool')), '../lib/tool.js');
    assert.equal(fs.readFileSync(path.join(code, 'bin/tool'), 'utf8'), 'tool');
  });
});

describe('archive deploys stop at the size limits', () => {
  it('stops a gzip bomb at the cap without filling the disk', async () => {
    // 1 GiB of zeros in about a megabyte; the node unpacks 8 MB at most.
    const bomb = gzipBomb(1024, MiB);
    assert.ok(bomb.length < 2 * MiB);
    const before = bytesWritten();
    const error = await refused(
      deployArchive('bomb', bomb),
      'InvalidSpec',
      /holds more than 8 MB of files \(deploy\.maxCodeBytes\)/,
    );
    const written = bytesWritten() - before;
    // Eight whole files fit; the ninth would cross the cap and is never opened.
    assert.equal((error.details as { entry: string }).entry, 'zeros/00008.bin');
    assert.ok(written <= 8 * MiB + MiB, `wrote ${written} bytes for an 8 MB cap`);
    assert.ok(!fs.existsSync(functionDir('bomb')), 'what was written is removed');
    await neighbourServes();
  });

  it('refuses an entry whose header alone is over the cap before writing it', async () => {
    const before = bytesWritten();
    const archive = archiveOf([{ name: 'huge.bin', size: 4 * 1024 * MiB }]);
    const error = await refused(deployArchive('huge', archive), 'InvalidSpec', /holds more than/);
    assert.equal((error.details as { entry: string }).entry, 'huge.bin');
    assert.ok(bytesWritten() - before < MiB);
    await neighbourServes();
  });

  it('refuses an archive over the compressed cap before unpacking it', async () => {
    const big = zlib.gzipSync(randomBytes(3 * MiB), { level: 0 }).toString('base64');
    await refused(
      deployArchive('toobig', big),
      'InvalidSpec',
      /is \d+ bytes compressed; this node takes at most 2 MB \(deploy\.maxArchiveBytes\)/,
    );
    assert.ok(!fs.existsSync(functionDir('toobig')));
    await neighbourServes();
  });

  it('refuses more entries than the cap', async () => {
    const entries = Array.from({ length: 1001 }, (_, i) => ({ name: `f${i}`, data: '' }));
    const error = await refused(
      deployArchive('many', archiveOf(entries)),
      'InvalidSpec',
      /more than 1000 files, folders and symlinks \(deploy\.maxEntries\)/,
    );
    assert.equal((error.details as { entry: string }).entry, 'f1000');
  });
});

describe('path deploys', () => {
  it('refuses /etc and / as outside the allowed folders, never reading them', async () => {
    for (const dir of ['/etc', '/', '/etc/../etc/']) {
      const error = await refused(deployPath('etc', dir), 'SourceNotAllowed', /outside/);
      assert.equal(error.status, 403);
      assert.ok(error.message.includes(`"${dir}"`), error.message);
      assert.match(error.message, /deploy\.allowedSourcePaths/);
    }
    assert.ok(!fs.existsSync(functionDir('etc')));
    await refused(deployPath('rel', 'etc'), 'InvalidSpec', /must be absolute/);
    await neighbourServes();
  });

  it('refuses an allowed name that is a symlink to a folder elsewhere', async () => {
    const dir = tempDir('petri-path-');
    fs.symlinkSync('/etc', path.join(dir, 'etc'));
    await refused(
      deployPath('linked', path.join(dir, 'etc')),
      'SourceNotAllowed',
      /resolves to "\/etc", outside/,
    );
  });

  it('deploys only from the folders the config lists', async () => {
    const allowed = tempDir('petri-allowed-');
    const other = tempDir('petri-other-');
    fs.writeFileSync(path.join(allowed, 'run.sh'), 'true\n');
    fs.writeFileSync(path.join(other, 'run.sh'), 'true\n');
    const strict = await fakeNode({ deploy: { allowedSourcePaths: [allowed] } });
    try {
      await deployPath('ok', allowed, strict);
      await refused(deployPath('no', other, strict), 'SourceNotAllowed', /outside them/);
      assert.deepEqual(filesUnder(path.join(strict.dir, 'functions')), [
        'ok',
        'ok/v1',
        'ok/v1/code',
        'ok/v1/code/run.sh',
      ]);
    } finally {
      await strict.close();
    }
  });

  it('refuses symlinks out of the folder, FIFOs and sockets in it, naming them', async () => {
    const absolute = tempDir('petri-path-');
    fs.symlinkSync('/etc/shadow', path.join(absolute, 'shadow'));
    const err1 = await refused(deployPath('p1', absolute), 'InvalidSpec', /absolute path/);
    assert.equal((err1.details as { entry: string }).entry, 'shadow');

    const climbing = tempDir('petri-path-');
    fs.mkdirSync(path.join(climbing, 'lib'));
    fs.symlinkSync('../../../../../../etc/passwd', path.join(climbing, 'lib', 'passwd'));
    await refused(deployPath('p2', climbing), 'InvalidSpec', /"lib\/passwd".*leaves/);

    const fifo = tempDir('petri-path-');
    execFileSync('mkfifo', [path.join(fifo, 'pipe')]);
    await refused(deployPath('p3', fifo), 'InvalidSpec', /"pipe" is a FIFO/);

    const socketDir = tempDir('petri-path-');
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(path.join(socketDir, 'sock'), resolve));
    try {
      await refused(deployPath('p4', socketDir), 'InvalidSpec', /"sock" is a socket/);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
    for (const name of ['p1', 'p2', 'p3', 'p4']) assert.ok(!fs.existsSync(functionDir(name)));
    await neighbourServes();
  });

  it("refuses a hard link to another user's file (how /etc/shadow would get a name inside)", async (t) => {
    if (!requireRoot(t)) return;
    const outside = tempDir('petri-owner-');
    const target = path.join(outside, 'root-only');
    fs.writeFileSync(target, 'secret', { mode: 0o600 });
    const dir = tempDir('petri-path-');
    fs.chownSync(dir, 4242, 4242);
    fs.linkSync(target, path.join(dir, 'innocent.txt'));
    await refused(deployPath('hardpath', dir), 'InvalidSpec', /"innocent\.txt" is a hard link/);
  });

  it('refuses a folder that holds the state dir, or lies in it', async () => {
    await refused(deployPath('state', fake.dir), 'InvalidSpec', /overlaps the node's state dir/);
    const inside = path.join(fake.dir, 'functions', 'neighbour');
    await refused(deployPath('state2', inside), 'InvalidSpec', /overlaps/);
    await neighbourServes();
  });

  it('stops at the size cap', async () => {
    const dir = tempDir('petri-path-');
    const big = fs.openSync(path.join(dir, 'big.bin'), 'w');
    fs.ftruncateSync(big, 9 * MiB); // sparse: big by size, cheap on disk
    fs.closeSync(big);
    await refused(deployPath('bigpath', dir), 'InvalidSpec', /holds more than 8 MB.*"big\.bin"/);
  });

  it('copies files, folders, exec bits and inner symlinks; skips .git', async () => {
    const dir = tempDir('petri-path-');
    fs.mkdirSync(path.join(dir, 'lib'));
    fs.mkdirSync(path.join(dir, '.git'));
    fs.writeFileSync(path.join(dir, '.git', 'HEAD'), 'ref');
    fs.writeFileSync(path.join(dir, 'lib', 'run.sh'), 'true\n', { mode: 0o4750 });
    fs.symlinkSync('lib', path.join(dir, 'alias'));
    await deployPath('copied', dir);
    const code = path.join(functionDir('copied'), 'v1', 'code');
    assert.deepEqual(filesUnder(code), ['alias', 'lib', 'lib/run.sh']);
    assert.equal(fs.statSync(path.join(code, 'lib', 'run.sh')).mode & 0o7777, 0o755);
    assert.equal(fs.readlinkSync(path.join(code, 'alias')), 'lib');
  });
});

describe('bundling reads only the function code', () => {
  it('fails an import that resolves outside the code', async () => {
    const secret = path.join(tempDir('petri-secret-'), 'secret.txt');
    fs.writeFileSync(secret, 'root:$6$hash');
    const archive = archiveOf([
      {
        name: 'index.mjs',
        data: `import s from ${JSON.stringify(secret)}; export const handler = () => s;\n`,
      },
    ]);
    const error = await refused(
      fake.node.deploy('reader', { runtime: 'node', source: { archive } }),
      'InvalidSpec',
      /resolves outside the function's code/,
    );
    assert.ok(!JSON.stringify(error.details).includes('$6$hash'));
    assert.ok(!fs.existsSync(functionDir('reader')));
  });

  it("ignores a tsconfig's extends, which would make esbuild read (and quote) any file", async () => {
    const secret = path.join(tempDir('petri-secret-'), 'secret.json');
    fs.writeFileSync(secret, 'root:$6$hash');
    const archive = archiveOf([
      { name: 'tsconfig.json', data: JSON.stringify({ extends: secret }) },
      { name: 'index.ts', data: 'export const handler = (e: unknown) => e;\n' },
    ]);
    await fake.node.deploy('tsx', { runtime: 'node', source: { archive } });
    const bundle = fs.readFileSync(path.join(functionDir('tsx'), 'v1', 'bundle.mjs'), 'utf8');
    assert.ok(!bundle.includes('$6$hash'));
  });

  it('still finds packages in the node_modules around a folder on the node', async () => {
    const project = tempDir('petri-project-');
    fs.mkdirSync(path.join(project, 'node_modules', 'greeting'), { recursive: true });
    fs.writeFileSync(
      path.join(project, 'node_modules', 'greeting', 'index.js'),
      'module.exports = "hi";\n',
    );
    const fn = path.join(project, 'fn');
    fs.mkdirSync(fn);
    fs.writeFileSync(
      path.join(fn, 'index.mjs'),
      'import g from "greeting"; export const handler = () => g;\n',
    );
    await fake.node.deploy('around', deployBody(fn));
    const bundle = fs.readFileSync(path.join(functionDir('around'), 'v1', 'bundle.mjs'), 'utf8');
    assert.match(bundle, /"hi"/);
  });
});

describe('version files on disk', () => {
  /** A folder whose code differs per call, so each deploy is a new version. */
  function codeVersion(n: number): string {
    return handlerDir(`export async function handler(e) { return { v: ${n}, e }; }\n`);
  }

  it('keeps the newest keepVersions versions and prunes the rest', async () => {
    for (let v = 1; v <= 4; v++) await fake.node.deploy('pruned', deployBody(codeVersion(v)));
    assert.equal(fake.node.getFunction('pruned').version, 4);
    assert.deepEqual(fs.readdirSync(functionDir('pruned')).sort(), ['v3', 'v4']);
    const { record } = await fake.node.invoke('pruned', 1);
    assert.equal(record.status, 'succeeded');
    assert.equal(record.version, 4);
  });

  it('never prunes a version an instance still runs; frees it once that instance stops', async () => {
    await fake.node.deploy('draining', deployBody(codeVersion(1)));
    const long = fake.node.invoke('draining', { sleepMs: 300 });
    await until(() => fake.driver.live().some((s) => s.spec.functionName === 'draining'), 'start');
    for (let v = 2; v <= 4; v++) await fake.node.deploy('draining', deployBody(codeVersion(v)));
    assert.deepEqual(fs.readdirSync(functionDir('draining')).sort(), ['v1', 'v3', 'v4']);
    assert.equal((await long).record.status, 'succeeded', 'v1 ran to its end on its own files');
    await until(() => !fs.existsSync(path.join(functionDir('draining'), 'v1')), 'v1 freed');
    assert.deepEqual(fs.readdirSync(functionDir('draining')).sort(), ['v3', 'v4']);
  });

  it('DELETE removes every version from disk', async () => {
    for (let v = 1; v <= 2; v++) await fake.node.deploy('deleted', deployBody(codeVersion(v)));
    await fake.node.invoke('deleted', {});
    assert.equal(fs.readdirSync(functionDir('deleted')).length, 2);
    await fake.node.removeFunction('deleted');
    await until(() => !fs.existsSync(functionDir('deleted')), 'the function folder to go');
    await neighbourServes();
  });

  it('DELETE waits for a running invocation, then frees its version', async () => {
    await fake.node.deploy('busy', deployBody(codeVersion(1)));
    const running = fake.node.invoke('busy', { sleepMs: 200 });
    await until(() => fake.driver.live().some((s) => s.spec.functionName === 'busy'), 'start');
    await fake.node.removeFunction('busy');
    assert.ok(fs.existsSync(path.join(functionDir('busy'), 'v1', 'bundle.mjs')), 'still in use');
    assert.equal((await running).record.status, 'succeeded');
    await until(() => !fs.existsSync(functionDir('busy')), 'the function folder to go');
  });

  it('removes at start what an earlier run left: removed functions and half-made versions', async () => {
    const stateDir = tempDir('petri-leftover-');
    fs.mkdirSync(path.join(stateDir, 'functions', 'ghost', 'v3', 'code'), { recursive: true });
    fs.writeFileSync(path.join(stateDir, 'functions', 'ghost', 'v3', 'code', 'x'), 'x');
    const restarted = await fakeNode({ stateDir });
    try {
      assert.deepEqual(fs.readdirSync(path.join(stateDir, 'functions')), []);
    } finally {
      await restarted.close();
    }
  });
});

describe('defaults', () => {
  it('caps archives at 50 MB and code at 250 MB, keeps 5 versions, allows examples and cwd', async () => {
    const { parseConfig, EXAMPLES_DIR } = await import('../../src/config.ts');
    const { deploy } = parseConfig({});
    assert.equal(deploy.maxArchiveBytes, 50 * MiB);
    assert.equal(deploy.maxCodeBytes, 250 * MiB);
    assert.equal(deploy.keepVersions, 5);
    assert.deepEqual(deploy.allowedSourcePaths, [EXAMPLES_DIR, process.cwd()]);
    assert.ok(!deploy.allowedSourcePaths.includes(os.tmpdir()));
  });
});

describe('instance events', () => {
  it('keep the life cycle, not the turn to busy and back of every invocation', async () => {
    const own = await fakeNode();
    try {
      await own.node.deploy('turns', deployBody(handlerDir()));
      const ids = new Set<string>();
      for (let i = 0; i < 3; i++) {
        const { record } = await own.node.invoke('turns', { i });
        assert.equal(record.status, 'succeeded');
        ids.add(String(record.instanceId));
      }
      assert.equal(ids.size, 1, 'one warm instance served all three');
      own.store.flush();
      const events = own.store.listInstanceEvents([...ids][0]).map((e) => e.event);
      assert.deepEqual(events, ['starting', 'idle']);
    } finally {
      await own.close();
    }
  });
});
