/** The root `petri` command, and the wiring of the client verbs onto it. */
import { Command, CommanderError } from 'commander';
import { registerDeploy, registerFunctionVerbs } from './functions.ts';
import { registerInvocationVerbs, registerLogs } from './invocations.ts';
import { registerInvoke } from './invoke.ts';
import { registerGroupVerbs } from './groups.ts';
import { registerServeCommand } from './serve.ts';
import { registerStatus } from './status.ts';
import { processIo, type CliIo } from './verb.ts';
import { registerVersionVerbs } from './versions.ts';

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
 * Verbs that speak the node API: serve, deploy, invoke, ls, get, rm,
 * versions, url, config, alias, logs, invocations, invocation, status (in
 * this order in `petri --help`).
 */
export function registerCoreCommands(program: Command, io: CliIo = processIo()): void {
  registerServeCommand(program);
  registerDeploy(program, io);
  registerInvoke(program, io);
  registerFunctionVerbs(program, io);
  registerVersionVerbs(program, io);
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
  const json = wantsJson(argv);
  const program = rootCommand(env)
    .exitOverride()
    .configureOutput({ writeOut: full.stdout, writeErr: json ? () => {} : full.stderr });
  registerCoreCommands(program, full);
  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (err) {
    if (!(err instanceof CommanderError)) throw err;
    if (json && err.exitCode !== 0) full.stdout(usageErrorJson(err));
    return err.exitCode;
  }
  return exitCode;
}

/** Whether the words ask for --json (before `--`, where options end). */
export function wantsJson(argv: string[]): boolean {
  const end = argv.indexOf('--');
  return (end < 0 ? argv : argv.slice(0, end)).includes('--json');
}

/**
 * A usage error (unknown option, missing argument, bad value) as `--json`
 * prints failures: one line of `{"error": {code, message}}` with the code
 * InvalidRequest, so scripts read every failure the same way.
 */
export function usageErrorJson(err: CommanderError): string {
  const message = err.message.replace(/^error: /, '');
  return `${JSON.stringify({ error: { code: 'InvalidRequest', message } })}\n`;
}
