/**
 * What every client verb shares: where output goes (CliIo), the action
 * wrapper that hands a verb its options and client and reports its failure,
 * and option parsers.
 *
 * All output goes through a CliIo so tests can run verbs in-process with
 * `runCli(argv, io)` instead of spawning a process per case.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import { PetriClient } from './client.ts';
import { errorText, failureJson } from './error-text.ts';

/** Where the verbs write, and the knobs tests need. */
export interface CliIo {
  stdout(text: string): void;
  stderr(text: string): void;
  /** invoke prints its start path and timing on stderr only for people, not for pipes. */
  stderrIsTTY: boolean;
  /** Raw bytes to stdout (a binary result); unset: written as latin1 text through `stdout`. */
  stdoutBytes?(data: Uint8Array): void;
  /** invoke writes a binary result to a terminal only with --out (unset: not a terminal). */
  stdoutIsTTY?: boolean;
  /** Verbs never call process.exit; they report failure here. */
  setExitCode(code: number): void;
  /** Ends `logs --follow`; the real CLI leaves it unset and stops on Ctrl-C. */
  signal?: AbortSignal;
  /** `logs --follow` poll period (1 s by default). */
  pollIntervalMs?: number;
  now(): number;
}

/** The process' own streams and exit code. */
export function processIo(): CliIo {
  return {
    stdout: (text) => void process.stdout.write(text),
    stderr: (text) => void process.stderr.write(text),
    stderrIsTTY: process.stderr.isTTY === true,
    stdoutBytes: (data) => void process.stdout.write(data),
    stdoutIsTTY: process.stdout.isTTY === true,
    setExitCode: (code) => {
      process.exitCode = code;
    },
    now: () => Date.now(),
  };
}

/** Options every verb sees: the program's globals (see program.ts). */
interface GlobalOptions {
  url: string;
  token?: string;
  json?: boolean;
}

/**
 * The token the CLI sends: `--token`/`PETRI_TOKEN`, else the one a node on
 * this machine wrote in its state dir (`$PETRI_STATE_DIR`, default ./.petri),
 * when this user may read it. None: the node answers Unauthorized.
 */
export function cliToken(
  explicit: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): string | undefined {
  if (explicit) return explicit;
  const dir = env.PETRI_STATE_DIR || '.petri';
  try {
    return readFileSync(join(dir, 'api-token'), 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

/** What each verb handler gets: its options (with globals), output and a client. */
export interface Ctx<O> {
  io: CliIo;
  opts: O & GlobalOptions;
  client(): PetriClient;
  print(text: string): void;
}

/**
 * Wraps a verb: hands it its context and turns any failure into exit code 1
 * with the failure reported as reportFailure does.
 */
export function action<O, A extends string[]>(
  io: CliIo,
  handler: (ctx: Ctx<O>, ...args: A) => Promise<void>,
): (...raw: unknown[]) => Promise<void> {
  return async (...raw) => {
    // Commander passes the positional arguments, then the options, then the command.
    const cmd = raw[raw.length - 1] as Command;
    const args = raw.slice(0, -2) as A;
    const opts = cmd.optsWithGlobals<O & GlobalOptions>();
    let client: PetriClient | undefined;
    const ctx: Ctx<O> = {
      io,
      opts,
      client: () => (client ??= new PetriClient(opts.url, cliToken(opts.token))),
      print: (text) => io.stdout(text.endsWith('\n') ? text : `${text}\n`),
    };
    try {
      await handler(ctx, ...args);
    } catch (err) {
      reportFailure(io, err, opts.json === true);
    }
  };
}

/**
 * Exit code 1, and the failure as "Error <Code>: <message>" on stderr, or
 * under --json as `{"error": {...}}` on stdout. The JSON is one line so it
 * also ends an NDJSON stream (`logs --follow --json`) as one more record.
 */
export function reportFailure(io: CliIo, err: unknown, json: boolean): void {
  if (json) io.stdout(`${JSON.stringify(failureJson(err))}\n`);
  else io.stderr(errorText(err));
  io.setExitCode(1);
}

/** The positional argument of the verbs that act on one function. */
export const FUNCTION_ARGUMENT: [string, string] = ['<name>', 'function name'];

/** Adds a verb with no options of its own and at most one positional argument. */
export function plainVerb(
  program: Command,
  io: CliIo,
  name: string,
  description: string,
  handler: (ctx: Ctx<object>, arg: string) => Promise<void>,
  argument?: [string, string],
): void {
  const cmd = program.command(name).description(description);
  if (argument) cmd.argument(...argument);
  cmd.action(action(io, handler));
}

export function intOption(min: number): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min) {
      throw new InvalidArgumentError(`must be an integer >= ${min}`);
    }
    return n;
  };
}
