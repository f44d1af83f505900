/**
 * `npm run bench -- NAME [options]`: runs one benchmark. Each benchmark module
 * exports `run(argv)`, prints a table, and writes JSON with `--json FILE`.
 */
const BENCHMARKS: Record<
  string,
  { description: string; load: () => Promise<{ run(argv: string[]): Promise<void> }> }
> = {
  cpu: {
    description: "each memory size's measured CPU share against its cgroup quota",
    load: () => import('./cpu.ts'),
  },
  invoke: {
    description:
      'warm latency, throughput and cold start against a raw HTTP echo server and bare node',
    load: () => import('./invoke.ts'),
  },
  net: {
    description:
      'network isolation study: iperf3 and S3 bandwidth vs memory, N concurrent functions, cost map (root)',
    load: () => import('./net.ts'),
  },
  workload: {
    description: 'In-Vitro sampler quality and speed, open-loop load generator rate and lateness',
    load: () => import('./workload.ts'),
  },
};

const [name, ...argv] = process.argv.slice(2);
const bench = name ? BENCHMARKS[name] : undefined;
if (!bench) {
  console.error(`usage: npm run bench -- NAME [--json FILE]\n\nbenchmarks:`);
  for (const [key, value] of Object.entries(BENCHMARKS))
    console.error(`  ${key.padEnd(10)} ${value.description}`);
  process.exit(name ? 2 : 0);
}
await (await bench.load()).run(argv);
