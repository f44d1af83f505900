import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setImmediate as nextTurn } from 'node:timers/promises';
import {
  encodeFrame,
  FrameDecoder,
  FrameWriter,
  type FromInstance,
  type ToInstance,
} from '../../src/runtime/index.ts';

function invoke(id: string): ToInstance {
  return { type: 'invoke', id, event: { id }, deadline: 0 };
}

/** A stream that keeps each write as one chunk. */
function recorder(): { chunks: Buffer[]; write(chunk: Buffer): void } {
  const chunks: Buffer[] = [];
  return { chunks, write: (chunk) => void chunks.push(chunk) };
}

function decodeAll(chunks: Buffer[]): ToInstance[] {
  const frames: ToInstance[] = [];
  const decoder = new FrameDecoder<ToInstance>((frame) => frames.push(frame));
  for (const chunk of chunks) decoder.push(chunk);
  return frames;
}

describe('runtime protocol frames', () => {
  it('decodes frames split anywhere across chunks', () => {
    const bytes = Buffer.concat([encodeFrame(invoke('a')), encodeFrame(invoke('b'))]);
    const frames: FromInstance[] = [];
    const decoder = new FrameDecoder<FromInstance>((frame) => frames.push(frame));
    for (let i = 0; i < bytes.length; i += 3) decoder.push(bytes.subarray(i, i + 3));
    assert.deepEqual(
      frames.map((f) => (f as { id: string }).id),
      ['a', 'b'],
    );
  });

  it('gathers frames written together into one write, in order', async () => {
    const stream = recorder();
    const writer = new FrameWriter(stream);
    for (const id of ['a', 'b', 'c']) writer.write(invoke(id));
    assert.equal(stream.chunks.length, 0, 'nothing is written before the gathering ends');
    await Promise.resolve();
    assert.equal(stream.chunks.length, 1);
    assert.deepEqual(
      decodeAll(stream.chunks).map((f) => (f as { id: string }).id),
      ['a', 'b', 'c'],
    );
  });

  it('writes at once with writeNow, taking any gathered frames first', async () => {
    const stream = recorder();
    const writer = new FrameWriter(stream, setImmediate);
    writer.write(invoke('a'));
    writer.writeNow(invoke('b'));
    assert.equal(stream.chunks.length, 1);
    await nextTurn();
    assert.equal(stream.chunks.length, 1, 'the deferred flush finds nothing left');
    assert.deepEqual(
      decodeAll(stream.chunks).map((f) => (f as { id: string }).id),
      ['a', 'b'],
    );
  });
});
