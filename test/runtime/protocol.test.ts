import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setImmediate as nextTurn } from 'node:timers/promises';
import {
  cutText,
  encodeFrame,
  encodeResultFrame,
  FrameDecoder,
  FrameError,
  FrameWriter,
  parseFromInstance,
  utf8Boundary,
  type FrameFault,
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

/** A frame with the given raw body (not necessarily JSON). */
function rawFrame(body: string | Buffer): Buffer {
  const bytes = typeof body === 'string' ? Buffer.from(body) : body;
  const prefix = Buffer.alloc(4);
  prefix.writeUInt32BE(bytes.length);
  return Buffer.concat([prefix, bytes]);
}

/** A decoder as the daemon runs it: bounded, validated, reporting instead of throwing. */
function guardedDecoder(maxFrameBytes = 1024) {
  const frames: FromInstance[] = [];
  const faults: FrameFault[] = [];
  const decoder = new FrameDecoder<FromInstance>((frame) => frames.push(frame), {
    maxFrameBytes,
    parse: parseFromInstance,
    onError: (error) => faults.push(error.fault),
  });
  return { decoder, frames, faults };
}

describe('frame decoding', () => {
  const stream = Buffer.concat([
    encodeFrame({ type: 'ready' }),
    encodeFrame({ type: 'log', id: 'a', stream: 'stdout', line: 'grüße, 世界 🎉' }),
    encodeResultFrame('a', JSON.stringify({ text: 'é'.repeat(300) })),
  ]);
  const expected: FromInstance[] = [
    { type: 'ready' },
    { type: 'log', id: 'a', stream: 'stdout', line: 'grüße, 世界 🎉' },
    { type: 'result', id: 'a', value: { text: 'é'.repeat(300) } },
  ];

  it('decodes the same frames wherever the stream is cut in two', () => {
    for (let cut = 0; cut <= stream.length; cut++) {
      const { decoder, frames, faults } = guardedDecoder();
      decoder.push(stream.subarray(0, cut));
      decoder.push(stream.subarray(cut));
      assert.deepEqual(frames, expected, `cut at ${cut}`);
      assert.deepEqual(faults, []);
    }
  });

  it('decodes frames arriving one byte at a time, copying each byte at most once', () => {
    const { decoder, frames } = guardedDecoder();
    for (let i = 0; i < stream.length; i++) decoder.push(stream.subarray(i, i + 1));
    assert.deepEqual(frames, expected);
    assert.ok(decoder.copiedBytes <= stream.length, `${decoder.copiedBytes} > ${stream.length}`);
  });

  it('assembles a large frame from small chunks in one copy, and does not copy a whole one', () => {
    const value = 'x'.repeat(4 * 1024 * 1024);
    const frame = encodeResultFrame('big', JSON.stringify(value));
    const sizes: number[] = [];
    const decoder = new FrameDecoder<FromInstance>((message, bodyBytes) => {
      assert.equal((message as { value: string }).value.length, value.length);
      sizes.push(bodyBytes);
    });
    for (let i = 0; i < frame.length; i += 1000) decoder.push(frame.subarray(i, i + 1000));
    assert.deepEqual(sizes, [frame.length - 4]);
    // One copy of the body, plus its 4-byte length prefix when that was split too.
    assert.ok(decoder.copiedBytes <= frame.length, String(decoder.copiedBytes));
    const whole = new FrameDecoder<FromInstance>(() => {});
    whole.push(frame);
    assert.equal(whole.copiedBytes, 0);
  });

  it('refuses a frame over the limit from its length prefix, before keeping any of its body', () => {
    const { decoder, frames, faults } = guardedDecoder(1024);
    const prefix = Buffer.alloc(4);
    prefix.writeUInt32BE(50 * 1024 * 1024);
    decoder.push(prefix);
    assert.deepEqual(faults, ['oversized']);
    assert.equal(decoder.bufferedBytes, 0);
    decoder.push(Buffer.alloc(64 * 1024, 'x'));
    decoder.push(encodeFrame({ type: 'ready' }));
    assert.equal(decoder.bufferedBytes, 0, 'nothing is kept after a bad frame');
    assert.deepEqual(frames, [], 'and nothing after it is believed');
    assert.deepEqual(faults, ['oversized'], 'the fault is reported once');
  });

  it('tells malformed, invalid and unknown frames apart, once each', () => {
    const cases: [string, Buffer, FrameFault][] = [
      ['not JSON', rawFrame('not json'), 'malformed'],
      ['invalid UTF-8 and JSON', rawFrame(Buffer.from([0xff, 0xfe, 0x00])), 'malformed'],
      ['a result without an id', rawFrame('{"type":"result","value":1}'), 'invalid'],
      ['a log on a third stream', rawFrame('{"type":"log","stream":"fd9","line":"x"}'), 'invalid'],
      ['an extra field', rawFrame('{"type":"ready","admin":true}'), 'invalid'],
      ['an unknown type', rawFrame('{"type":"takeover"}'), 'invalid'],
      ['not an object', rawFrame('[1,2,3]'), 'invalid'],
    ];
    for (const [name, frame, fault] of cases) {
      const { decoder, frames, faults } = guardedDecoder();
      decoder.push(Buffer.concat([frame, encodeFrame({ type: 'ready' })]));
      assert.deepEqual(faults, [fault], name);
      assert.deepEqual(frames, [], name);
    }
  });

  it('throws a FrameError when no error handler is given (the host trusts the daemon)', () => {
    const decoder = new FrameDecoder<ToInstance>(() => {});
    assert.throws(() => decoder.push(rawFrame('{')), FrameError);
  });

  it('encodes a pre-serialised result as the same message encodeFrame makes', () => {
    const value = { list: [1, 'two', null], nested: { ok: true } };
    assert.deepEqual(
      encodeResultFrame('id-1', JSON.stringify(value)),
      encodeFrame({ type: 'result', id: 'id-1', value }),
    );
  });
});

describe('cutting text to a byte length', () => {
  it('finds the last whole UTF-8 character before a cut', () => {
    const bytes = Buffer.from('a€b'); // 61 e2 82 ac 62
    assert.deepEqual(
      [0, 1, 2, 3, 4, 5].map((end) => utf8Boundary(bytes, end)),
      [0, 1, 1, 1, 4, 5],
    );
    const emoji = Buffer.from('🎉'); // 4 bytes
    assert.deepEqual(
      [1, 2, 3, 4].map((end) => utf8Boundary(emoji, end)),
      [0, 0, 0, 4],
    );
  });

  it('keeps short text and cuts long text with a marker counting the bytes cut', () => {
    assert.equal(cutText('short', 16), 'short');
    assert.equal(cutText('x'.repeat(20), 16), 'x'.repeat(16) + '…[truncated 4 bytes]');
    // 10 euro signs are 30 bytes: 16 bytes keep 5 of them (15 bytes) and cut 15.
    assert.equal(cutText('€'.repeat(10), 16), '€'.repeat(5) + '…[truncated 15 bytes]');
  });
});

describe('microtask frames', () => {
  it('accept a plain phase name for an invocation id', () => {
    assert.deepEqual(parseFromInstance({ type: 'microtask', id: 'inv-1', name: 'read' }), {
      type: 'microtask',
      id: 'inv-1',
      name: 'read',
    });
  });

  it('refuse names that are empty, too long or not plain, and extra fields', () => {
    for (const name of ['', 'x'.repeat(65), 'has space', 'new\nline', '../etc', 7]) {
      assert.throws(() => parseFromInstance({ type: 'microtask', id: 'inv-1', name }), /name/);
    }
    assert.throws(
      () => parseFromInstance({ type: 'microtask', id: 'inv-1', name: 'read', class: 'cpu' }),
      /Unrecognized key|unrecognized/i,
    );
  });
});
