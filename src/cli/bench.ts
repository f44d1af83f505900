import type { Command } from 'commander';
import { benchmarkList, runBenchmark } from '../bench/index.ts';

/** `petri bench NAME [options]`: the same benchmarks as `npm run bench -- NAME`. */
export function registerBenchCommand(program: Command): void {
  program
    .command('bench')
    .description('run a benchmark (invoke, cpu, net, workload); options after NAME go to it')
    .argument('[name]', 'benchmark name')
    .argument('[options...]', 'the benchmark options, e.g. --json out.json')
    .allowUnknownOption()
    .helpOption(false)
    .action(async (name: string | undefined, options: string[]) => {
      if (!name || !(await runBenchmark(name, options))) {
        process.stderr.write(
          `usage: petri bench NAME [options]\n\nbenchmarks:\n${benchmarkList()}\n`,
        );
        process.exitCode = name ? 2 : 0;
      }
    });
}
