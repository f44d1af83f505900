import type { z } from 'zod';
import { rateOver, sharedWindow, traceRx } from './counter.ts';
import { IPERF_PORT, IperfAnswer, ask } from './probe.ts';

/**
 * Part (d): aggregate receive throughput at one member from N senders. The
 * N senders' iperf3 clients start together (at one wall-clock instant the
 * probes wait for), each towards its own iperf3 server at the receiver. The
 * aggregate is what the receiver's interfaces took in over the window all N
 * share (counter.ts), not the sum of each sender's own average: a sender
 * whose SYN was dropped starts a second late and, summed, would count its
 * tail alone on the link as if it had shared it.
 */

/** Where sender i (1-based) runs and what it sends to. */
export interface FanSender {
  /** Namespace the sender's control port is reached from. */
  netns: string;
  /** The sender's own address (its control port). */
  address: string;
  /** The receiver's address as this sender reaches it. */
  receiverAddress: string;
}

export interface FanSample {
  n: number;
  /** Received at the receiver's interfaces over the shared window, Mbit/s; NaN without a window. */
  aggregateMbit: number;
  /** The shared window, ms (0: the senders did not overlap enough). */
  windowMs: number;
  /** Sum of the senders' own iperf3 goodputs, each over its own run (the old figure, kept). */
  senderSumMbit: number;
  perSenderMbit: number[];
  /** Spread of the senders' iperf3 start times, ms. */
  startSkewMs: number;
}

export async function fanIn(
  senders: FanSender[],
  n: number,
  seconds: number,
  receiverNetns: string,
): Promise<FanSample> {
  if (n > senders.length) throw new Error(`only ${senders.length} senders`);
  const at = Date.now() + 1000 + 100 * n;
  const trace = await traceRx(receiverNetns);
  let answers: z.infer<typeof IperfAnswer>[];
  try {
    answers = await Promise.all(
      senders
        .slice(0, n)
        .map((sender, i) =>
          ask(
            sender.netns,
            sender.address,
            `iperf ${sender.receiverAddress} ${seconds} 0 ${IPERF_PORT + i + 1} ${at}`,
            IperfAnswer,
          ),
        ),
    );
  } catch (err) {
    trace.stop();
    throw err;
  }
  const samples = trace.stop();
  const mbit = answers.map((a) => a.mbit);
  const runs = answers.map((a) => ({ startedAt: a.startedAt ?? at, endedAt: a.endedAt ?? 0 }));
  const window = sharedWindow(runs);
  const received = window && rateOver(samples, window);
  const starts = runs.map((r) => r.startedAt);
  return {
    n,
    aggregateMbit: received ?? NaN,
    windowMs: window ? Math.round(window.to - window.from) : 0,
    senderSumMbit: mbit.reduce((a, b) => a + b, 0),
    perSenderMbit: mbit,
    startSkewMs: Math.max(...starts) - Math.min(...starts),
  };
}
