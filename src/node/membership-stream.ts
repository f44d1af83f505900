import type { ServerResponse } from 'node:http';
import type { MembershipEvent } from './groups.ts';

/** A comment line on idle streams, so a reader notices a dead daemon. */
export const HEARTBEAT_MS = 15_000;
/** What a reader that does not read may leave buffered before events are dropped. */
const MAX_BUFFERED = 1024 * 1024;

export interface MembershipStream {
  /** The first line: the members now. */
  first: Record<string, unknown>;
  /** Subscribes to changes; `end` is called when the group goes. Returns the unsubscribe. */
  subscribe(send: (event: MembershipEvent) => void, end: () => void): () => void;
  /** After writing this event, end the stream (a member's own leave). */
  endsAfter?(event: MembershipEvent): boolean;
  /** Called once when the stream ends, however it ends. */
  onClose?(): void;
}

/**
 * Writes a group's membership changes as NDJSON on a raw HTTP response (the
 * coordinator's stream for members, the API's for the node side): the
 * members now, then one line per join and leave, an empty line as heartbeat.
 */
export function writeMembershipStream(raw: ServerResponse, stream: MembershipStream): void {
  raw.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
  raw.write(JSON.stringify(stream.first) + '\n');
  let done = false;
  const send = (event: MembershipEvent): void => {
    if (raw.writableLength < MAX_BUFFERED) raw.write(JSON.stringify(event) + '\n');
    if (stream.endsAfter?.(event)) raw.destroy();
  };
  const unsubscribe = stream.subscribe(send, () => raw.end());
  const heartbeat = setInterval(() => raw.write('\n'), HEARTBEAT_MS);
  heartbeat.unref();
  const finish = (): void => {
    if (done) return;
    done = true;
    clearInterval(heartbeat);
    unsubscribe();
    stream.onClose?.();
  };
  raw.on('close', finish);
  raw.req.on('close', finish);
}
