/**
 * Reads a tar stream with tar-stream's `extract()` (ustar, pax, GNU long
 * names and base-256 sizes are its job) and hands each entry to the caller
 * one at a time, as a narrow typed header and its data in pieces. Only what
 * tar-stream leaves to its user is here: feeding it with backpressure,
 * draining every entry, stopping it on any failure, and naming the entry an
 * error happened at. What may be written is the caller's decision.
 */
import { extract, type Extract, type Header } from 'tar-stream';

/** One entry as tar-stream hands it over: a readable stream of its data, with its header. */
type EntryStream = Extract extends AsyncIterable<infer Entry> ? Entry : never;

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
  mode: number;
  /** Bytes of data that follow the header. */
  size: number;
  /** Target of a symlink or hard link. */
  linkName: string;
}

/** The archive is not a well-formed tar; `entry` is the one being read, if any. */
export class TarFormatError extends Error {
  constructor(
    message: string,
    readonly entry?: string,
  ) {
    super(message);
    this.name = 'TarFormatError';
  }
}

/**
 * tar-stream's entry types. Contiguous files ('7') are plain files to every
 * reader but a few old real-time systems, so they are files here. The
 * metadata types (pax, GNU long names) are consumed by tar-stream and never
 * reach an entry; anything else, including the types it does not know and
 * reports as `null` (its typings omit that; e.g. GNU sparse 'S'), is
 * unsupported.
 */
const TYPES: Partial<Record<string, TarEntryType>> = {
  file: 'file',
  'contiguous-file': 'file',
  directory: 'directory',
  symlink: 'symlink',
  link: 'hardlink',
  'character-device': 'character-device',
  'block-device': 'block-device',
  fifo: 'fifo',
};

/** tar-stream decodes names as UTF-8 with replacement; a replaced byte means the name was not UTF-8. */
const REPLACED = '\uFFFD';

/** The keys of the pax records tar-stream applied to the entry. */
function paxKeys(header: Header): string[] {
  return typeof header.pax === 'object' && header.pax !== null ? Object.keys(header.pax) : [];
}

function toEntry(header: Header): TarEntry {
  // tar-stream gives `null` for a missing link target and an unknown type, whatever its typings say.
  const { name, size, mode } = header;
  const linkName: string = (header.linkname as string | null) ?? '';
  const kind: string | null = header.type;
  if (name.includes(REPLACED) || linkName.includes(REPLACED))
    throw new TarFormatError(
      `the name or link target of ${JSON.stringify(name)} is not UTF-8`,
      name,
    );
  // A sparse file's data is a map of holes, not its content.
  if (paxKeys(header).some((key) => key.startsWith('GNU.sparse.')))
    throw new TarFormatError(
      `${JSON.stringify(name)} is a sparse file, which is not supported`,
      name,
    );
  let type = (kind === null ? undefined : TYPES[kind]) ?? 'unsupported';
  // Old writers mark some folders only by a trailing slash.
  if (type === 'file' && name.endsWith('/')) type = 'directory';
  // tar-stream does not skip a folder's data, so a folder claiming data is refused.
  if (type === 'directory' && size !== 0)
    throw new TarFormatError(
      `the folder ${JSON.stringify(name)} claims ${size} bytes of data`,
      name,
    );
  return { name, type, mode, size, linkName };
}

/** tar-stream's messages in Petri's words (it suggests gunzipping, which was done); others stay as they are. */
const MESSAGES: Record<string, string> = {
  'Invalid tar header. Maybe the tar is corrupted or it needs to be gunzipped?':
    'a header has a wrong checksum',
  'Invalid tar header: unknown format.': 'a header is neither ustar nor GNU',
  'Header exceeds max size': 'a pax or GNU long-name header is over 4 MiB',
  'Invalid header': 'an entry has an invalid size',
  'Unexpected end of data': 'the archive ends early',
};

/** Resolves once `extractor` takes more input, or is closed. */
function drainedOrClosed(extractor: Extract): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      extractor.off('drain', done);
      extractor.off('close', done);
      resolve();
    };
    extractor.on('drain', done);
    extractor.on('close', done);
  });
}

/** Writes `source` into `extractor`, waiting while it is full; stops if it is closed. */
async function feed(source: AsyncIterable<Buffer>, extractor: Extract): Promise<void> {
  // Once it is stopped (by an error anywhere), no more of the source is read.
  for await (const chunk of source) {
    if (extractor.destroyed) return;
    if (!extractor.write(chunk)) await drainedOrClosed(extractor);
    if (extractor.destroyed) return;
  }
  extractor.end(null); // no last chunk (the typings require the argument)
}

/** An entry's data as pieces; without `return`, so a caller that stops early cannot abort the archive. */
function dataOf(chunks: AsyncIterator<unknown>): AsyncIterable<Buffer> {
  return {
    [Symbol.asyncIterator]: () => ({
      next: async (): Promise<IteratorResult<Buffer>> => {
        const next = await chunks.next();
        if (next.done) return { done: true, value: undefined };
        if (!Buffer.isBuffer(next.value))
          throw new TypeError('tar-stream gave data that is not a Buffer');
        return { done: false, value: next.value };
      },
    }),
  };
}

/**
 * Reads a tar stream and calls `onEntry` once per entry (directory, file,
 * link, special file) with its data as pieces; whatever data `onEntry` does
 * not read is drained. Throws `TarFormatError` on malformed input (a wrong
 * checksum, a cut-off archive, an oversized metadata header, ...); errors
 * thrown by `onEntry` or by the source pass through unchanged, and either
 * stops the extractor and the source.
 */
export async function readTar(
  source: AsyncIterable<Buffer>,
  onEntry: (entry: TarEntry, data: AsyncIterable<Buffer>) => Promise<void>,
): Promise<void> {
  const extractor = extract();
  let sourceError: unknown;
  let extractorError: unknown;
  let finished = false;
  extractor.on('error', (err: unknown) => (extractorError ??= err));
  extractor.on('finish', () => (finished = true));
  // Listening before the first byte goes in, so no entry is missed.
  const entries: AsyncIterator<EntryStream> = extractor[Symbol.asyncIterator]();
  const feeding = feed(source, extractor).catch((err: unknown) => {
    sourceError = err;
    extractor.destroy(err instanceof Error ? err : new Error(String(err)));
  });
  let current: string | undefined;
  let last: string | undefined;
  let thrown: unknown;
  try {
    for (let next = await entries.next(); !next.done; next = await entries.next()) {
      const stream = next.value;
      current = stream.header.name;
      const chunks = stream[Symbol.asyncIterator]();
      await onEntry(toEntry(stream.header), dataOf(chunks));
      while (!(await chunks.next()).done);
      last = current;
      current = undefined;
    }
    if (!finished) throw new TarFormatError('the archive was not read to its end', last);
  } catch (err) {
    thrown = err;
  } finally {
    await entries.return?.();
    await feeding;
  }
  thrown ??= sourceError;
  if (thrown === undefined) return;
  // The source's errors (a cap, bad gzip) and the caller's pass through; the extractor's own are the archive's fault.
  if (thrown !== extractorError || thrown === sourceError) throw thrown;
  const raw = extractorError instanceof Error ? extractorError.message : String(extractorError);
  const message = MESSAGES[raw] ?? raw;
  const where =
    current !== undefined
      ? ` (inside ${JSON.stringify(current)})`
      : last !== undefined
        ? ` (after ${JSON.stringify(last)})`
        : '';
  throw new TarFormatError(`${message}${where}`, current);
}
