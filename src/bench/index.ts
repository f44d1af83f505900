/**
 * Every benchmark: `npm run bench -- NAME [options]` or `petri bench NAME`.
 * Each module exports `run(argv)`, prints a table, and writes JSON with
 * `--json FILE`; speed figures are ratios against a baseline from the same run.
 */
export const BENCHMARKS: Record<
  string,
  { description: string; load: () => Promise<{ run(argv: string[]): Promise<void> }> }
> = {
  cpu: {
    description: "each memory size's measured CPU share against its cgroup quota",
    load: () => import('./cpu.ts'),
  },
  invoke: {
    description:
      'warm latency, throughput and cold start (namespace pool warm and drained) against a raw HTTP echo server and bare node to its first byte; --compare-node PATH|off',
    load: () => import('./invoke.ts'),
  },
  microtasks: {
    description:
      "the sort experiment (Talluri et al.): makespan, write and sort phases under the task and microtask schedulers; one transition's cost (root) [--reps N --plots DIR]",
    load: () => import('./microtasks.ts'),
  },
  neighbours: {
    description:
      "a neighbour's warm latency and the daemon's RSS during a log flood, a huge line and a huge result",
    load: () => import('./neighbours.ts'),
  },
  net: {
    description:
      'network isolation study: iperf3 and S3 bandwidth vs memory, N concurrent functions, cost map (root)',
    load: () => import('./net.ts'),
  },
  'start-paths': {
    description:
      'time to first response of cold, warm and paused instances (light and init-heavy handler), idle memory, paused CPU, cold vs bare node (root)',
    load: () => import('./start-paths.ts'),
  },
  policies: {
    description:
      'keep-alive policies: simulated vs live cold-start ratio per policy on a small trace, and a 10,000-function trace in the simulator',
    load: () => import('./policies.ts'),
  },
  workload: {
    description: 'In-Vitro sampler quality and speed, open-loop load generator rate and lateness',
    load: () => import('./workload.ts'),
  },
};

/** Runs benchmark `name`; returns false when there is no such benchmark. */
export async function runBenchmark(name: string, argv: string[]): Promise<boolean> {
  const bench = BENCHMARKS[name];
  if (!bench) return false;
  await (await bench.load()).run(argv);
  return true;
}

export function benchmarkList(): string {
  return Object.entries(BENCHMARKS)
    .map(([key, value]) => `  ${key.padEnd(10)} ${value.description}`)
    .join('\n');
}
