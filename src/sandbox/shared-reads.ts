import net from 'node:net';

/** What a reused read buffer is sized at: the most one read of a child's socket returns. */
export const READ_BUFFER_BYTES = 64 * 1024;

/**
 * Reads a child process's stdio socket into `buffer`, reused for every read,
 * calling `onChunk` with a view of each read's bytes. The view is valid
 * only during the call: whatever the caller keeps, it copies. Returns the
 * socket to use from now on (for 'end', 'close', 'error' and writes).
 *
 * Why: a stream allocates a fresh 64 KB buffer per read, and V8 frees them
 * only once ~64 MB of them have piled up (its external-memory soft limit),
 * so an instance streaming output grows the daemon's RSS by tens of MB
 * whatever the daemon keeps (measured: +56 MB while reading a 100 MB print,
 * +5 MB with one reused buffer). Node reads into a caller's buffer
 * (`onread`) only for sockets made from options, not for a child's stdio,
 * so this moves the child's pipe handle into such a socket. That relies on
 * two Node internals (the `_handle` field and the `handle` option); without
 * them it falls back to reading `stream` as usual, which is correct, only
 * less frugal. `readsIntoSharedBuffer` tells which one ran.
 */
export function readIntoSharedBuffer(
  stream: net.Socket,
  buffer: Buffer,
  onChunk: (chunk: Buffer) => void,
): net.Socket {
  const internal = stream as unknown as { _handle?: { readStart?: unknown } | null };
  const handle = internal._handle;
  if (!handle || typeof handle.readStart !== 'function' || stream.destroyed) {
    stream.on('data', (chunk: Buffer) => {
      onChunk(chunk);
      if (chunk.length >= buffer.length) yieldBeforeNextRead(stream);
    });
    return stream;
  }
  // The old socket lets go of the handle first, so destroying it leaves the handle open.
  internal._handle = null;
  stream.destroy();
  const options = {
    handle,
    readable: true,
    writable: true,
    onread: {
      buffer,
      callback: (bytes: number): boolean => {
        onChunk(buffer.subarray(0, bytes));
        if (bytes < buffer.length) return true;
        yieldBeforeNextRead(socket);
        return false; // paused until then
      },
    },
  };
  // `handle` here is the pipe handle Node made for the child (typed for another use).
  const socket = new net.Socket(options as unknown as net.SocketConstructorOpts);
  shared.add(socket);
  return socket;
}

const shared = new WeakSet<net.Socket>();

/**
 * A full read means more is waiting. Node would read on, up to 32 reads in
 * one go, so an instance streaming output at full speed held the event loop
 * for 2 MB at a time and every other function's request waited behind it;
 * pausing after each full read and resuming on the next turn lets the rest
 * of the loop run between reads (and slows only the stream that floods).
 */
function yieldBeforeNextRead(socket: net.Socket): void {
  socket.pause();
  setImmediate(() => {
    if (!socket.destroyed) socket.resume();
  });
}

/** True when `socket` came from readIntoSharedBuffer's reused-buffer path. */
export function readsIntoSharedBuffer(socket: net.Socket): boolean {
  return shared.has(socket);
}

/** Resolves once `socket` has closed (at once if it already has). */
export function socketClosed(socket: net.Socket): Promise<void> {
  if (socket.closed) return Promise.resolve();
  return new Promise((resolve) => socket.once('close', () => resolve()));
}
