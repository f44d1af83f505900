import { CommanderError } from 'commander';
import { registerBenchCommand } from './bench.ts';
import { registerCoreCommands, rootCommand, usageErrorJson, wantsJson } from './program.ts';
import { registerWorkloadCommands } from './workload.ts';

/** The `petri` command: each verb group's module registers its verbs here. */
const json = wantsJson(process.argv.slice(2));
const program = rootCommand().exitOverride();
// Under --json a usage error is one JSON line on stdout, not commander's text.
if (json) program.configureOutput({ writeErr: () => {} });
registerCoreCommands(program);
registerWorkloadCommands(program);
registerBenchCommand(program);
try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (!(err instanceof CommanderError)) throw err;
  if (json && err.exitCode !== 0) process.stdout.write(usageErrorJson(err));
  // Help and version exit 0; usage errors exit 2, as for most Unix tools.
  process.exitCode = err.exitCode === 0 ? 0 : 2;
}
