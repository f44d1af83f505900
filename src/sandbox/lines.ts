import { truncationMarker, utf8Boundary } from '../runtime/index.ts';

const NEWLINE = 0x0a;

/**
 * Splits a byte stream (an instance's stdout or stderr) into lines of at
 * most `maxLineBytes`. A longer line keeps its first `maxLineBytes` (cut on
 * a character boundary) followed by a truncation marker; the rest of it is
 * counted as it streams past, never held.
 *
 * Linear in the bytes received: a line inside one chunk is decoded where it
 * lies; only the start of a line that spans chunks is copied, once, into a
 * buffer of `maxLineBytes`.
 */
export class LineSplitter {
  /** The line being read, when it started in an earlier chunk (allocated on first use). */
  private held: Buffer | undefined;
  private kept = 0;
  private dropped = 0;
  /** True while a line that started in an earlier chunk is being read. */
  private pending = false;
  private copied = 0;

  constructor(
    private readonly maxLineBytes: number,
    private readonly onLine: (line: string) => void,
  ) {}

  /** Bytes copied while reading lines so far: at most the bytes received. */
  get copiedBytes(): number {
    return this.copied;
  }

  /** Bytes held for the line being read (at most `maxLineBytes`). */
  get bufferedBytes(): number {
    return this.kept;
  }

  push(chunk: Buffer): void {
    let start = 0;
    while (start < chunk.length) {
      const newline = chunk.indexOf(NEWLINE, start);
      if (newline === -1) {
        this.hold(chunk, start, chunk.length);
        return;
      }
      if (this.pending) {
        this.hold(chunk, start, newline);
        this.emitHeld();
      } else {
        const kept = Math.min(newline - start, this.maxLineBytes);
        this.onLine(lineText(chunk, start, start + kept, newline - start - kept));
      }
      start = newline + 1;
    }
  }

  /** Ends the stream: a last line without a newline is still a line. */
  end(): void {
    if (this.pending) this.emitHeld();
  }

  private hold(chunk: Buffer, start: number, end: number): void {
    this.pending = true;
    const taken = Math.min(this.maxLineBytes - this.kept, end - start);
    if (taken > 0) {
      this.held ??= Buffer.allocUnsafe(this.maxLineBytes);
      chunk.copy(this.held, this.kept, start, start + taken);
      this.kept += taken;
      this.copied += taken;
    }
    this.dropped += end - start - taken;
  }

  private emitHeld(): void {
    const line = lineText(this.held ?? Buffer.alloc(0), 0, this.kept, this.dropped);
    this.kept = 0;
    this.dropped = 0;
    this.pending = false;
    this.onLine(line);
  }
}

/** The text of `bytes[start, end)`, with a truncation marker when `dropped` bytes followed. */
function lineText(bytes: Buffer, start: number, end: number, dropped: number): string {
  if (dropped === 0) return bytes.toString('utf8', start, end);
  // The kept bytes may end inside a character: cut before it, and count it as dropped.
  const cut = start + utf8Boundary(bytes.subarray(start, end), end - start);
  return bytes.toString('utf8', start, cut) + truncationMarker(dropped + end - cut);
}
