/** The invoke verb: one synchronous or queued call of a function. */
import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { PetriError } from '../errors.ts';
import { formatDuration, formatJson } from './format.ts';
import { action, FUNCTION_ARGUMENT, type CliIo, type Ctx } from './verb.ts';

interface InvokeOptions {
  data: string;
  async?: boolean;
}

export function registerInvoke(program: Command, io: CliIo): void {
  program
    .command('invoke')
    .description('invoke a function and print its result')
    .argument(...FUNCTION_ARGUMENT)
    .option('--data <json|@file>', 'event JSON, or @path to read it from a file', '{}')
    .option('--async', 'queue the invocation and print its id')
    .action(action(io, invoke));
}

async function invoke(ctx: Ctx<InvokeOptions>, name: string): Promise<void> {
  // Parse before contacting the node so a typo never becomes an invocation.
  const event = await readEvent(ctx.opts.data);
  const client = ctx.client();
  if (ctx.opts.async) {
    const queued = await client.invokeAsync(name, event);
    ctx.print(ctx.opts.json ? formatJson(queued) : queued.invocationId);
    return;
  }
  const outcome = await client.invoke(name, event);
  if (ctx.opts.json) {
    ctx.print(formatJson(outcome));
    return;
  }
  ctx.print(formatJson(outcome.result));
  if (ctx.io.stderrIsTTY) {
    ctx.io.stderr(
      `start ${outcome.start ?? '-'}  ${formatDuration(outcome.durationMs)}  invocation ${outcome.invocationId ?? '-'}\n`,
    );
  }
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
