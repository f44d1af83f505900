import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LineSplitter } from '../../src/sandbox/lines.ts';

function split(chunks: Buffer[], maxLineBytes = 64): { lines: string[]; splitter: LineSplitter } {
  const lines: string[] = [];
  const splitter = new LineSplitter(maxLineBytes, (line) => lines.push(line));
  for (const chunk of chunks) splitter.push(chunk);
  splitter.end();
  return { lines, splitter };
}

function bytesOf(text: string): Buffer[] {
  return [...Buffer.from(text)].map((byte) => Buffer.from([byte]));
}

describe('line splitting', () => {
  const text = 'first\n\ngrüße 世界 🎉\nlast without newline';
  const expected = ['first', '', 'grüße 世界 🎉', 'last without newline'];

  it('gives the same lines wherever the stream is cut in two', () => {
    const bytes = Buffer.from(text);
    for (let cut = 0; cut <= bytes.length; cut++) {
      assert.deepEqual(
        split([bytes.subarray(0, cut), bytes.subarray(cut)]).lines,
        expected,
        `cut at ${cut}`,
      );
    }
  });

  it('gives the same lines from one-byte chunks, copying each byte at most once', () => {
    const { lines, splitter } = split(bytesOf(text));
    assert.deepEqual(lines, expected);
    assert.ok(splitter.copiedBytes <= Buffer.byteLength(text));
  });

  it('does not copy lines that arrive whole, and ends without an empty last line', () => {
    const { lines, splitter } = split([Buffer.from('a\nb\n')]);
    assert.deepEqual(lines, ['a', 'b']);
    assert.equal(splitter.copiedBytes, 0);
  });

  it('cuts an over-long line at the cap with a marker counting the rest', () => {
    const long = 'y'.repeat(100);
    for (const chunks of [[Buffer.from(`${long}\nnext\n`)], bytesOf(`${long}\nnext\n`)]) {
      assert.deepEqual(split(chunks).lines, ['y'.repeat(64) + '…[truncated 36 bytes]', 'next']);
    }
  });

  it('cuts on a character boundary, counting the split character as cut', () => {
    // 30 euro signs (90 bytes); 64 bytes hold 21 of them (63 bytes).
    assert.deepEqual(split(bytesOf('€'.repeat(30) + '\n')).lines, [
      '€'.repeat(21) + '…[truncated 27 bytes]',
    ]);
  });

  it('holds at most the cap of a 20 MB line without a newline, in linear copies', () => {
    const lines: string[] = [];
    const splitter = new LineSplitter(16 * 1024, (line) => lines.push(line));
    const chunk = Buffer.alloc(64 * 1024, 'z');
    let peak = 0;
    for (let i = 0; i < 320; i++) {
      splitter.push(chunk);
      peak = Math.max(peak, splitter.bufferedBytes);
    }
    assert.equal(peak, 16 * 1024);
    assert.equal(splitter.copiedBytes, 16 * 1024, 'only the kept head is copied');
    assert.deepEqual(lines, []);
    splitter.push(Buffer.from('\n'));
    assert.equal(lines.length, 1);
    assert.equal(
      lines[0],
      'z'.repeat(16 * 1024) + `…[truncated ${320 * 64 * 1024 - 16 * 1024} bytes]`,
    );
  });
});
