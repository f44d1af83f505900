import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { readTar, TarFormatError, type TarEntry } from '../../src/node/tar.ts';
import { tempDir } from '../helpers/tmp.ts';
import { TAR_END, tarArchive, tarEntry, tarHeader } from '../helpers/tar.ts';

interface Seen extends Omit<TarEntry, 'mode'> {
  data: string;
  executable: boolean;
}

/** The archive in pieces of `size` bytes, so entries straddle chunk boundaries. */
async function* chunked(archive: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let at = 0; at < archive.length; at += size) yield archive.subarray(at, at + size);
}

async function entriesOf(archive: Buffer, chunkSize = archive.length): Promise<Seen[]> {
  const seen: Seen[] = [];
  await readTar(chunked(archive, chunkSize), async (entry, data) => {
    const parts: Buffer[] = [];
    for await (const piece of data) parts.push(piece);
    seen.push({
      name: entry.name,
      type: entry.type,
      size: entry.size,
      linkName: entry.linkName,
      data: Buffer.concat(parts).toString('utf8'),
      executable: (entry.mode & 0o100) !== 0,
    });
  });
  return seen;
}

/** Rejects with a TarFormatError whose message matches `pattern`; returns it. */
async function formatError(archive: Buffer, pattern: RegExp): Promise<TarFormatError> {
  let caught: unknown;
  await entriesOf(archive).catch((err: unknown) => (caught = err));
  assert.ok(caught instanceof TarFormatError, `expected a TarFormatError, got ${String(caught)}`);
  assert.match(caught.message, pattern);
  return caught;
}

/** `header` with its checksum recomputed after an edit. */
function resummed(header: Buffer): Buffer {
  header.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of header) sum += byte;
  header.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
  return header;
}

/** A header whose size field is GNU base-256 (binary), as tar writes for sizes of 8 GiB and up. */
function base256Header(name: string, size: bigint): Buffer {
  const header = tarHeader({ name, size: 0 });
  header.fill(0, 124, 136);
  header[124] = size < 0n ? 0xff : 0x80;
  const field = BigInt.asUintN(88, size);
  for (let i = 0; i < 11; i++) header[135 - i] = Number((field >> BigInt(8 * i)) & 0xffn);
  return resummed(header);
}

const LONG_DIR = `${'d'.repeat(60)}/${'e'.repeat(60)}`;
/** Too long for a ustar header even with its prefix: needs a GNU long name or a pax path. */
const VERY_LONG_DIR = ['f', 'g', 'h'].map((c) => c.repeat(90)).join('/');
const LONG_TARGET = `${VERY_LONG_DIR}/deep.txt`;

/** A folder with what real function code holds: subfolders, an executable, long paths, symlinks. */
function sampleFolder(withVeryLongNames: boolean): string {
  const dir = tempDir('petri-tar-src-');
  fs.mkdirSync(path.join(dir, 'lib'));
  fs.writeFileSync(path.join(dir, 'index.js'), 'export const handler = () => 1;\n');
  fs.writeFileSync(path.join(dir, 'lib', 'run.sh'), '#!/bin/sh\necho hi\n', { mode: 0o755 });
  fs.mkdirSync(path.join(dir, LONG_DIR), { recursive: true });
  fs.writeFileSync(path.join(dir, LONG_DIR, 'deep.txt'), 'deep\n');
  fs.writeFileSync(path.join(dir, 'π.txt'), 'unicode\n');
  fs.symlinkSync('lib/run.sh', path.join(dir, 'run'));
  if (withVeryLongNames) {
    fs.mkdirSync(path.join(dir, VERY_LONG_DIR), { recursive: true });
    fs.writeFileSync(path.join(dir, LONG_TARGET), 'very deep\n');
    fs.symlinkSync(LONG_TARGET, path.join(dir, 'far'));
  }
  return dir;
}

describe('tar reading (tar-stream behind readTar)', () => {
  for (const format of ['gnu', 'pax', 'ustar']) {
    it(`reads what the system tar writes in ${format} format, in any chunking`, async () => {
      // ustar has neither long names nor long link targets; tar refuses to write them.
      const veryLong = format !== 'ustar';
      const dir = sampleFolder(veryLong);
      const archive = execFileSync('tar', [`--format=${format}`, '-cf', '-', '-C', dir, '.']);
      // The archive really uses the extension headers under test.
      if (format === 'gnu') assert.ok(archive.includes('././@LongLink'), 'GNU long names');
      if (format === 'pax') assert.ok(archive.includes(' path=./'), 'pax path records');
      for (const chunkSize of [archive.length, 4096, 7, 1]) {
        const seen = await entriesOf(archive, chunkSize);
        const byName = new Map(seen.map((entry) => [entry.name.replace(/\/$/, ''), entry]));
        assert.equal(byName.get('./index.js')?.data, 'export const handler = () => 1;\n');
        assert.equal(byName.get('./index.js')?.executable, false);
        assert.equal(byName.get('./lib')?.type, 'directory');
        assert.equal(byName.get('./lib/run.sh')?.executable, true);
        assert.equal(byName.get(`./${LONG_DIR}/deep.txt`)?.data, 'deep\n', 'long path');
        assert.equal(byName.get('./π.txt')?.data, 'unicode\n');
        assert.deepEqual(
          [byName.get('./run')?.type, byName.get('./run')?.linkName],
          ['symlink', 'lib/run.sh'],
        );
        if (veryLong) {
          assert.equal(byName.get(`./${LONG_TARGET}`)?.data, 'very deep\n', 'very long path');
          assert.equal(byName.get('./far')?.linkName, LONG_TARGET, 'long link target');
        }
      }
    });
  }

  it('applies pax path, linkpath and size records to the next entry only', async () => {
    const longName = `${'x'.repeat(200)}/file.txt`;
    const archive = tarArchive([
      { name: 'short', data: 'abc', pax: { path: longName, comment: 'ignored' } },
      { name: 'link', type: '2', linkName: 'short', pax: { linkpath: 'y'.repeat(150) } },
      { name: 'sized', size: 0, data: 'xyz', pax: { size: '3' } },
      { name: 'plain', data: 'p' },
    ]);
    const seen = await entriesOf(archive, 100);
    assert.deepEqual(
      seen.map((entry) => [entry.name, entry.type, entry.linkName, entry.data]),
      [
        [longName, 'file', '', 'abc'],
        ['link', 'symlink', 'y'.repeat(150), ''],
        ['sized', 'file', '', 'xyz'],
        ['plain', 'file', '', 'p'],
      ],
    );
  });

  it('reads GNU base-256 sizes', async () => {
    const archive = Buffer.concat([
      base256Header('big', 3n),
      Buffer.from('xyz'.padEnd(512, '\0')),
      TAR_END,
    ]);
    const [entry] = await entriesOf(archive);
    assert.equal(entry.size, 3);
    assert.equal(entry.data, 'xyz');
    // 2^40 bytes, over octal's 8 GiB: the size arrives intact for the caller to refuse.
    const huge = Buffer.concat([base256Header('huge', 2n ** 40n), TAR_END]);
    let size = 0;
    await assert.rejects(
      readTar(chunked(huge, huge.length), async (header) => {
        size = header.size;
        throw new Error('too big for the caller');
      }),
      /too big for the caller/,
    );
    assert.equal(size, 2 ** 40);
    await formatError(
      Buffer.concat([base256Header('neg', -5n), TAR_END]),
      /an entry has an invalid size/,
    );
  });

  it('reports every kind for the caller to judge: contiguous files as files, unknown as unsupported', async () => {
    const archive = tarArchive([
      { name: 'hard', type: '1', linkName: 'x' },
      { name: 'chr', type: '3' },
      { name: 'blk', type: '4' },
      { name: 'fifo', type: '6' },
      { name: 'contiguous', type: '7', data: 'c' },
      { name: 'sparse', type: 'S' },
      { name: 'volume', type: 'V' },
      { name: 'old-dir/', type: '0' },
    ]);
    const seen = await entriesOf(archive);
    assert.deepEqual(
      seen.map((entry) => [entry.name, entry.type]),
      [
        ['hard', 'hardlink'],
        ['chr', 'character-device'],
        ['blk', 'block-device'],
        ['fifo', 'fifo'],
        ['contiguous', 'file'],
        ['sparse', 'unsupported'],
        ['volume', 'unsupported'],
        ['old-dir/', 'directory'],
      ],
    );
    assert.equal(seen[0].linkName, 'x');
    assert.equal(seen[4].data, 'c');
  });

  it('drains what the caller does not read, even when it stops part way', async () => {
    const archive = tarArchive([
      { name: 'a', data: 'A'.repeat(100_000) },
      { name: 'b', data: 'B'.repeat(3000) },
      { name: 'c', data: 'C' },
    ]);
    const seen: string[] = [];
    await readTar(chunked(archive, 333), async (entry, data) => {
      if (entry.name === 'a') return; // reads nothing
      for await (const piece of data) {
        seen.push(`${entry.name}:${piece.length}`);
        break; // reads one piece
      }
    });
    assert.deepEqual(
      seen.map((s) => s.split(':')[0]),
      ['b', 'c'],
      'every entry after an unread or half-read one still arrives',
    );
  });

  it('reads the source only as fast as the caller takes data', async () => {
    const archive = tarArchive([{ name: 'big', data: Buffer.alloc(8 * 1024 * 1024) }]);
    let pulled = 0;
    async function* counted(): AsyncGenerator<Buffer> {
      for await (const chunk of chunked(archive, 16 * 1024)) {
        pulled += chunk.length;
        yield chunk;
      }
    }
    let pulledBeforeReading = 0;
    await readTar(counted(), async (_entry, data) => {
      await sleep(50);
      pulledBeforeReading = pulled;
      for await (const _piece of data);
    });
    assert.ok(pulledBeforeReading < 1024 * 1024, `pulled ${pulledBeforeReading} bytes ahead`);
    assert.equal(pulled, archive.length);
  });

  it("passes the source's and the caller's errors through unchanged, and stops the source", async () => {
    const archive = tarArchive([
      { name: 'a', data: 'x'.repeat(5000) },
      { name: 'b', data: 'y' },
    ]);
    const sourceFailure = new Error('cap crossed');
    async function* failing(): AsyncGenerator<Buffer> {
      yield archive.subarray(0, 1000);
      throw sourceFailure;
    }
    await assert.rejects(
      readTar(failing(), async (_entry, data) => {
        for await (const _piece of data);
      }),
      (err) => err === sourceFailure,
    );

    let closed = false;
    async function* watched(): AsyncGenerator<Buffer> {
      try {
        yield* chunked(archive, 512);
      } finally {
        closed = true;
      }
    }
    const callerFailure = new Error('refused');
    await assert.rejects(
      readTar(watched(), async () => {
        throw callerFailure;
      }),
      (err) => err === callerFailure,
    );
    assert.ok(closed, 'the source was closed');
  });

  it('fails with TarFormatError, naming the entry, on a wrong checksum or a cut-off archive', async () => {
    const corrupt = tarArchive([{ name: 'a', data: 'x' }]);
    corrupt[0] ^= 1;
    await formatError(corrupt, /a header has a wrong checksum$/);
    const afterA = tarArchive([
      { name: 'a', data: 'x' },
      { name: 'b', data: 'y' },
    ]);
    afterA[1024] ^= 1;
    await formatError(afterA, /a header has a wrong checksum \(after "a"\)/);
    const cut = tarEntry({ name: 'a', data: 'x'.repeat(2000) }).subarray(0, 1000);
    const error = await formatError(cut, /the archive ends early \(inside "a"\)/);
    assert.equal(error.entry, 'a');
    await formatError(tarHeader({ name: 'half' }).subarray(0, 300), /the archive ends early/);
  });

  it('fails with TarFormatError on what it cannot read faithfully', async () => {
    const hugeMeta = tarHeader({ name: 'PaxHeader', type: 'x', size: 10 * 1024 * 1024 });
    await formatError(
      Buffer.concat([hugeMeta, TAR_END]),
      /a pax or GNU long-name header is over 4 MiB/,
    );
    await formatError(
      tarArchive([{ name: 'a', pax: { size: 'many' } }]),
      /an entry has an invalid size/,
    );
    const folderWithData = tarArchive([{ name: 'dir/', type: '5', data: 'hidden' }]);
    const error = await formatError(folderWithData, /folder "dir\/" claims 6 bytes/);
    assert.equal(error.entry, 'dir/');
    const latin1 = tarHeader({ name: 'x' });
    latin1.write('caf\xe9', 0, 'latin1');
    await formatError(Buffer.concat([resummed(latin1), TAR_END]), /is not UTF-8/);
    // Pre-POSIX (v7) headers, without the ustar magic, are not read at all.
    const v7 = tarHeader({ name: 'old', data: 'x' });
    v7.fill(0, 257, 265);
    await formatError(Buffer.concat([resummed(v7), TAR_END]), /a header is neither ustar nor GNU/);
  });

  it('refuses a GNU sparse file in pax format (its data is a map of holes)', async () => {
    const dir = tempDir('petri-tar-sparse-');
    const file = fs.openSync(path.join(dir, 'holes.bin'), 'w');
    fs.writeSync(file, 'end', 1024 * 1024);
    fs.closeSync(file);
    const archive = execFileSync('tar', ['--format=pax', '--sparse', '-cf', '-', '-C', dir, '.']);
    assert.ok(archive.includes('GNU.sparse.'), 'tar wrote a sparse entry');
    await formatError(archive, /is a sparse file/);
  });

  it('reads zero blocks as padding and ends at a clean end of input', async () => {
    const padded = Buffer.concat([tarArchive([{ name: 'a', data: 'x' }]), Buffer.alloc(10240)]);
    assert.equal((await entriesOf(padded)).length, 1);
    const noTrailer = tarEntry({ name: 'a', data: 'x' });
    assert.equal((await entriesOf(noTrailer)).length, 1);
    await formatError(Buffer.concat([padded, Buffer.from('junk')]), /the archive ends early/);
  });
});
