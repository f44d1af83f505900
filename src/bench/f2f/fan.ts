import { IPERF_PORT, IperfAnswer, ask } from './probe.ts';

/**
 * Part (d): aggregate receive throughput at one member from N senders. The
 * N senders' iperf3 clients start together (at one wall-clock instant the
 * probes wait for), each towards its own iperf3 server at the receiver; the
 * aggregate is the sum of their goodputs (each past iperf3's omitted first
 * second).
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
  aggregateMbit: number;
  perSenderMbit: number[];
  /** Spread of the senders' iperf3 start times, ms. */
  startSkewMs: number;
}

export async function fanIn(senders: FanSender[], n: number, seconds: number): Promise<FanSample> {
  if (n > senders.length) throw new Error(`only ${senders.length} senders`);
  const at = Date.now() + 1000 + 100 * n;
  const answers = await Promise.all(
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
  const mbit = answers.map((a) => a.mbit);
  const starts = answers.map((a) => a.startedAt ?? at);
  return {
    n,
    aggregateMbit: mbit.reduce((a, b) => a + b, 0),
    perSenderMbit: mbit,
    startSkewMs: Math.max(...starts) - Math.min(...starts),
  };
}
