import { Command } from 'commander';
import { registerCoreCommands } from './core.ts';
import { registerWorkloadCommands } from './workload.ts';

/** The `petri` command: one module per verb group registers its verbs here. */
export function buildProgram(): Command {
  const program = new Command('petri')
    .description('Petri: a serverless platform and workbench for one Linux node')
    .option(
      '--url <url>',
      'node API URL (or PETRI_URL)',
      process.env.PETRI_URL ?? 'http://127.0.0.1:8080',
    )
    .option('--json', 'print JSON for scripts instead of tables')
    .showHelpAfterError();
  registerCoreCommands(program);
  registerWorkloadCommands(program);
  return program;
}

await buildProgram().parseAsync(process.argv);
