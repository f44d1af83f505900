/** The invoke verb: one synchronous or queued call of a function. */
import { readFile, writeFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { PetriError } from '../errors.ts';
import type { InvokeOutcome, InvokeTarget } from './client.ts';
import { formatDuration, formatJson } from './format.ts';
import { action, type CliIo, type Ctx } from './verb.ts';

interface InvokeOptions {
  data: string;
  async?: boolean;
  qualifier?: string;
  out?: string;
}

export function registerInvoke(program: Command, io: CliIo): void {
  program
    .command('invoke')
    .description('invoke a function and print its result (text and bytes as they are)')
    .argument('<name[:qualifier]>', 'function name, optionally :version or :alias')
    .option('--data <json|@file>', 'event JSON, or @path to read it from a file', '{}')
    .option('--qualifier <version|alias>', 'the version number or alias to invoke')
    .option('--out <file>', 'write the result body to <file> exactly as received')
    .option('--async', 'queue the invocation and print its id')
    .action(action(io, invoke));
}

async function invoke(ctx: Ctx<InvokeOptions>, qualified: string): Promise<void> {
  // Parse before contacting the node so a typo never becomes an invocation.
  const { name, target } = splitQualifier(qualified, ctx.opts.qualifier);
  const event = await readEvent(ctx.opts.data);
  const client = ctx.client();
  if (ctx.opts.async) {
    const queued = await client.invokeAsync(name, event, target);
    ctx.print(ctx.opts.json ? formatJson(queued) : queued.invocationId);
    return;
  }
  const outcome = await client.invoke(name, event, target);
  if (ctx.opts.out !== undefined) await writeResult(ctx.opts.out, outcome);
  if (ctx.opts.json) {
    ctx.print(formatJson(jsonOutcome(outcome, ctx.opts.out)));
    return;
  }
  if (ctx.opts.out === undefined) printResult(ctx, outcome);
  if (ctx.io.stderrIsTTY) {
    const version = outcome.version === undefined ? '' : `  version ${outcome.version}`;
    ctx.io.stderr(
      `start ${outcome.start ?? '-'}  ${formatDuration(outcome.durationMs)}${version}  invocation ${outcome.invocationId ?? '-'}\n`,
    );
  }
}

/**
 * `name:qualifier` or `--qualifier`: all digits is a version, anything else
 * an alias (alias names start with a letter), as Lambda's qualifiers.
 */
export function splitQualifier(
  qualified: string,
  option: string | undefined,
): { name: string; target: InvokeTarget } {
  const colon = qualified.indexOf(':');
  const name = colon < 0 ? qualified : qualified.slice(0, colon);
  const inName = colon < 0 ? undefined : qualified.slice(colon + 1);
  if (inName !== undefined && option !== undefined)
    throw new PetriError(
      'InvalidRequest',
      'give the qualifier once: name:qualifier or --qualifier',
    );
  const qualifier = inName ?? option;
  if (qualifier === undefined) return { name, target: {} };
  if (qualifier === '') throw new PetriError('InvalidRequest', `empty qualifier in "${qualified}"`);
  if (/^[0-9]+$/.test(qualifier)) return { name, target: { version: Number(qualifier) } };
  return { name, target: { alias: qualifier } };
}

/** Text as it came (no newline added to a pipe), bytes as they came, JSON pretty-printed. */
function printResult(ctx: Ctx<InvokeOptions>, outcome: InvokeOutcome): void {
  const { io } = ctx;
  if (outcome.kind === 'json') return ctx.print(formatJson(outcome.result));
  if (outcome.kind === 'text') {
    const text = outcome.bytes.toString('utf8');
    io.stdout(io.stdoutIsTTY && !text.endsWith('\n') ? `${text}\n` : text);
    return;
  }
  if (io.stdoutIsTTY) {
    throw new PetriError(
      'InvalidRequest',
      `the result is ${outcome.bytes.length} bytes of binary data: pass --out FILE, or pipe it`,
      { invocationId: outcome.invocationId },
    );
  }
  if (io.stdoutBytes) io.stdoutBytes(outcome.bytes);
  else io.stdout(outcome.bytes.toString('latin1'));
}

async function writeResult(file: string, outcome: InvokeOutcome): Promise<void> {
  try {
    await writeFile(file, outcome.bytes);
  } catch (err) {
    throw new PetriError('InvalidRequest', `cannot write ${file}: ${(err as Error).message}`);
  }
}

/** `--json`: text as a string, bytes as base64 (or where --out wrote them). */
function jsonOutcome(outcome: InvokeOutcome, out: string | undefined): Record<string, unknown> {
  const { bytes, result, kind, ...headers } = outcome;
  if (out !== undefined) return { ...headers, kind, out, bytes: bytes.length };
  if (kind === 'binary')
    return { ...headers, kind, result: bytes.toString('base64'), encoding: 'base64' };
  return kind === 'json' ? { ...headers, result } : { ...headers, kind, result };
}

async function readEvent(data: string): Promise<unknown> {
  let text = data;
  let from = '--data';
  if (data.startsWith('@')) {
    from = data.slice(1);
    try {
      text = await readFile(from, 'utf8');
    } catch (err) {
      throw new PetriError('InvalidRequest', `cannot read ${from}: ${(err as Error).message}`);
    }
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new PetriError('InvalidRequest', `${from} is not valid JSON: ${(err as Error).message}`);
  }
}
