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
  /** Seconds between iperf3's interval reports (-i). */
  interval?: number;
}

interface Interval {
  sum?: { start: number; end: number; bytes: number; omitted?: boolean };
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
  // Upload: the receiver is the server; its intervals count what arrived, not what was written.
  args.push(event.reverse ? '-R' : '--get-server-output');
  if (event.omit) args.push('-O', String(event.omit));
  if (event.interval) args.push('-i', String(event.interval));
  const text = await iperf(args, (event.seconds + (event.omit ?? 0) + 20) * 1000);
  const finishedAt = Date.now();
  let parsed: {
    end?: unknown;
    error?: unknown;
    intervals?: Interval[];
    server_output_json?: { intervals?: Interval[] };
  };
  try {
    parsed = JSON.parse(text) as typeof parsed;
  } catch {
    parsed = { error: `unparsable iperf3 output: ${text.slice(0, 200)}` };
  }
  // The summary, and per receiver interval only [start, end, bytes] (seconds from the
  // test's start; the test ended just before iperf3 exited at finishedAt).
  const intervals = (parsed.server_output_json?.intervals ?? parsed.intervals ?? [])
    .map((i) => i.sum)
    .filter((sum) => sum && !sum.omitted)
    .map((sum) => [sum!.start, sum!.end, sum!.bytes]);
  const address = process.env.PETRI_ADDRESS;
  return { address, startedAt, finishedAt, end: parsed.end, error: parsed.error, intervals };
}
