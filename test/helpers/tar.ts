import zlib from 'node:zlib';

/**
 * Writes tar archives byte by byte (POSIX ustar headers, optional pax
 * records), so tests can build the hostile ones no well-behaved tool makes:
 * absolute names, `..`, devices, FIFOs, links out of the folder.
 */
export interface TarEntrySpec {
  name: string;
  /** ustar type flag: '0' file, '1' hard link, '2' symlink, '3' char, '4' block, '5' dir, '6' FIFO. */
  type?: string;
  data?: Buffer | string;
  linkName?: string;
  mode?: number;
  /** The size the header claims (default: the data's length). */
  size?: number;
  /** Pax records written in an 'x' header before this entry. */
  pax?: Record<string, string>;
}

const BLOCK = 512;

function octal(value: number, width: number): string {
  return value.toString(8).padStart(width - 1, '0') + '\0';
}

/** One 512-byte ustar header. */
export function tarHeader(entry: TarEntrySpec): Buffer {
  const block = Buffer.alloc(BLOCK);
  const type = entry.type ?? '0';
  const size = entry.size ?? (entry.data === undefined ? 0 : Buffer.byteLength(entry.data));
  block.write(entry.name.slice(0, 100), 0, 'utf8');
  block.write(octal(entry.mode ?? (type === '5' ? 0o755 : 0o644), 8), 100, 'latin1');
  block.write(octal(0, 8), 108, 'latin1');
  block.write(octal(0, 8), 116, 'latin1');
  block.write(octal(size, 12), 124, 'latin1');
  block.write(octal(1_700_000_000, 12), 136, 'latin1');
  block.write('        ', 148, 'latin1');
  block.write(type, 156, 'latin1');
  block.write(entry.linkName ?? '', 157, 'utf8');
  block.write('ustar\0' + '00', 257, 'latin1');
  block.write('root', 265, 'latin1');
  block.write('root', 297, 'latin1');
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(octal(sum, 7) + ' ', 148, 'latin1');
  return block;
}

function paxData(records: Record<string, string>): Buffer {
  let text = '';
  for (const [key, value] of Object.entries(records)) {
    const body = ` ${key}=${value}\n`;
    let length = Buffer.byteLength(body) + 1;
    while (String(length).length + Buffer.byteLength(body) !== length) length += 1;
    text += `${length}${body}`;
  }
  return Buffer.from(text, 'utf8');
}

function padded(data: Buffer): Buffer[] {
  const rest = data.length % BLOCK;
  return rest === 0 ? [data] : [data, Buffer.alloc(BLOCK - rest)];
}

/** The header(s), data and padding of one entry. */
export function tarEntry(entry: TarEntrySpec): Buffer {
  const parts: Buffer[] = [];
  if (entry.pax) {
    const data = paxData(entry.pax);
    parts.push(tarHeader({ name: 'PaxHeader', type: 'x', data }), ...padded(data));
  }
  parts.push(tarHeader(entry));
  if (entry.data !== undefined) parts.push(...padded(Buffer.from(entry.data)));
  return Buffer.concat(parts);
}

/** The end-of-archive marker: two zero blocks. */
export const TAR_END = Buffer.alloc(2 * BLOCK);

export function tarArchive(entries: TarEntrySpec[]): Buffer {
  return Buffer.concat([...entries.map(tarEntry), TAR_END]);
}

/** A deploy's `source.archive`: the tar, gzipped, in base64. */
export function archiveOf(entries: TarEntrySpec[]): string {
  return zlib.gzipSync(tarArchive(entries)).toString('base64');
}

/**
 * A gzip bomb: `files` files of `fileBytes` zeros each. Built as one gzip
 * member per header and a shared member of zeros (gunzip reads concatenated
 * members as one stream), so a gigabyte of zeros costs about a megabyte and
 * no time to make.
 */
export function gzipBomb(files: number, fileBytes: number): string {
  if (fileBytes % BLOCK !== 0) throw new Error('fileBytes must be a multiple of 512');
  const zeros = zlib.gzipSync(Buffer.alloc(fileBytes));
  const members: Buffer[] = [];
  for (let i = 0; i < files; i++) {
    const name = `zeros/${String(i).padStart(5, '0')}.bin`;
    members.push(zlib.gzipSync(tarHeader({ name, size: fileBytes })), zeros);
  }
  members.push(zlib.gzipSync(TAR_END));
  return Buffer.concat(members).toString('base64');
}
