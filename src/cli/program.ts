/** The root `petri` command, and the wiring of the client verbs onto it. */
import { Command, CommanderError } from 'commander';
import { registerDeploy, registerFunctionVerbs } from './functions.ts';
import { registerInvocationVerbs, registerLogs } from './invocations.ts';
import { registerInvoke } from './invoke.ts';
import { registerGroupVerbs } from './groups.ts';
import { registerServeCommand } from './serve.ts';
import { registerStatus } from './status.ts';
import { processIo, type CliIo } from './verb.ts';

/** The root `petri` command with its global options, before any verb is added. */
export function rootCommand(env: NodeJS.ProcessEnv = process.env): Command {
  return new Command('petri')
    .description('Petri: a serverless platform and workbench for one Linux node')
    .option('--url <url>', 'node API URL (or PETRI_URL)', env.PETRI_URL || 'http://127.0.0.1:8080')
    .option(
      '--token <token>',
      'the node API token (or PETRI_TOKEN; default: read from $PETRI_STATE_DIR or ./.petri)',
      env.PETRI_TOKEN || undefined,
    )
    .option('--json', 'print JSON for scripts instead of tables')
    .showHelpAfterError();
}

/**
 * Verbs that speak the node API: serve, deploy, invoke, ls, get, rm, logs,
 * invocations, invocation, status (in this order in `petri --help`).
 */
export function registerCoreCommands(program: Command, io: CliIo = processIo()): void {
  registerServeCommand(program);
  registerDeploy(program, io);
  registerInvoke(program, io);
  registerFunctionVerbs(program, io);
  registerLogs(program, io);
  registerInvocationVerbs(program, io);
  registerStatus(program, io);
  registerGroupVerbs(program, io);
}

/**
 * Builds a program with the global options and the core verbs, runs it on
 * `argv` (the words after `petri`) and resolves to the exit code. For tests and
 * embedding; it never exits the process.
 *
 * @example const code = await runCli(['--url', url, 'ls'], { stdout: (t) => out.push(t) });
 */
export async function runCli(
  argv: string[],
  io: Partial<CliIo> = {},
  env: NodeJS.ProcessEnv = process.env,
): Promise<number> {
  let exitCode = 0;
  const full: CliIo = {
    stdout: () => {},
    stderr: () => {},
    stderrIsTTY: false,
    now: () => Date.now(),
    ...io,
    setExitCode: (code) => {
      exitCode = code;
      io.setExitCode?.(code);
    },
  };
  const program = rootCommand(env)
    .exitOverride()
    .configureOutput({ writeOut: full.stdout, writeErr: full.stderr });
  registerCoreCommands(program, full);
  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode;
    throw err;
  }
  return exitCode;
}
