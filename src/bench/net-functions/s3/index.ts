import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';

/**
 * `petri bench net` function: downloads or uploads objects through the S3
 * API (AWS SDK v3) from/to a local S3 server on the bridge, timing each one.
 * Bodies are streamed and counted, never kept, so 128 MB instances fit.
 */
interface S3Event {
  endpoint: string;
  bucket: string;
  op: 'get' | 'put';
  keys: string[];
  /** Bytes per uploaded object. */
  size?: number;
  /** Objects in flight at once (default 1: one after another). */
  concurrency?: number;
}

let client: S3Client | undefined;
let clientEndpoint = '';

function s3(endpoint: string): S3Client {
  if (!client || clientEndpoint !== endpoint) {
    client = new S3Client({
      endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
      // s3rver predates the SDK's default CRC32 checksums.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
    clientEndpoint = endpoint;
  }
  return client;
}

async function getOne(c: S3Client, bucket: string, key: string): Promise<number> {
  const response = await c.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  let bytes = 0;
  for await (const chunk of response.Body as AsyncIterable<Uint8Array>) bytes += chunk.length;
  return bytes;
}

async function putOne(c: S3Client, bucket: string, key: string, body: Buffer): Promise<number> {
  await c.send(
    new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ContentLength: body.length }),
  );
  return body.length;
}

export async function handler(event: S3Event) {
  const c = s3(event.endpoint);
  const body = event.op === 'put' ? Buffer.alloc(event.size ?? 0, 'petri') : Buffer.alloc(0);
  const timesMs: number[] = new Array<number>(event.keys.length);
  let bytes = 0;
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < event.keys.length) {
      const index = next++;
      const key = event.keys[index];
      const started = performance.now();
      bytes +=
        event.op === 'get'
          ? await getOne(c, event.bucket, key)
          : await putOne(c, event.bucket, key, body);
      timesMs[index] = performance.now() - started;
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: Math.max(1, event.concurrency ?? 1) }, worker));
  return { totalMs: performance.now() - started, timesMs, bytes };
}
