import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { readTar, TarFormatError, type TarEntry } from '../../src/node/tar.ts';
import { tempDir } from '../helpers/tmp.ts';
import { TAR_END, tarArchive, tarEntry, tarHeader } from '../helpers/tar.ts';

interface Seen extends Omit<TarEntry, 'mode' | 'typeflag'> {
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

const LONG_DIR = `${'d'.repeat(60)}/${'e'.repeat(60)}`;

/** A folder with what real function code holds: subfolders, an executable, a long path, a symlink. */
function sampleFolder(): string {
  const dir = tempDir('petri-tar-src-');
  fs.mkdirSync(path.join(dir, 'lib'));
  fs.writeFileSync(path.join(dir, 'index.js'), 'export const handler = () => 1;\n');
  fs.writeFileSync(path.join(dir, 'lib', 'run.sh'), '#!/bin/sh\necho hi\n', { mode: 0o755 });
  fs.mkdirSync(path.join(dir, LONG_DIR), { recursive: true });
  fs.writeFileSync(path.join(dir, LONG_DIR, 'deep.txt'), 'deep\n');
  fs.writeFileSync(path.join(dir, 'π.txt'), 'unicode\n');
  fs.symlinkSync('lib/run.sh', path.join(dir, 'run'));
  return dir;
}

describe('tar reader', () => {
  for (const format of ['gnu', 'pax', 'ustar']) {
    it(`reads what the system tar writes in ${format} format, in any chunking`, async () => {
      const dir = sampleFolder();
      const archive = execFileSync('tar', [`--format=${format}`, '-cf', '-', '-C', dir, '.']);
      for (const chunkSize of [archive.length, 4096, 7, 1]) {
        const seen = await entriesOf(archive, chunkSize);
        const byName = new Map(seen.map((entry) => [entry.name.replace(/\/$/, ''), entry]));
        assert.equal(byName.get('./index.js')?.data, 'export const handler = () => 1;\n');
        assert.equal(byName.get('./index.js')?.executable, false);
        assert.equal(byName.get('./lib')?.type, 'directory');
        assert.equal(byName.get('./lib/run.sh')?.executable, true);
        assert.equal(byName.get(`./${LONG_DIR}/deep.txt`)?.data, 'deep\n', 'long path');
        assert.equal(byName.get('./π.txt')?.data, 'unicode\n');
        const link = byName.get('./run');
        assert.equal(link?.type, 'symlink');
        assert.equal(link?.linkName, 'lib/run.sh');
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

  it('reports every special kind for the caller to refuse', async () => {
    const archive = tarArchive([
      { name: 'hard', type: '1', linkName: 'x' },
      { name: 'chr', type: '3' },
      { name: 'blk', type: '4' },
      { name: 'fifo', type: '6' },
      { name: 'sparse', type: 'S' },
    ]);
    const types = (await entriesOf(archive)).map((entry) => entry.type);
    assert.deepEqual(types, [
      'hardlink',
      'character-device',
      'block-device',
      'fifo',
      'unsupported',
    ]);
  });

  it('skips data the caller does not read', async () => {
    const archive = tarArchive([
      { name: 'a', data: 'A'.repeat(1500) },
      { name: 'b', data: 'B' },
    ]);
    const names: string[] = [];
    await readTar(chunked(archive, 333), async (entry) => {
      names.push(entry.name);
    });
    assert.deepEqual(names, ['a', 'b']);
  });

  it('reads GNU base-256 sizes', async () => {
    const header = tarHeader({ name: 'big', size: 0 });
    header.fill(0, 124, 136);
    header[124] = 0x80;
    header.writeUIntBE(3, 130, 6);
    header.fill(0x20, 148, 156);
    let sum = 0;
    for (const byte of header) sum += byte;
    header.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
    const archive = Buffer.concat([header, Buffer.from('xyz'), Buffer.alloc(509), TAR_END]);
    const [entry] = await entriesOf(archive);
    assert.equal(entry.size, 3);
    assert.equal(entry.data, 'xyz');
  });

  it('fails with TarFormatError on a wrong checksum, a cut-off archive or a bad pax record', async () => {
    const corrupt = tarArchive([{ name: 'a', data: 'x' }]);
    corrupt[0] ^= 1;
    await assert.rejects(entriesOf(corrupt), TarFormatError);
    const cut = tarEntry({ name: 'a', data: 'x'.repeat(2000) }).subarray(0, 1000);
    await assert.rejects(entriesOf(cut), /ends inside the data of "a"/);
    const badPax = Buffer.concat([
      tarHeader({ name: 'PaxHeader', type: 'x', data: '99 path=a\n' }),
      Buffer.from('99 path=a\n'.padEnd(512, '\0')),
      tarHeader({ name: 'a' }),
      TAR_END,
    ]);
    await assert.rejects(entriesOf(badPax), /pax header is malformed/);
    const hugeMeta = tarHeader({ name: 'PaxHeader', type: 'x', size: 10 * 1024 * 1024 });
    await assert.rejects(entriesOf(Buffer.concat([hugeMeta, TAR_END])), /over 64 KiB/);
  });

  it('ends at the first zero block or at a clean end of input', async () => {
    const withTrailer = Buffer.concat([
      tarArchive([{ name: 'a', data: 'x' }]),
      Buffer.from('junk'),
    ]);
    assert.equal((await entriesOf(withTrailer)).length, 1);
    const noTrailer = tarEntry({ name: 'a', data: 'x' });
    assert.equal((await entriesOf(noTrailer)).length, 1);
  });
});
