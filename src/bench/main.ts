import { benchmarkList, runBenchmark } from './index.ts';

/** `npm run bench -- NAME [options]`: runs one benchmark (see ./index.ts). */
const [name, ...argv] = process.argv.slice(2);
if (!name || !(await runBenchmark(name, argv))) {
  console.error(`usage: npm run bench -- NAME [--json FILE]\n\nbenchmarks:\n${benchmarkList()}`);
  process.exitCode = name ? 2 : 0;
}
