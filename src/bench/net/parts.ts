import { parseIperfJson } from '../../net/index.ts';
import { BUCKET, IPERF_BASE_PORT, type LinkBytes, type NetEnv } from './env.ts';

/**
 * The four parts of the network-isolation study (Wang et al., "Network
 * Resource Isolation in Serverless Cloud Function Service"), each run
 * against one NetEnv (isolation on or off).
 */

export const MB_PER_VCPU = 1769;
export const MBIT_PER_VCPU = 600;
/** AWS Lambda x86 list price per GB-second (us-east-1). */
export const PRICE_PER_GB_S = 0.0000166667;
/** TCP goodput through TBF is ≈ 96 % of the configured rate (DESIGN §9). */
export const TBF_GOODPUT = 0.96;

/** Shaped bandwidth of a function with this memory, Mbit/s (DESIGN §9). */
export function allocationMbit(memoryMb: number): number {
  return (memoryMb / MB_PER_VCPU) * MBIT_PER_VCPU;
}

export interface Settings {
  seconds: number;
  omit: number;
  reps: number;
  objectBytes: number;
  objects: number;
  fetchConcurrency: number;
  log: (message: string) => void;
  /** Measurements that failed and were repeated (reported in the JSON). */
  retries: { what: string; error: string }[];
}

interface IperfReply {
  address?: string;
  startedAt: number;
  finishedAt: number;
  end?: unknown;
  error?: unknown;
}

function mbitOf(reply: IperfReply): number {
  return (
    parseIperfJson(JSON.stringify({ end: reply.end, error: reply.error })).receivedBitsPerSecond /
    1e6
  );
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/**
 * Runs one measurement, again (up to `attempts` times) when iperf3 fails: a
 * client occasionally exits without output under heavy contention.
 */
async function retry<T>(what: string, s: Settings, attempts: number, fn: () => Promise<T>) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (error) {
      if (attempt >= attempts) throw error;
      s.log(`  ${what} failed (${String(error).split('\n')[0]}); retrying`);
      s.retries.push({ what, error: String(error).slice(0, 300) });
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  }
}

const round = (value: number, digits = 3): number => Number(value.toFixed(digits));

function iperfSpec(memoryMb: number, s: Settings): Record<string, unknown> {
  return { memoryMb, timeoutMs: (s.seconds + s.omit + 60) * 1000 };
}

// ---------------------------------------------------------------- (a)

export interface BandwidthRow {
  memoryMb: number;
  allocationMbit: number;
  upMbit: number;
  downMbit: number;
  upSamples: number[];
  downSamples: number[];
  /** measured / allocation */
  upRatio: number;
  downRatio: number;
  /** measured / (0.96 × allocation): against what TBF can yield as goodput */
  upRatioGoodput: number;
  downRatioGoodput: number;
}

/** (a) One function per memory size runs iperf3 up and down against the gateway. */
export async function bandwidthVsMemory(
  env: NetEnv,
  sizes: number[],
  s: Settings,
): Promise<BandwidthRow[]> {
  const rows: BandwidthRow[] = [];
  for (const memoryMb of sizes) {
    const name = `iperf-${memoryMb}`;
    await env.deploy(name, 'iperf', iperfSpec(memoryMb, s));
    await env.invoke(name, { warmup: true });
    const up: number[] = [];
    const down: number[] = [];
    for (let rep = 0; rep < s.reps; rep++) {
      for (const reverse of [false, true]) {
        const event = { server: env.gateway, port: IPERF_BASE_PORT, seconds: s.seconds };
        const what = `${memoryMb} MB ${reverse ? 'download' : 'upload'}`;
        const mbit = await retry(what, s, 3, async () =>
          mbitOf(await env.invoke<IperfReply>(name, { ...event, omit: s.omit, reverse })),
        );
        (reverse ? down : up).push(mbit);
      }
    }
    await env.remove(name);
    const allocation = allocationMbit(memoryMb);
    const row: BandwidthRow = {
      memoryMb,
      allocationMbit: round(allocation, 1),
      upMbit: round(median(up), 1),
      downMbit: round(median(down), 1),
      upSamples: up.map((v) => round(v, 1)),
      downSamples: down.map((v) => round(v, 1)),
      upRatio: round(median(up) / allocation),
      downRatio: round(median(down) / allocation),
      upRatioGoodput: round(median(up) / (TBF_GOODPUT * allocation)),
      downRatioGoodput: round(median(down) / (TBF_GOODPUT * allocation)),
    };
    s.log(
      `  ${memoryMb} MB: up ${row.upMbit} down ${row.downMbit} Mbit/s (allocation ${row.allocationMbit})`,
    );
    rows.push(row);
  }
  return rows;
}

// ---------------------------------------------------------------- (b) and (d)

interface S3Reply {
  totalMs: number;
  timesMs: number[];
  bytes: number;
}

export interface S3Row {
  memoryMb: number;
  allocationMbit: number;
  downloadS: number;
  uploadS: number;
  downloadSamplesS: number[];
  uploadSamplesS: number[];
  /** Object bits / time, Mbit/s. */
  downloadMbit: number;
  uploadMbit: number;
}

export interface CostRow {
  memoryMb: number;
  /** Objects actually fetched. */
  objects: number;
  measuredS: number;
  /** Time for 100 objects (extrapolated linearly when fewer were fetched). */
  time100S: number;
  extrapolated: boolean;
  /** GB-seconds and dollars for the 100-object job. */
  gbSeconds: number;
  costUsd: number;
}

export interface S3Results {
  transfers: S3Row[];
  cost: CostRow[];
}

/** (b) one 10 MB object down and up through the S3 API; (d) the 100-object fetch job. */
export async function s3Parts(
  env: NetEnv,
  sizes: number[],
  s: Settings,
  parts: { transfers: boolean; cost: boolean },
): Promise<S3Results> {
  const transfers: S3Row[] = [];
  const cost: CostRow[] = [];
  const base = { endpoint: env.s3Endpoint, bucket: BUCKET };
  for (const memoryMb of sizes) {
    const name = `s3-${memoryMb}`;
    await env.deploy(name, 's3', { memoryMb, timeoutMs: 900_000 });
    // Loads the SDK and opens a connection, so the first timed request is warm.
    await env.invoke(name, { ...base, op: 'get', keys: ['tiny'] });
    const allocation = allocationMbit(memoryMb);
    if (parts.transfers) {
      const down: number[] = [];
      const up: number[] = [];
      for (let rep = 0; rep < s.reps; rep++) {
        const get = await env.invoke<S3Reply>(name, {
          ...base,
          op: 'get',
          keys: [`obj-${rep % s.objects}`],
        });
        down.push(get.totalMs / 1000);
        const put = await env.invoke<S3Reply>(name, {
          ...base,
          op: 'put',
          keys: [`up-${memoryMb}-${rep}`],
          size: s.objectBytes,
        });
        up.push(put.totalMs / 1000);
      }
      const bits = s.objectBytes * 8;
      const row: S3Row = {
        memoryMb,
        allocationMbit: round(allocation, 1),
        downloadS: round(median(down)),
        uploadS: round(median(up)),
        downloadSamplesS: down.map((v) => round(v)),
        uploadSamplesS: up.map((v) => round(v)),
        downloadMbit: round(bits / median(down) / 1e6, 1),
        uploadMbit: round(bits / median(up) / 1e6, 1),
      };
      s.log(`  ${memoryMb} MB: S3 get ${row.downloadS} s, put ${row.uploadS} s`);
      transfers.push(row);
    }
    if (parts.cost) {
      const keys = Array.from({ length: s.objects }, (_, i) => `obj-${i}`);
      const reply = await env.invoke<S3Reply>(name, {
        ...base,
        op: 'get',
        keys,
        concurrency: s.fetchConcurrency,
      });
      const measuredS = reply.totalMs / 1000;
      const time100S = (measuredS * 100) / s.objects;
      const gbSeconds = (time100S * memoryMb) / 1024;
      const row: CostRow = {
        memoryMb,
        objects: s.objects,
        measuredS: round(measuredS),
        time100S: round(time100S, 2),
        extrapolated: s.objects !== 100,
        gbSeconds: round(gbSeconds, 2),
        costUsd: Number((gbSeconds * PRICE_PER_GB_S).toPrecision(4)),
      };
      s.log(`  ${memoryMb} MB: ${s.objects} objects in ${row.measuredS} s`);
      cost.push(row);
    }
    await env.remove(name);
  }
  return { transfers, cost };
}

// ---------------------------------------------------------------- (c)

const sleepUntil = (at: number) =>
  new Promise((resolve) => setTimeout(resolve, Math.max(0, at - Date.now())));

/** Mbit/s on the wire through the link in one direction between two wall-clock times. */
async function sampleLink(
  counters: () => Promise<LinkBytes>,
  direction: 'up' | 'down',
  from: number,
  to: number,
): Promise<number | undefined> {
  if (to - from < 500) return undefined;
  await sleepUntil(from);
  const a = await counters();
  const t0 = performance.now();
  await sleepUntil(to);
  const b = await counters();
  const seconds = (performance.now() - t0) / 1000;
  return ((b[direction] - a[direction]) * 8) / seconds / 1e6;
}

export interface ConcurrencyRow {
  n: number;
  direction: 'up' | 'down';
  allocationMbit: number;
  perFunctionMbit: number[];
  meanMbit: number;
  minMbit: number;
  maxMbit: number;
  /** Sum of the N iperf3 goodputs (each averaged over its own run). */
  aggregateMbit: number;
  /**
   * What crossed the shared link in the window all runs were surely sending
   * (bytes on the wire, from the link TBF's counters); undefined without an
   * emulated link. A run whose SYN the full link dropped starts a second late
   * (TCP's initial RTO) and then has the link to itself after the others end,
   * so the sum of iperf3's averages can exceed what the link carried.
   */
  linkWireMbit?: number;
  /** min / allocation */
  minRatio: number;
  meanRatio: number;
  /** Spread of the iperf3 start times across the N instances, ms. */
  startSkewMs: number;
  distinctInstances: number;
}

/** (c) N concurrent 128 MB functions, each with its own iperf3 server, started together. */
export async function concurrency(
  env: NetEnv,
  counts: number[],
  memoryMb: number,
  s: Settings,
  linkCounters?: () => Promise<LinkBytes>,
): Promise<ConcurrencyRow[]> {
  const name = `iperf-conc-${memoryMb}`;
  const most = Math.max(...counts);
  await env.deploy(name, 'iperf', { ...iperfSpec(memoryMb, s), maxInstances: most });
  const allocation = allocationMbit(memoryMb);
  const rows: ConcurrencyRow[] = [];
  try {
    for (const n of counts) {
      // Hold n warm-ups busy together so n instances exist before the measurement.
      const holdUntil = Date.now() + 2000 + 200 * n;
      await Promise.all(
        Array.from({ length: n }, () => env.invoke(name, { warmup: true, startAt: holdUntil })),
      );
      for (const direction of ['up', 'down'] as const) {
        const measured = await retry(`N=${n} ${direction}`, s, 3, async () => {
          const startAt = Date.now() + 500 + 50 * n;
          // Sample the link over the middle of the runs, past the omitted start.
          const from = startAt + (s.omit + 0.5) * 1000;
          const to = startAt + (s.omit + s.seconds - 0.5) * 1000;
          const linkRate = linkCounters ? sampleLink(linkCounters, direction, from, to) : undefined;
          const replies = await Promise.all(
            Array.from({ length: n }, (_, i) =>
              env.invoke<IperfReply>(name, {
                server: env.gateway,
                port: IPERF_BASE_PORT + i,
                seconds: s.seconds,
                omit: s.omit,
                reverse: direction === 'down',
                startAt,
              }),
            ),
          );
          return { replies, mbit: replies.map(mbitOf), link: await linkRate };
        });
        const { replies, mbit, link } = measured;
        const starts = replies.map((r) => r.startedAt);
        const sum = mbit.reduce((a, b) => a + b, 0);
        const row: ConcurrencyRow = {
          n,
          direction,
          allocationMbit: round(allocation, 1),
          perFunctionMbit: mbit.map((v) => round(v, 1)),
          meanMbit: round(sum / n, 1),
          minMbit: round(Math.min(...mbit), 1),
          maxMbit: round(Math.max(...mbit), 1),
          aggregateMbit: round(sum, 1),
          linkWireMbit: link === undefined ? undefined : round(link, 1),
          minRatio: round(Math.min(...mbit) / allocation),
          meanRatio: round(sum / n / allocation),
          startSkewMs: Math.max(...starts) - Math.min(...starts),
          distinctInstances: new Set(replies.map((r) => r.address)).size,
        };
        s.log(
          `  N=${n} ${direction}: per function mean ${row.meanMbit} min ${row.minMbit}, aggregate ${row.aggregateMbit} Mbit/s`,
        );
        rows.push(row);
      }
    }
  } finally {
    await env.remove(name);
  }
  return rows;
}
