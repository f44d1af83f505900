import os from 'node:os';
import { canMakeTestbed } from '../harness/index.ts';
import { table } from '../report/index.ts';
import { benchArgs, machineFacts, writeJson } from './common.ts';
import { writeNetCharts } from './net/charts.ts';
import { NetEnv, type Mode } from './net/env.ts';
import {
  MB_PER_VCPU,
  MBIT_PER_VCPU,
  PRICE_PER_GB_S,
  TBF_GOODPUT,
  bandwidthVsMemory,
  concurrency,
  s3Parts,
  type BandwidthRow,
  type ConcurrencyRow,
  type CostRow,
  type S3Row,
  type Settings,
} from './net/parts.ts';
import { evaluateTargets, type Targets } from './net/targets.ts';

/**
 * `npm run bench -- net`: reproduces "Network Resource Isolation in
 * Serverless Cloud Function Service" on this node, with Petri's bandwidth
 * isolation on and off (off = no shaping, as on AWS Lambda):
 *
 *  (a) iperf3 bandwidth up and down per memory size, from inside a function
 *      to a server on the node side of the bridge;
 *  (b) 10 MB S3 downloads and uploads (AWS SDK v3 against s3rver) per size;
 *  (c) N concurrent 128 MB functions: per-function and aggregate bandwidth,
 *      all sharing one emulated link (the node's NIC, `--link-mbit`);
 *  (d) time and cost (GB-s at Lambda's list price) of fetching 100 objects.
 */

const PARTS = ['a', 'b', 'c', 'd'] as const;
type Part = (typeof PARTS)[number];

export interface ModeResult {
  mode: Mode;
  isolation: string[];
  bandwidth?: BandwidthRow[];
  s3?: S3Row[];
  concurrency?: ConcurrencyRow[];
  cost?: CostRow[];
}

function progress(message: string): void {
  process.stderr.write(`[bench net] ${message}\n`);
}

function numbers(text: string, flag: string): number[] {
  const values = text.split(',').map((v) => Number(v.trim()));
  if (values.length === 0 || values.some((v) => !Number.isFinite(v) || v <= 0)) {
    throw new Error(`--${flag} takes a comma-separated list of positive numbers, got "${text}"`);
  }
  return values;
}

export async function run(argv: string[]): Promise<void> {
  // Boxer §7 (load adaptation) is its own benchmark (net/adapt.ts).
  if (argv.includes('--f2f') && argv.includes('--adapt')) {
    const { run: runAdapt } = await import('./net/adapt.ts');
    return runAdapt(argv.filter((arg) => arg !== '--f2f' && arg !== '--adapt'));
  }
  // Boxer's function-to-function figures are their own benchmark (f2f.ts).
  if (argv.includes('--f2f')) {
    const { run: runF2f } = await import('./f2f.ts');
    return runF2f(argv.filter((arg) => arg !== '--f2f'));
  }
  const args = benchArgs(argv, {
    parts: { type: 'string', default: 'a,b,c,d' },
    modes: { type: 'string', default: 'on,off' },
    sizes: { type: 'string', default: '128,256,512,1024,2048,3008' },
    concurrency: { type: 'string', default: '1,2,4,8,16,26' },
    'concurrency-memory': { type: 'string', default: '128' },
    'link-mbit': { type: 'string', default: '1000' },
    seconds: { type: 'string', default: '3' },
    omit: { type: 'string', default: '1' },
    reps: { type: 'string', default: '1' },
    's3-reps': { type: 'string', default: '3' },
    objects: { type: 'string', default: '10' },
    'object-mb': { type: 'string', default: '10' },
    'fetch-concurrency': { type: 'string', default: '1' },
    plots: { type: 'string' },
  });
  if (!canMakeTestbed()) {
    console.error(
      'bench net needs root (it makes network namespaces, a bridge and traffic shaping) and iproute2; run it as root.',
    );
    process.exit(1);
  }
  const parts = new Set(
    String(args.parts)
      .split(',')
      .map((p) => p.trim()),
  );
  for (const part of parts) {
    if (!PARTS.includes(part as Part)) throw new Error(`unknown part "${part}" (a, b, c, d)`);
  }
  const modes = String(args.modes)
    .split(',')
    .map((m) => m.trim()) as Mode[];
  if (modes.some((m) => m !== 'on' && m !== 'off')) throw new Error('--modes takes on,off');
  const sizes = numbers(String(args.sizes), 'sizes');
  const counts = numbers(String(args.concurrency), 'concurrency');
  const concurrencyMemory = Number(args['concurrency-memory']);
  const linkMbit = Number(args['link-mbit']);
  if (!(linkMbit >= 0)) throw new Error('--link-mbit takes a rate in Mbit/s (0: no emulated link)');
  const objects = Math.round(Number(args.objects));
  const settings: Settings = {
    seconds: Number(args.seconds),
    omit: Number(args.omit),
    reps: Number(args.reps),
    objectBytes: Math.round(Number(args['object-mb']) * 1024 * 1024),
    objects,
    fetchConcurrency: Number(args['fetch-concurrency']),
    log: progress,
    retries: [],
  };
  const s3Settings = { ...settings, reps: Number(args['s3-reps']) };
  const wantS3 = parts.has('b') || parts.has('d');

  const envs = new Set<NetEnv>();
  const onSignal = (signal: NodeJS.Signals): void => {
    progress(`${signal}: stopping servers and daemons, removing namespaces`);
    void Promise.all([...envs].map((env) => env.close())).finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  const started = performance.now();
  const results: ModeResult[] = [];
  try {
    for (const mode of modes) {
      const env = new NetEnv({
        mode,
        iperfServers: parts.has('c') ? Math.max(...counts) : 1,
        s3Objects: wantS3 ? Math.max(objects, s3Settings.reps) : 0,
        objectBytes: settings.objectBytes,
        log: progress,
      });
      envs.add(env);
      try {
        await env.start();
        const result: ModeResult = { mode, isolation: env.mechanisms };
        if (parts.has('a')) {
          progress(`isolation ${mode}: (a) iperf3 bandwidth vs memory`);
          result.bandwidth = await bandwidthVsMemory(env, sizes, settings);
        }
        if (parts.has('c')) {
          const link = linkMbit > 0 ? `, sharing an emulated ${linkMbit} Mbit/s link` : '';
          progress(`isolation ${mode}: (c) ${counts.join(', ')} concurrent functions${link}`);
          if (linkMbit > 0) await env.limitLink(linkMbit);
          try {
            const counters = linkMbit > 0 ? () => env.linkBytes() : undefined;
            result.concurrency = await concurrency(
              env,
              counts,
              concurrencyMemory,
              settings,
              counters,
            );
          } finally {
            if (linkMbit > 0) await env.unlimitLink();
          }
        }
        if (wantS3) {
          progress(
            `isolation ${mode}: ${parts.has('b') ? '(b) S3 transfers' : ''}
            ${parts.has('d') ? `(d) ${objects}-object fetch` : ''}`.replace(/\s+/g, ' '),
          );
          const s3 = await s3Parts(env, sizes, s3Settings, {
            transfers: parts.has('b'),
            cost: parts.has('d'),
          });
          if (parts.has('b')) result.s3 = s3.transfers;
          if (parts.has('d')) result.cost = s3.cost;
        }
        results.push(result);
      } finally {
        await env.close();
        envs.delete(env);
      }
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }

  const targets = evaluateTargets(results, concurrencyMemory, linkMbit);
  printTables(results, settings, s3Settings.reps, concurrencyMemory, targets);
  const elapsedS = Math.round((performance.now() - started) / 1000);
  progress(`done in ${elapsedS} s`);
  const data = {
    benchmark: 'net',
    paper: 'Network Resource Isolation in Serverless Cloud Function Service',
    machine: machineFacts(),
    network:
      'daemon in a test namespace; iperf3 and s3rver on the bridge gateway inside it (allow-listed for egress); clients inside function instances',
    rule: {
      allocationMbit: `memoryMb / ${MB_PER_VCPU} × ${MBIT_PER_VCPU}, both directions`,
      tbfGoodput: TBF_GOODPUT,
      modes: {
        on: 'default config: TBF on the host veth (download), ingress → IFB → TBF (upload)',
        off: 'isolation.shaping = off (CPU and memory limits stay), as on AWS Lambda',
      },
    },
    price: {
      usdPerGbSecond: PRICE_PER_GB_S,
      note: 'AWS Lambda x86 list price, duration only (request charge not included)',
    },
    settings: {
      parts: [...parts],
      modes,
      sizes,
      concurrency: counts,
      concurrencyMemoryMb: concurrencyMemory,
      linkMbit:
        linkMbit > 0
          ? `${linkMbit}: (c) shares one emulated link (TBF on the bridge, both directions), like a host NIC`
          : 'none: (c) is bounded only by the CPU',
      iperfSeconds: settings.seconds,
      iperfOmitSeconds: settings.omit,
      iperfReps: settings.reps,
      s3Reps: s3Settings.reps,
      objectBytes: settings.objectBytes,
      costObjects: objects,
      costExtrapolation:
        objects === 100
          ? 'none: 100 objects fetched'
          : `${objects} objects fetched one after another; the 100-object time is × ${100 / objects}`,
      fetchConcurrency: settings.fetchConcurrency,
    },
    elapsedS,
    retries: settings.retries,
    results,
    targets,
  };
  await writeJson(args.json as string | undefined, data);
  if (args.plots) {
    const files = await writeNetCharts(String(args.plots), results, sizes);
    for (const file of files) console.log(`wrote ${file}`);
  }
}

function yes(met: boolean | undefined): string {
  return met === undefined ? 'n/a' : met ? 'met' : 'NOT met';
}

function printTables(
  results: ModeResult[],
  s: Settings,
  s3Reps: number,
  concurrencyMemory: number,
  targets: Targets,
): void {
  const cores = os.availableParallelism();
  const byMode = (mode: Mode) => results.find((r) => r.mode === mode);
  const on = byMode('on');
  const off = byMode('off');
  const bandwidth = on?.bandwidth ?? off?.bandwidth;
  if (bandwidth) {
    const rows = bandwidth.map((row, i) => {
      const a = on?.bandwidth?.[i];
      const b = off?.bandwidth?.[i];
      return [
        row.memoryMb,
        row.allocationMbit,
        a?.upMbit,
        a?.downMbit,
        a ? `${a.upRatio} / ${a.downRatio}` : undefined,
        a ? `${a.upRatioGoodput} / ${a.downRatioGoodput}` : undefined,
        b?.upMbit,
        b?.downMbit,
      ];
    });
    console.log(
      table(
        [
          'memory MB',
          'allocation Mbit/s',
          'on: up',
          'on: down',
          'on: ratio up/down',
          'ratio vs 0.96×alloc',
          'off: up',
          'off: down',
        ],
        rows,
        {
          title: `(a) iperf3 bandwidth vs memory · ${s.seconds} s (+${s.omit} s omitted) × ${s.reps} · ${cores} cores · target: on within 10 % of allocation — ${yes(targets.bandwidthWithin10pct)}`,
        },
      ),
    );
  }
  const s3 = on?.s3 ?? off?.s3;
  if (s3) {
    const rows = s3.map((row, i) => {
      const a = on?.s3?.[i];
      const b = off?.s3?.[i];
      return [
        row.memoryMb,
        row.allocationMbit,
        a?.downloadS,
        a?.uploadS,
        a ? `${a.downloadMbit} / ${a.uploadMbit}` : undefined,
        b?.downloadS,
        b?.uploadS,
        b ? `${b.downloadMbit} / ${b.uploadMbit}` : undefined,
      ];
    });
    console.log(
      table(
        [
          'memory MB',
          'allocation Mbit/s',
          'on: get s',
          'on: put s',
          'on: Mbit/s get/put',
          'off: get s',
          'off: put s',
          'off: Mbit/s get/put',
        ],
        rows,
        {
          title: `(b) ${s.objectBytes / 2 ** 20} MB object through the S3 API (SDK v3 → s3rver), median of ${s3Reps}`,
        },
      ),
    );
  }
  const conc = on?.concurrency ?? off?.concurrency;
  if (conc) {
    const rows = conc.map((row, i) => {
      const a = on?.concurrency?.[i];
      const b = off?.concurrency?.[i];
      return [
        row.n,
        row.direction,
        row.allocationMbit,
        a ? `${a.meanMbit} / ${a.minMbit}` : undefined,
        a?.minRatio,
        a?.aggregateMbit,
        b ? `${b.meanMbit} / ${b.minMbit}` : undefined,
        b?.aggregateMbit,
        [a?.linkWireMbit, b?.linkWireMbit].map((v) => v ?? '–').join(' / '),
        [a?.startSkewMs, b?.startSkewMs].filter((v) => v !== undefined).join(' / '),
      ];
    });
    console.log(
      table(
        [
          'N',
          'dir',
          'allocation',
          'on: mean / min',
          'on: min/alloc',
          'on: aggregate',
          'off: mean / min',
          'off: aggregate',
          'link wire on / off',
          'start skew ms',
        ],
        rows,
        {
          title: `(c) N concurrent ${concurrencyMemory} MB functions, Mbit/s · targets: on keeps ≥ 90 % while allocations fit the link (${targets.linkMbit ? `link ${Math.round(targets.linkMbit)} Mbit/s${targets.linkEmulated ? ' emulated' : ' measured'}` : 'link unknown'}) — ${yes(targets.concurrencyOnKeeps90pct)}; off: share falls ~1/N, aggregate flat — ${yes(targets.concurrencyOffPattern)}`,
        },
      ),
    );
  }
  const cost = on?.cost ?? off?.cost;
  if (cost) {
    const rows = cost.map((row, i) => {
      const a = on?.cost?.[i];
      const b = off?.cost?.[i];
      return [
        row.memoryMb,
        a?.measuredS,
        a?.time100S,
        a?.gbSeconds,
        a ? `$${a.costUsd}` : undefined,
        b?.measuredS,
        b?.time100S,
        b?.gbSeconds,
        b ? `$${b.costUsd}` : undefined,
      ];
    });
    const n = cost[0].objects;
    console.log(
      table(
        [
          'memory MB',
          `on: ${n} obj s`,
          'on: 100 obj s',
          'on: GB-s',
          'on: cost',
          `off: ${n} obj s`,
          'off: 100 obj s',
          'off: GB-s',
          'off: cost',
        ],
        rows,
        {
          title: `(d) fetching 100 × ${s.objectBytes / 2 ** 20} MB objects: time and cost at $${PRICE_PER_GB_S}/GB-s (Lambda x86 list price)${n === 100 ? '' : ` · ${n} objects fetched, 100-object figures extrapolated linearly`}`,
        },
      ),
    );
  }
}
