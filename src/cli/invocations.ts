/** The record verbs: logs, invocations, invocation. */
import type { Command } from 'commander';
import { errorText } from './error-text.ts';
import { ApiError, type InvocationView, type LogEntry } from './client.ts';
import {
  formatBytes,
  formatDuration,
  formatJson,
  formatMs,
  formatTime,
  keyValues,
  table,
  type Cell,
} from './format.ts';
import { action, FUNCTION_ARGUMENT, intOption, plainVerb, type CliIo, type Ctx } from './verb.ts';

// ---------------------------------------------------------------- logs

interface LogsOptions {
  invocation?: string;
  limit?: number;
  follow?: boolean;
}

export function registerLogs(program: Command, io: CliIo): void {
  program
    .command('logs')
    .description("print a function's stdout/stderr lines (oldest first)")
    .argument(...FUNCTION_ARGUMENT)
    .option('--invocation <id>', 'only lines of this invocation')
    .option('--limit <n>', 'at most this many lines', intOption(1))
    .option('-f, --follow', 'keep polling for new lines (every second)')
    .action(action(io, logs));
}

async function logs(ctx: Ctx<LogsOptions>, name: string): Promise<void> {
  const client = ctx.client();
  const query = { limit: ctx.opts.limit, invocation: ctx.opts.invocation };
  const first = await client.logs(name, query);
  if (!ctx.opts.follow) {
    if (ctx.opts.json) return ctx.print(formatJson(first));
    for (const entry of first.logs) ctx.print(logLine(entry));
    return;
  }
  await follow(ctx, name, first.logs);
}

/**
 * Polls with `since` = the newest `at` seen. Whether the node treats `since`
 * as inclusive is not pinned down, so lines at exactly that instant are
 * remembered and skipped if they come again. With --json, prints one JSON
 * entry per line (NDJSON) so a script can consume the stream.
 */
async function follow(ctx: Ctx<LogsOptions>, name: string, first: LogEntry[]): Promise<void> {
  const emit = (entry: LogEntry): void =>
    ctx.print(ctx.opts.json ? JSON.stringify(entry) : logLine(entry));
  let lastAt: number | undefined;
  let seenAtLast = new Set<string>();
  const take = (entries: LogEntry[]): void => {
    for (const entry of entries) {
      const key = logKey(entry);
      if (entry.at === lastAt && seenAtLast.has(key)) continue;
      if (lastAt === undefined || entry.at > lastAt) {
        lastAt = entry.at;
        seenAtLast = new Set();
      }
      seenAtLast.add(key);
      emit(entry);
    }
  };
  take(first);
  const signal = ctx.io.signal;
  while (!signal?.aborted) {
    await sleep(ctx.io.pollIntervalMs ?? 1000, signal);
    if (signal?.aborted) break;
    const next = await ctx.client().logs(name, { invocation: ctx.opts.invocation, since: lastAt });
    take(next.logs);
  }
}

function logKey(entry: LogEntry): string {
  return JSON.stringify([entry.at, entry.instanceId, entry.invocationId, entry.stream, entry.line]);
}

function logLine(entry: LogEntry): string {
  return `${formatTime(entry.at)} ${entry.stream.padEnd(6)} ${entry.invocationId ?? '-'} ${entry.line}`;
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((done) => {
    const timer = setTimeout(finish, ms);
    function finish(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', finish);
      done();
    }
    signal?.addEventListener('abort', finish, { once: true });
  });
}

// ---------------------------------------------------------------- invocations

interface InvocationsOptions {
  function?: string;
  limit?: number;
}

export function registerInvocationVerbs(program: Command, io: CliIo): void {
  program
    .command('invocations')
    .description('list recent invocations (newest first)')
    .option('--function <name>', 'only this function')
    .option('--limit <n>', 'at most this many', intOption(1))
    .action(action(io, invocations));
  const description = 'show one invocation: status, timings, resources, result or error';
  plainVerb(program, io, 'invocation', description, invocation, ['<id>', 'invocation id']);
}

async function invocations(ctx: Ctx<InvocationsOptions>): Promise<void> {
  const body = await ctx
    .client()
    .listInvocations({ function: ctx.opts.function, limit: ctx.opts.limit });
  if (ctx.opts.json) return ctx.print(formatJson(body));
  const rows = body.invocations.map((inv): Cell[] => [
    inv.id,
    inv.functionName,
    inv.status,
    inv.startPath,
    formatMs(inv.timings?.totalMs),
    formatMs(inv.resources?.cpuMs),
    formatBytes(inv.resources?.peakMemoryBytes),
    formatBytes(inv.resources?.netRxBytes),
    formatBytes(inv.resources?.netTxBytes),
    inv.error?.code,
  ]);
  const head = ['ID', 'FUNCTION', 'STATUS', 'START', 'TOTAL_MS', 'CPU_MS', 'PEAK_MEM'];
  ctx.print(table([...head, 'NET_IN', 'NET_OUT', 'ERROR'], rows));
}

async function invocation(ctx: Ctx<object>, id: string): Promise<void> {
  const inv = await ctx.client().getInvocation(id);
  ctx.print(ctx.opts.json ? formatJson(inv) : invocationText(inv));
}

function invocationText(inv: InvocationView): string {
  const t = inv.timings ?? { receivedAt: undefined };
  const r = inv.resources ?? {};
  const facts = keyValues([
    ['id', inv.id],
    ['function', `${inv.functionName} (version ${inv.version})`],
    ['mode', inv.mode],
    ['status', inv.status],
    ['start', inv.startPath],
    ['instance', inv.instanceId],
    ['received', formatTime(t.receivedAt)],
    ['queued', formatDuration(t.queuedMs)],
    ['init', formatDuration(t.initMs)],
    ['execution', formatDuration(t.executionMs)],
    ['total', formatDuration(t.totalMs)],
    ['cpu', formatDuration(r.cpuMs)],
    ['peak memory', formatBytes(r.peakMemoryBytes)],
    ['net in', formatBytes(r.netRxBytes)],
    ['net out', formatBytes(r.netTxBytes)],
  ]);
  const withPhases = facts + microtasksText(inv);
  if (inv.error) {
    const { code, message, details } = inv.error;
    return `${withPhases}\n\n${errorText(new ApiError(code, message, 0, details)).trimEnd()}`;
  }
  if (inv.status !== 'succeeded') return withPhases;
  // A node may keep no result (e.g. for async calls); say so rather than print "null".
  const result = inv.result === undefined ? '(not recorded by the node)' : formatJson(inv.result);
  return `${withPhases}\n\nresult:\n${result}`;
}

/** The phases an invocation announced, as a table (empty when it announced none). */
function microtasksText(inv: InvocationView): string {
  const phases = inv.microtasks ?? [];
  if (phases.length === 0) return '';
  const rows = phases.map((p): Cell[] => [
    p.name,
    p.class,
    formatMs(p.startMs),
    formatMs(p.durationMs),
    formatMs(p.waitedMs),
  ]);
  const dropped = inv.microtasksDropped
    ? `\n(${inv.microtasksDropped} more announcements past the per-invocation cap were not recorded)`
    : '';
  const head = ['MICROTASK', 'CLASS', 'START_MS', 'DURATION_MS', 'WAITED_MS'];
  return `\n\n${table(head, rows)}${dropped}`;
}
