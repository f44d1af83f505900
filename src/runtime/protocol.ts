/**
 * The daemon↔instance protocol (DESIGN §8): length-prefixed JSON frames over a
 * pipe the instance inherits as fd 3. A frame is a 4-byte big-endian length
 * followed by that many bytes of UTF-8 JSON.
 *
 * This file is also bundled into the instance host, so it imports nothing
 * beyond Node built-ins.
 */

export type ToInstance =
  { type: 'invoke'; id: string; event: unknown; deadline: number } | { type: 'shutdown' };

export type LogStream = 'stdout' | 'stderr';

export type FromInstance =
  | { type: 'ready' }
  | { type: 'result'; id: string; value: unknown }
  | {
      type: 'error';
      id: string;
      /** A registered error code when the instance knows it (BadResponse, HandlerError). */
      code: 'HandlerError' | 'BadResponse';
      message: string;
      stack?: string;
    }
  | { type: 'log'; id?: string; stream: LogStream; line: string }
  | { type: 'init-error'; message: string; stack?: string };

/** The fd number of the protocol pipe inside the instance. */
export const PROTOCOL_FD = 3;

export function encodeFrame(message: ToInstance | FromInstance): Buffer {
  const body = Buffer.from(JSON.stringify(message), 'utf8');
  const frame = Buffer.allocUnsafe(4 + body.length);
  frame.writeUInt32BE(body.length, 0);
  body.copy(frame, 4);
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
    this.pending.push(encodeFrame(message));
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

/**
 * Splits a byte stream into frames. Feed it chunks; it calls `onFrame` once
 * per complete frame, keeping partial frames between chunks.
 */
export class FrameDecoder<T> {
  private buffered: Buffer = Buffer.alloc(0);

  constructor(private readonly onFrame: (message: T) => void) {}

  push(chunk: Buffer): void {
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
    while (this.buffered.length >= 4) {
      const length = this.buffered.readUInt32BE(0);
      if (this.buffered.length < 4 + length) break;
      const body = this.buffered.subarray(4, 4 + length);
      this.buffered = this.buffered.subarray(4 + length);
      this.onFrame(JSON.parse(body.toString('utf8')) as T);
    }
  }
}
