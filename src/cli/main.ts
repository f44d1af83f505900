import { CommanderError } from 'commander';
import { registerBenchCommand } from './bench.ts';
import { registerCoreCommands, rootCommand } from './program.ts';
import { registerWorkloadCommands } from './workload.ts';

/** The `petri` command: each verb group's module registers its verbs here. */
const program = rootCommand().exitOverride();
registerCoreCommands(program);
registerWorkloadCommands(program);
registerBenchCommand(program);
try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (!(err instanceof CommanderError)) throw err;
  // Help and version exit 0; usage errors exit 2, as for most Unix tools.
  process.exitCode = err.exitCode === 0 ? 0 : 2;
}
