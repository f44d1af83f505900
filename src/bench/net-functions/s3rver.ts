/**
 * Starts s3rver (a local S3 server) for `petri bench net` and seeds it.
 * Run inside the benchmark's test namespace (nsenter), bound to the Petri
 * bridge's gateway address:
 *
 *   node --import tsx s3rver.ts ADDRESS PORT DIR BUCKET OBJECTS SIZE
 *
 * Seeds `obj-0 … obj-(OBJECTS-1)` of SIZE bytes and a 1 KB `tiny`, then
 * prints `ready` and serves until SIGTERM.
 */
import { createRequire } from 'node:module';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';

interface S3rverServer {
  run(): Promise<{ port: number }>;
  close(): Promise<void>;
}
type S3rverClass = new (options: Record<string, unknown>) => S3rverServer;

const S3rver = createRequire(import.meta.url)('s3rver') as S3rverClass;
const [address, port, directory, bucket, objects, size] = process.argv.slice(2);

const server = new S3rver({
  address,
  port: Number(port),
  directory,
  silent: true,
  configureBuckets: [{ name: bucket }],
});
const bound = await server.run();
const client = new S3Client({
  endpoint: `http://${address}:${bound.port}`,
  region: 'us-east-1',
  forcePathStyle: true,
  credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
  requestChecksumCalculation: 'WHEN_REQUIRED',
  responseChecksumValidation: 'WHEN_REQUIRED',
});
const put = (key: string, body: Buffer) =>
  client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
await put('tiny', Buffer.alloc(1024, 'petri'));
const body = Buffer.alloc(Number(size), 'petri');
for (let i = 0; i < Number(objects); i++) await put(`obj-${i}`, body);
client.destroy();
console.log(`ready ${bound.port}`);

const stop = (): void => {
  void server.close().finally(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
