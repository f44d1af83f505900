/**
 * The daemon↔instance protocol (DESIGN §8): length-prefixed JSON frames over a
 * pipe the instance inherits as fd 3. A frame is a 4-byte big-endian length
 * followed by that many bytes of UTF-8 JSON.
 *
 * This file is also bundled into the instance host, so it imports nothing
 * beyond Node built-ins.
 */

export type ToInstance =
  | { type: 'invoke'; id: string; event: unknown; deadline: number }
  /** The invocation's last announced phase may run now (one per `microtask` frame, in order). */
  | { type: 'admit'; id: string }
  | BindMessage
  | { type: 'shutdown' };

/**
 * Turns a prewarmed runtime (a host started with no function) into one
 * function's instance, once: the host takes `env` as the function's, moves
 * to `cwd`, imports `bundle` and answers `ready` (or `init-error`). Paths are
 * as the sandbox sees them. A second `bind`, or one to a host that has a
 * function, ends the host.
 */
export interface BindMessage {
  type: 'bind';
  functionName: string;
  version: number;
  bundle: string;
  exportName: string;
  cwd: string;
  env: Record<string, string>;
}

/** PETRI_RUNTIME of a host that waits for a `bind` before it has a function. */
export const PREWARM_RUNTIME = 'prewarm';

export type LogStream = 'stdout' | 'stderr';

export type ResultEncoding = 'text' | 'base64';

export type FromInstance =
  /** `port`: where the http runtime's server listens, for function URLs to connect to. */
  | { type: 'ready'; port?: number }
  /**
   * `encoding` says how `value` carries a result JSON cannot: `text` a string
   * the handler returned (sent as text/plain), `base64` its bytes (a Buffer or
   * Uint8Array, sent as application/octet-stream). Absent: a JSON value.
   */
  | { type: 'result'; id: string; value: unknown; encoding?: ResultEncoding }
  | {
      type: 'error';
      id: string;
      /**
       * One of INSTANCE_ERROR_CODES from an honest host; the daemon reports
       * any other code it is sent as HandlerError.
       */
      code: string;
      message: string;
      stack?: string;
    }
  | { type: 'log'; id?: string; stream: LogStream; line: string }
  | { type: 'init-error'; message: string; stack?: string }
  /** The invocation enters phase `name` (and leaves the one before): DESIGN §8. */
  | { type: 'microtask'; id: string; name: string };

/**
 * What a phase name may be: it names a CPU class in the spec's `microtasks`
 * map, and the daemon stores it, so it is short and plain.
 */
export const MICROTASK_NAME = /^[A-Za-z0-9_.:-]{1,64}$/;

/** The error codes an instance may report for an invocation (all registered in src/errors.ts). */
export const INSTANCE_ERROR_CODES = ['HandlerError', 'BadResponse', 'ResponseTooLarge'] as const;
export type InstanceErrorCode = (typeof INSTANCE_ERROR_CODES)[number];

/** The longest error message and stack kept from an instance (longer ones are cut). */
export const ERROR_TEXT_BYTES = { message: 8 * 1024, stack: 16 * 1024 } as const;

/** The fd number of the protocol pipe inside the instance. */
export const PROTOCOL_FD = 3;

export function encodeFrame(message: ToInstance | FromInstance): Buffer {
  return frameOf(JSON.stringify(message));
}

/**
 * A `result` frame around a value already serialised as JSON: the host
 * serialises a result once, to learn its size, and sends that text.
 */
export function encodeResultFrame(
  id: string,
  valueJson: string,
  encoding?: ResultEncoding,
): Buffer {
  const tag = encoding === undefined ? '' : `,"encoding":"${encoding}"`;
  return frameOf(`{"type":"result","id":${JSON.stringify(id)},"value":${valueJson}${tag}}`);
}

function frameOf(json: string): Buffer {
  const length = Buffer.byteLength(json, 'utf8');
  const frame = Buffer.allocUnsafe(4 + length);
  frame.writeUInt32BE(length, 0);
  frame.write(json, 4, 'utf8');
  return frame;
}

/**
 * Writes frames, gathering those sent close together into one write. Each
 * write wakes the reader, and on a VM a wake-up costs more than the bytes,
 * so under load one write for several frames beats one each. `defer`
 * decides how long frames gather: `queueMicrotask` (the default) costs a
 * lone frame nothing, `setImmediate` also gathers across I/O callbacks.
 */
export class FrameWriter {
  private pending: Buffer[] = [];

  constructor(
    private readonly stream: { write(chunk: Buffer): unknown },
    private readonly defer: (flush: () => void) => void = queueMicrotask,
  ) {}

  /** Queues a frame for the next gathered write. */
  write(message: ToInstance | FromInstance): void {
    this.writeEncoded(encodeFrame(message));
  }

  /** Queues a frame made by `encodeFrame` or `encodeResultFrame`. */
  writeEncoded(frame: Buffer): void {
    this.pending.push(frame);
    if (this.pending.length === 1) this.defer(this.flush);
  }

  /** Writes a frame now, with any still gathering before it. */
  writeNow(message: ToInstance | FromInstance): void {
    this.pending.push(encodeFrame(message));
    this.flush();
  }

  /** Writes what is gathering now (call it before ending the stream). */
  readonly flush = (): void => {
    if (this.pending.length === 0) return;
    const frames = this.pending;
    this.pending = [];
    this.stream.write(frames.length === 1 ? frames[0] : Buffer.concat(frames));
  };
}

/** Why the decoder rejected a frame. */
export type FrameFault = 'oversized' | 'malformed' | 'invalid';

export class FrameError extends Error {
  constructor(
    readonly fault: FrameFault,
    message: string,
  ) {
    super(message);
    this.name = 'FrameError';
  }
}

export interface FrameDecoderOptions<T> {
  /** The largest body accepted; a longer length prefix fails before any of the body is kept. */
  maxFrameBytes?: number;
  /** Turns a parsed body into a message, throwing when it is not one (default: taken as is). */
  parse?: (value: unknown) => T;
  /**
   * Called once, on the first bad frame; the decoder then ignores the rest of
   * the stream. Without it, a bad frame throws from `push`.
   */
  onError?: (error: FrameError) => void;
}

/**
 * Splits a byte stream into frames. Feed it chunks; it calls `onFrame` once
 * per complete frame with the message and its body's size.
 *
 * Linear in the bytes received, and it keeps no chunk it is given (the
 * daemon reads into one reused buffer): a frame inside one chunk is parsed
 * where it lies; a frame spanning chunks is copied, once, into a buffer of
 * its announced size, so a large frame arriving in many small chunks costs
 * its size, not its size times the number of chunks.
 */
export class FrameDecoder<T> {
  private readonly prefix = Buffer.alloc(4);
  private prefixFilled = 0;
  /** Body length of the frame being read; -1 until its length prefix is complete. */
  private bodyLength = -1;
  /** The body of a frame spanning chunks, as far as it has come. */
  private body: Buffer | undefined;
  private bodyFilled = 0;
  private failed = false;
  private copied = 0;

  constructor(
    private readonly onFrame: (message: T, bodyBytes: number) => void,
    private readonly options: FrameDecoderOptions<T> = {},
  ) {}

  /** Bytes copied while assembling frames so far: never more than the bytes received. */
  get copiedBytes(): number {
    return this.copied;
  }

  /** Bytes held for the frame being read (at most 4 plus `maxFrameBytes`). */
  get bufferedBytes(): number {
    return this.prefixFilled + this.bodyFilled;
  }

  push(chunk: Buffer): void {
    let offset = 0;
    while (!this.failed) {
      if (this.bodyLength < 0) {
        if (offset >= chunk.length) return;
        offset = this.readPrefix(chunk, offset);
        if (this.bodyLength < 0) return;
        const max = this.options.maxFrameBytes;
        if (max !== undefined && this.bodyLength > max) {
          return this.fail(
            'oversized',
            `a frame of ${this.bodyLength} bytes (the limit is ${max})`,
          );
        }
      }
      const length = this.bodyLength;
      if (this.body === undefined && chunk.length - offset >= length) {
        this.bodyLength = -1;
        this.deliver(chunk, offset, offset + length);
        offset += length;
        continue;
      }
      this.body ??= Buffer.allocUnsafe(length);
      const part = Math.min(length - this.bodyFilled, chunk.length - offset);
      chunk.copy(this.body, this.bodyFilled, offset, offset + part);
      this.bodyFilled += part;
      this.copied += part;
      offset += part;
      if (this.bodyFilled < length) return;
      const body = this.body;
      this.body = undefined;
      this.bodyFilled = 0;
      this.bodyLength = -1;
      this.deliver(body, 0, length);
    }
  }

  /** Reads (the rest of) a length prefix from `chunk`; returns the offset after it. */
  private readPrefix(chunk: Buffer, offset: number): number {
    if (this.prefixFilled === 0 && chunk.length - offset >= 4) {
      this.bodyLength = chunk.readUInt32BE(offset);
      return offset + 4;
    }
    const part = Math.min(4 - this.prefixFilled, chunk.length - offset);
    chunk.copy(this.prefix, this.prefixFilled, offset, offset + part);
    this.prefixFilled += part;
    this.copied += part;
    if (this.prefixFilled === 4) {
      this.prefixFilled = 0;
      this.bodyLength = this.prefix.readUInt32BE(0);
    }
    return offset + part;
  }

  private deliver(bytes: Buffer, start: number, end: number): void {
    let value: unknown;
    try {
      value = JSON.parse(bytes.toString('utf8', start, end));
    } catch (err) {
      return this.fail('malformed', `a frame that is not JSON (${(err as Error).message})`);
    }
    let message: T;
    try {
      message = this.options.parse ? this.options.parse(value) : (value as T);
    } catch (err) {
      return this.fail(
        'invalid',
        `a frame that is not a protocol message (${(err as Error).message})`,
      );
    }
    this.onFrame(message, end - start);
  }

  private fail(fault: FrameFault, message: string): void {
    this.failed = true;
    this.body = undefined;
    this.bodyFilled = 0;
    this.prefixFilled = 0;
    const error = new FrameError(fault, message);
    if (!this.options.onError) throw error;
    this.options.onError(error);
  }
}

/** What replaces the cut end of an over-long line. */
export function truncationMarker(droppedBytes: number): string {
  return `…[truncated ${droppedBytes} bytes]`;
}

/**
 * The largest n ≤ `end` such that `bytes[0, n)` holds whole UTF-8
 * characters: `end`, or up to 3 less when a character straddles it.
 */
export function utf8Boundary(bytes: Uint8Array, end: number): number {
  let lead = end - 1;
  // Step back over continuation bytes (10xxxxxx) to the lead byte of the last character.
  while (lead >= 0 && end - lead < 4 && (bytes[lead] & 0xc0) === 0x80) lead -= 1;
  if (lead < 0) return end;
  const first = bytes[lead];
  const length = first >= 0xf0 ? 4 : first >= 0xe0 ? 3 : first >= 0xc0 ? 2 : 1;
  return lead + length > end ? lead : end;
}

/** `text` cut to at most `maxBytes` of UTF-8, with a marker saying how much was cut. */
export function cutText(text: string, maxBytes: number): string {
  // A UTF-16 unit is at most 3 bytes of UTF-8: short text needs no counting.
  if (text.length * 3 <= maxBytes) return text;
  const total = Buffer.byteLength(text, 'utf8');
  if (total <= maxBytes) return text;
  const head = Buffer.from(text.slice(0, maxBytes), 'utf8');
  const cut = utf8Boundary(head, maxBytes);
  return head.toString('utf8', 0, cut) + truncationMarker(total - cut);
}
