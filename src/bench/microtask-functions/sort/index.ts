import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { readFileSync } from 'node:fs';

/**
 * `npm run bench -- microtasks` function: one task of a distributed sort in
 * the shape of Talluri et al.'s experiment, on gensort-style records (100
 * bytes, the first 10 the key) in a local S3 server on the bridge.
 *
 * - gen: makes input part `in/P` (not timed);
 * - map (stage 1): read `in/P` → partition by the key's first byte into C
 *   categories → write `mid/C/P` for every category;
 * - reduce (stage 2): read `mid/C/*` → sort by key → write `out/C`;
 * - transitions: `n` phase announcements back to back, each timed here;
 *   then `verify` more, untimed, each followed by reading the cores this
 *   thread may run on (was the class's cpuset written by then?).
 * - upload: a map task's write alone (the write phase's floor).
 *
 * Phases are announced with context.microtask; the node records them.
 */
const RECORD = 100;
const KEY = 10;

interface Context {
  microtask<T>(name: string, fn?: () => T | Promise<T>): Promise<T>;
}

interface Common {
  endpoint: string;
  bucket: string;
}
type SortEvent = Common &
  (
    | { op: 'gen'; part: number; records: number; seed: number }
    | { op: 'map'; part: number; categories: number }
    | { op: 'reduce'; category: number; parts: number }
    | { op: 'transitions'; n: number; names: string[]; verify?: number }
    | { op: 'upload'; bytes: number; pieces: number }
  );

let client: S3Client | undefined;

/** This thread's allowed cores as the kernel lists them (`Cpus_allowed_list`). */
function cpusAllowed(): string {
  const status = readFileSync('/proc/thread-self/status', 'utf8');
  return /^Cpus_allowed_list:\s*(\S+)/m.exec(status)?.[1] ?? '?';
}

function s3(endpoint: string): S3Client {
  client ??= new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  return client;
}

async function get(e: Common, key: string): Promise<Buffer> {
  const response = await s3(e.endpoint).send(new GetObjectCommand({ Bucket: e.bucket, Key: key }));
  const chunks: Uint8Array[] = [];
  for await (const chunk of response.Body as AsyncIterable<Uint8Array>) chunks.push(chunk);
  return Buffer.concat(chunks);
}

async function put(e: Common, key: string, body: Buffer): Promise<void> {
  await s3(e.endpoint).send(
    new PutObjectCommand({ Bucket: e.bucket, Key: key, Body: body, ContentLength: body.length }),
  );
}

/** A small xorshift generator, so parts are the same on every run. */
function records(count: number, seed: number): Buffer {
  const out = Buffer.alloc(count * RECORD);
  let x = seed * 2654435761 + 1;
  for (let i = 0; i < out.length; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out.writeInt32LE(x | 0, i);
  }
  return out;
}

function partition(data: Buffer, categories: number): Buffer[] {
  const counts = new Array<number>(categories).fill(0);
  const of = (i: number) => Math.floor((data[i * RECORD] * categories) / 256);
  const n = data.length / RECORD;
  for (let i = 0; i < n; i++) counts[of(i)] += 1;
  const parts = counts.map((count) => Buffer.alloc(count * RECORD));
  const fill = new Array<number>(categories).fill(0);
  for (let i = 0; i < n; i++) {
    const c = of(i);
    data.copy(parts[c], fill[c]++ * RECORD, i * RECORD, (i + 1) * RECORD);
  }
  return parts;
}

function sortRecords(data: Buffer): Buffer {
  const n = data.length / RECORD;
  const order = Array.from({ length: n }, (_, i) => i);
  order.sort(
    (a, b) => data.compare(data, b * RECORD, b * RECORD + KEY, a * RECORD, a * RECORD + KEY) * -1,
  );
  const out = Buffer.alloc(data.length);
  order.forEach((from, to) => data.copy(out, to * RECORD, from * RECORD, (from + 1) * RECORD));
  return out;
}

async function inParallel<T>(count: number, width: number, task: (i: number) => Promise<T>) {
  const results = new Array<T>(count);
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      results[i] = await task(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, count) }, worker));
  return results;
}

export async function handler(event: SortEvent, context: Context) {
  switch (event.op) {
    case 'gen':
      await put(event, `in/${event.part}`, records(event.records, event.seed));
      return { bytes: event.records * RECORD };
    case 'map': {
      const data = await context.microtask('read', () => get(event, `in/${event.part}`));
      const parts = await context.microtask('partition', () => partition(data, event.categories));
      await context.microtask('write', () =>
        inParallel(parts.length, 4, (c) => put(event, `mid/${c}/${event.part}`, parts[c])),
      );
      return { records: data.length / RECORD };
    }
    case 'reduce': {
      const parts = await context.microtask('read', () =>
        inParallel(event.parts, 4, (p) => get(event, `mid/${event.category}/${p}`)),
      );
      const sorted = await context.microtask('sort', () => sortRecords(Buffer.concat(parts)));
      await context.microtask('write', () => put(event, `out/${event.category}`, sorted));
      const ordered = checkOrder(sorted);
      return { records: sorted.length / RECORD, ordered };
    }
    case 'transitions': {
      const micros: number[] = [];
      for (let i = 0; i < event.n; i++) {
        const started = performance.now();
        await context.microtask(event.names[i % event.names.length]);
        micros.push((performance.now() - started) * 1000);
      }
      // Untimed: right after each admission, the cores the kernel lets this thread run on.
      const seen: [string, string][] = [];
      for (let i = 0; i < (event.verify ?? 0); i++) {
        const name = event.names[i % event.names.length];
        await context.microtask(name);
        seen.push([name, cpusAllowed()]);
      }
      return { micros, seen };
    }
    case 'upload': {
      // A map task's write alone: the same bytes in the same parts, 4 at once, nothing else running.
      const piece = Buffer.alloc(Math.ceil(event.bytes / event.pieces), 7);
      const started = performance.now();
      await inParallel(event.pieces, 4, (i) => put(event, `floor/${i}`, piece));
      return { ms: performance.now() - started };
    }
  }
}

/** Whether every record's key is at least the previous one's (the sort is checked, not trusted). */
function checkOrder(data: Buffer): boolean {
  for (let i = RECORD; i < data.length; i += RECORD) {
    if (data.compare(data, i - RECORD, i - RECORD + KEY, i, i + KEY) > 0) return false;
  }
  return true;
}
