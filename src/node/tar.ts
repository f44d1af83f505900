/**
 * A streaming reader of tar archives (POSIX ustar with pax extended headers,
 * GNU long names), for hostile input: it never touches the file system, holds
 * at most one header's worth of metadata in memory, and hands each entry's
 * data over in pieces as they arrive, so the caller decides what is written
 * and can stop at any byte. No tar library is among the dependencies yet
 * (tar-stream would do this job); this covers what `tar`, `bsdtar`, `git
 * archive` and tar-stream write.
 */

export type TarEntryType =
  | 'file'
  | 'directory'
  | 'symlink'
  | 'hardlink'
  | 'character-device'
  | 'block-device'
  | 'fifo'
  | 'unsupported';

export interface TarEntry {
  /** The name as stored (pax `path` or GNU long name applied), not yet checked. */
  name: string;
  type: TarEntryType;
  /** The raw type flag, for naming unsupported kinds. */
  typeflag: string;
  mode: number;
  /** Bytes of data that follow the header. */
  size: number;
  /** Target of a symlink or hard link. */
  linkName: string;
}

/** The archive is not a well-formed tar. */
export class TarFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TarFormatError';
  }
}

const BLOCK = 512;
/** Pax and GNU long-name data is metadata: a path, a link target, a size. */
const MAX_METADATA_BYTES = 64 * 1024;

const TYPES: Record<string, TarEntryType> = {
  '0': 'file',
  '\0': 'file',
  '7': 'file',
  '1': 'hardlink',
  '2': 'symlink',
  '3': 'character-device',
  '4': 'block-device',
  '5': 'directory',
  '6': 'fifo',
};

/** Hands out exact byte counts from a stream of chunks, slicing rather than re-copying them. */
class ChunkReader {
  private readonly queue: Buffer[] = [];
  private queued = 0;
  private ended = false;

  constructor(private readonly source: AsyncIterator<Buffer>) {}

  /** True once `n` bytes are queued; false if the stream ended first. */
  private async fill(n: number): Promise<boolean> {
    while (this.queued < n && !this.ended) {
      const next = await this.source.next();
      if (next.done) this.ended = true;
      else if (next.value.length > 0) {
        this.queue.push(next.value);
        this.queued += next.value.length;
      }
    }
    return this.queued >= n;
  }

  /** Exactly `n` bytes (a header or metadata), or undefined when the stream ended cleanly here. */
  async read(n: number, what: string): Promise<Buffer | undefined> {
    if (!(await this.fill(n))) {
      if (this.queued === 0) return undefined;
      throw new TarFormatError(`the archive ends inside ${what}`);
    }
    const parts: Buffer[] = [];
    let left = n;
    while (left > 0) {
      const piece = this.take(left);
      parts.push(piece);
      left -= piece.length;
    }
    return parts.length === 1 ? parts[0] : Buffer.concat(parts, n);
  }

  /** The next piece of at most `max` bytes (max > 0). */
  async piece(max: number, what: string): Promise<Buffer> {
    if (!(await this.fill(1))) throw new TarFormatError(`the archive ends inside ${what}`);
    return this.take(max);
  }

  async skip(n: number, what: string): Promise<void> {
    let left = n;
    while (left > 0) left -= (await this.piece(left, what)).length;
  }

  private take(max: number): Buffer {
    const head = this.queue[0];
    if (head.length <= max) {
      this.queue.shift();
      this.queued -= head.length;
      return head;
    }
    this.queue[0] = head.subarray(max);
    this.queued -= max;
    return head.subarray(0, max);
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** A NUL-terminated field as text; names must be UTF-8 so they mean the same on disk. */
function text(block: Buffer, offset: number, length: number, what: string): string {
  const field = block.subarray(offset, offset + length);
  const end = field.indexOf(0);
  try {
    return utf8.decode(end < 0 ? field : field.subarray(0, end));
  } catch {
    throw new TarFormatError(`${what} is not valid UTF-8`);
  }
}

/** A numeric field: octal digits (NUL or space padded), or GNU base-256 for large values. */
function number(block: Buffer, offset: number, length: number, what: string): number {
  const field = block.subarray(offset, offset + length);
  if (field[0] & 0x80) {
    if (field[0] === 0xff) throw new TarFormatError(`${what} is negative`);
    let value = field[0] & 0x7f;
    for (let i = 1; i < field.length; i++) {
      value = value * 256 + field[i];
      if (value > Number.MAX_SAFE_INTEGER) throw new TarFormatError(`${what} is too large`);
    }
    return value;
  }
  const digits = field
    .toString('latin1')
    .replace(/[\0 ]+$/, '')
    .replace(/^ +/, '');
  if (!/^[0-7]*$/.test(digits)) throw new TarFormatError(`${what} is not an octal number`);
  return digits === '' ? 0 : parseInt(digits, 8);
}

function checksumMatches(block: Buffer): boolean {
  const stored = number(block, 148, 8, 'the header checksum');
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const byte = i >= 148 && i < 156 ? 0x20 : block[i];
    unsigned += byte;
    signed += byte > 127 ? byte - 256 : byte;
  }
  // Some old writers summed signed bytes; both are accepted.
  return stored === unsigned || stored === signed;
}

interface Header {
  name: string;
  typeflag: string;
  mode: number;
  size: number;
  linkName: string;
}

function parseHeader(block: Buffer): Header {
  if (!checksumMatches(block)) throw new TarFormatError('a header has a wrong checksum');
  const typeflag = String.fromCharCode(block[156]);
  const magic = block.toString('latin1', 257, 263);
  let name = text(block, 0, 100, 'an entry name');
  // Only POSIX ustar has a name prefix; GNU keeps other fields there.
  if (magic === 'ustar\0') {
    const prefix = text(block, 345, 155, 'an entry name');
    if (prefix) name = `${prefix}/${name}`;
  }
  return {
    name,
    typeflag,
    mode: number(block, 100, 8, `the mode of "${name}"`),
    size: number(block, 124, 12, `the size of "${name}"`),
    linkName: text(block, 157, 100, `the link target of "${name}"`),
  };
}

/** Pax records `<length> <key>=<value>\n`: the keys Petri uses, and whether any is unsupported. */
function parsePax(data: Buffer): Map<string, string> {
  const records = new Map<string, string>();
  let pos = 0;
  while (pos < data.length) {
    const space = data.indexOf(0x20, pos);
    const lengthText = space < 0 ? '' : data.toString('latin1', pos, space);
    const length = /^[0-9]{1,8}$/.test(lengthText) ? Number(lengthText) : NaN;
    if (
      !(length > space - pos + 1) ||
      pos + length > data.length ||
      data[pos + length - 1] !== 0x0a
    )
      throw new TarFormatError('a pax header is malformed');
    const record = data.subarray(space + 1, pos + length - 1);
    const equals = record.indexOf(0x3d);
    if (equals <= 0) throw new TarFormatError('a pax header is malformed');
    const key = record.toString('latin1', 0, equals);
    let value: string;
    try {
      value = utf8.decode(record.subarray(equals + 1));
    } catch {
      throw new TarFormatError(`the pax value of ${key} is not valid UTF-8`);
    }
    records.set(key, value);
    pos += length;
  }
  return records;
}

function isZeroBlock(block: Buffer): boolean {
  for (let i = 0; i < BLOCK; i++) if (block[i] !== 0) return false;
  return true;
}

const padding = (size: number): number => (BLOCK - (size % BLOCK)) % BLOCK;

/**
 * Reads a tar stream and calls `onEntry` once per entry (directory, file,
 * link, special file) with its data as pieces; whatever data `onEntry` does
 * not read is skipped. Stops at the end-of-archive block. Throws
 * `TarFormatError` on malformed input; errors thrown by `onEntry` or by the
 * source pass through.
 */
export async function readTar(
  source: AsyncIterable<Buffer>,
  onEntry: (entry: TarEntry, data: AsyncIterable<Buffer>) => Promise<void>,
): Promise<void> {
  const iterator = source[Symbol.asyncIterator]();
  const reader = new ChunkReader(iterator);
  let pax: Map<string, string> | undefined;
  let longName: string | undefined;
  let longLink: string | undefined;
  try {
    for (;;) {
      const block = await reader.read(BLOCK, 'a header');
      if (!block || isZeroBlock(block)) return;
      const header = parseHeader(block);
      const what = `the data of "${header.name}"`;
      if ('xgLK'.includes(header.typeflag)) {
        if (header.size > MAX_METADATA_BYTES)
          throw new TarFormatError(`a metadata header of ${header.size} bytes is over 64 KiB`);
        const data = (await reader.read(header.size, what)) ?? Buffer.alloc(0);
        await reader.skip(padding(header.size), what);
        if (header.typeflag === 'g') continue; // global defaults (git archive's commit id): unused
        if (header.typeflag === 'x') {
          if (pax) throw new TarFormatError('two pax headers precede one entry');
          pax = parsePax(data);
        } else {
          const name = text(data, 0, data.length, 'a GNU long name');
          if (header.typeflag === 'L') {
            if (longName !== undefined)
              throw new TarFormatError('two long names precede one entry');
            longName = name;
          } else {
            if (longLink !== undefined)
              throw new TarFormatError('two long links precede one entry');
            longLink = name;
          }
        }
        continue;
      }
      const entry = toEntry(header, pax, longName, longLink);
      pax = longName = longLink = undefined;
      let remaining = entry.size;
      const data: AsyncIterable<Buffer> = {
        async *[Symbol.asyncIterator]() {
          while (remaining > 0) {
            const piece = await reader.piece(remaining, what);
            remaining -= piece.length;
            yield piece;
          }
        },
      };
      await onEntry(entry, data);
      await reader.skip(remaining + padding(entry.size), what);
    }
  } finally {
    await iterator.return?.();
  }
}

function toEntry(
  header: Header,
  pax: Map<string, string> | undefined,
  longName: string | undefined,
  longLink: string | undefined,
): TarEntry {
  if (pax && [...pax.keys()].some((key) => key.startsWith('GNU.sparse.')))
    throw new TarFormatError(`"${header.name}" is a sparse file, which is not supported`);
  const name = pax?.get('path') ?? longName ?? header.name;
  let size = header.size;
  const paxSize = pax?.get('size');
  if (paxSize !== undefined) {
    if (!/^[0-9]{1,16}$/.test(paxSize) || Number(paxSize) > Number.MAX_SAFE_INTEGER)
      throw new TarFormatError(`the pax size of "${name}" is not a number`);
    size = Number(paxSize);
  }
  let type = TYPES[header.typeflag] ?? 'unsupported';
  // Pre-POSIX archives mark folders only by a trailing slash.
  if (type === 'file' && header.typeflag === '\0' && name.endsWith('/')) type = 'directory';
  return {
    name,
    type,
    typeflag: header.typeflag,
    mode: header.mode,
    size,
    linkName: pax?.get('linkpath') ?? longLink ?? header.linkName,
  };
}
