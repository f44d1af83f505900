import { Command } from 'commander';

/** The root `petri` command with its global options, before any verb is added. */
export function rootCommand(env: NodeJS.ProcessEnv = process.env): Command {
  return new Command('petri')
    .description('Petri: a serverless platform and workbench for one Linux node')
    .option('--url <url>', 'node API URL (or PETRI_URL)', env.PETRI_URL || 'http://127.0.0.1:8080')
    .option('--json', 'print JSON for scripts instead of tables')
    .showHelpAfterError();
}
