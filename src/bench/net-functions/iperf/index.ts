import { execFile } from 'node:child_process';

/**
 * `petri bench net` function: runs an iperf3 client inside the instance, so
 * its traffic crosses the instance's (shaped or unshaped) veth, against a
 * server on the node side of the bridge. With `startAt` it waits until that
 * wall-clock time first, so N concurrent instances start together (the
 * benchmark and the instances share one clock: same machine).
 */
interface IperfEvent {
  warmup?: boolean;
  server: string;
  port: number;
  seconds: number;
  omit?: number;
  reverse?: boolean;
  startAt?: number;
}

function iperf(args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve) => {
    const options = { timeout: timeoutMs, maxBuffer: 32 << 20 };
    const started = Date.now();
    execFile('iperf3', args, options, (error, stdout, stderr) => {
      // iperf3 exits non-zero on failure but still prints its JSON with an `error` field.
      if (stdout.trim()) return resolve(stdout);
      const why = `${error?.message ?? 'no output'} (exit ${error?.code}, signal ${error?.signal}, after ${Date.now() - started} ms) ${stderr}`;
      resolve(JSON.stringify({ error: why }));
    });
  });
}

export async function handler(event: IperfEvent) {
  const wait = (event.startAt ?? 0) - Date.now();
  if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
  // A warm-up holds the instance until startAt, so N concurrent warm-ups make N instances.
  if (event.warmup) return { address: process.env.PETRI_ADDRESS };
  const startedAt = Date.now();
  const args = ['-c', event.server, '-p', String(event.port), '-t', String(event.seconds), '-J'];
  if (event.reverse) args.push('-R');
  if (event.omit) args.push('-O', String(event.omit));
  const text = await iperf(args, (event.seconds + (event.omit ?? 0) + 20) * 1000);
  const finishedAt = Date.now();
  let parsed: { end?: unknown; error?: unknown };
  try {
    parsed = JSON.parse(text) as typeof parsed;
  } catch {
    parsed = { error: `unparsable iperf3 output: ${text.slice(0, 200)}` };
  }
  // Only the summary: the per-interval records are not needed.
  const address = process.env.PETRI_ADDRESS;
  return { address, startedAt, finishedAt, end: parsed.end, error: parsed.error };
}
