import fs from 'node:fs';
import { parseNetDev } from '../../net/index.ts';
import { pidsIn } from './cpu.ts';

/**
 * Bytes received at one end of `bench net --f2f`, counted by the kernel at
 * that end's interfaces (every one but loopback: a member's eth0, the native
 * receiver's veths), read by the bench from outside, not reported by the
 * probe. The bench reads `/proc/<pid>/net/dev` of a process living in the
 * end's namespace (that file shows the process's namespace) every few ms while
 * a measurement runs, and later takes the bytes over the window every sender
 * shares: the rate of what arrived, not a sum of each sender's own average.
 *
 * What the counters count is what the kernel delivers: GRO/GSO packets of up
 * to 64 KB with one set of headers each, so the figure is the TCP payload
 * rate within ≈ 0.1 % (not the per-segment wire rate TBF accounts in; see
 * FRAME_PAYLOAD in ../f2f.ts).
 */

export interface RxSample {
  /** Epoch ms (sub-ms resolution), the clock the probes' `startedAt` is on. */
  at: number;
  bytes: number;
}

export interface RxTrace {
  /** Stops sampling (once; later calls only return them); the samples, in time order. */
  stop(): RxSample[];
}

const SAMPLE_EVERY_MS = 10;

function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

function rxBytesOf(pid: number): number | undefined {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/net/dev`, 'utf8');
  } catch {
    return undefined; // that process is gone
  }
  let sum = 0;
  for (const [name, counters] of parseNetDev(text)) {
    if (name !== 'lo' && Number.isFinite(counters.rxBytes)) sum += counters.rxBytes;
  }
  return sum;
}

/** Starts sampling the received bytes of `netns` (which must hold a long-lived process). */
export async function traceRx(netns: string): Promise<RxTrace> {
  const pids = (await pidsIn(netns)).sort((a, b) => a - b);
  if (pids.length === 0) throw new Error(`no process in namespace ${netns} to count through`);
  const samples: RxSample[] = [];
  const take = (): void => {
    for (const pid of pids) {
      const bytes = rxBytesOf(pid);
      if (bytes === undefined) continue;
      samples.push({ at: nowMs(), bytes });
      return;
    }
  };
  take();
  const timer = setInterval(take, SAMPLE_EVERY_MS);
  let stopped = false;
  return {
    stop() {
      if (!stopped) {
        clearInterval(timer);
        take();
        stopped = true;
      }
      return samples;
    },
  };
}

/** The byte count at `at`, linear between the samples around it; undefined outside them. */
export function bytesAt(samples: readonly RxSample[], at: number): number | undefined {
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1];
    const b = samples[i];
    if (at < a.at || at > b.at) continue;
    if (b.at === a.at) return b.bytes;
    return a.bytes + ((b.bytes - a.bytes) * (at - a.at)) / (b.at - a.at);
  }
  return undefined;
}

export interface Window {
  from: number;
  to: number;
}

/** The received rate over `window`, Mbit/s. */
export function rateOver(samples: readonly RxSample[], window: Window): number | undefined {
  const first = bytesAt(samples, window.from);
  const last = bytesAt(samples, window.to);
  if (first === undefined || last === undefined || window.to <= window.from) return undefined;
  return ((last - first) * 8) / ((window.to - window.from) * 1000);
}

/** iperf3's omitted first second, plus time for the clients' connects. */
const SETTLE_MS = 1000 + 200;
/** iperf3's end-of-test exchange after the last measured byte. */
const TAIL_MS = 100;
/** A shared window shorter than this gives no figure. */
export const MIN_WINDOW_MS = 300;

/**
 * The window every sender is past its omitted second and not yet done:
 * from the last start (+ the omit) to the first end. Undefined when the
 * senders overlap too little (a sender that started a whole run late).
 */
export function sharedWindow(
  runs: readonly { startedAt: number; endedAt: number }[],
): Window | undefined {
  const from = Math.max(...runs.map((r) => r.startedAt)) + SETTLE_MS;
  const to = Math.min(...runs.map((r) => r.endedAt)) - TAIL_MS;
  return to - from >= MIN_WINDOW_MS ? { from, to } : undefined;
}
