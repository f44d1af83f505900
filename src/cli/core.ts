/**
 * The client verbs of `petri` (deploy, invoke, ls, get, rm, logs, invocations,
 * invocation, status). They speak only the node's HTTP API through
 * PetriClient; `serve` lives in ./serve.ts.
 *
 * All output goes through a CliIo so tests can run verbs in-process with
 * `runCli(argv, io)` instead of spawning a process per case.
 */
import { readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { PetriError } from '../errors.ts';
import { archiveFolder } from './archive.ts';
import { errorText } from './error-text.ts';
import {
  ApiError,
  isRecord,
  PetriClient,
  type FunctionView,
  type InstanceCounts,
  type InvocationView,
  type LogEntry,
  type NodeView,
} from './client.ts';
import {
  formatAge,
  formatBytes,
  formatDuration,
  formatJson,
  formatMs,
  formatTime,
  keyValues,
  table,
  type Cell,
} from './format.ts';
import { rootCommand } from './program.ts';
import { registerServeCommand } from './serve.ts';

/** Where the verbs write, and the knobs tests need. */
export interface CliIo {
  stdout(text: string): void;
  stderr(text: string): void;
  /** invoke prints its start path and timing on stderr only for people, not for pipes. */
  stderrIsTTY: boolean;
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
    setExitCode: (code) => {
      process.exitCode = code;
    },
    now: () => Date.now(),
  };
}

/** Options every verb sees: the program's globals (see main.ts). */
interface GlobalOptions {
  url: string;
  json?: boolean;
}

/** What each verb handler gets: its options (with globals), output and a client. */
interface Ctx<O> {
  io: CliIo;
  opts: O & GlobalOptions;
  client(): PetriClient;
  print(text: string): void;
}

/** Verbs that speak the node API: serve, deploy, invoke, ls, get, rm, logs, invocations, status. */
export function registerCoreCommands(program: Command, io: CliIo = processIo()): void {
  registerServeCommand(program);
  registerDeploy(program, io);
  registerInvoke(program, io);
  registerFunctionVerbs(program, io);
  registerLogs(program, io);
  registerInvocationVerbs(program, io);
  registerStatus(program, io);
}

/**
 * Builds a program with main.ts' global options and the core verbs, runs it on
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

// ---------------------------------------------------------------- plumbing

/**
 * Wraps a verb: hands it its context and turns any failure into
 * "Error <Code>: <message>" on stderr and exit code 1.
 */
function action<O, A extends string[]>(
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
      client: () => (client ??= new PetriClient(opts.url)),
      print: (text) => io.stdout(text.endsWith('\n') ? text : `${text}\n`),
    };
    try {
      await handler(ctx, ...args);
    } catch (err) {
      io.stderr(errorText(err));
      io.setExitCode(1);
    }
  };
}

function intOption(min: number): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min) {
      throw new InvalidArgumentError(`must be an integer >= ${min}`);
    }
    return n;
  };
}

function collectEnv(value: string, previous: Record<string, string> = {}): Record<string, string> {
  const eq = value.indexOf('=');
  if (eq <= 0) throw new InvalidArgumentError('must look like KEY=VALUE');
  return { ...previous, [value.slice(0, eq)]: value.slice(eq + 1) };
}

function instancesText(counts: InstanceCounts | undefined): string {
  if (!counts) return '-';
  return `idle ${counts.idle}, busy ${counts.busy}, starting ${counts.starting}, stopping ${counts.stopping}`;
}

// ---------------------------------------------------------------- deploy

interface DeployOptions {
  name?: string;
  runtime?: string;
  handler?: string;
  memory?: number;
  timeout?: number;
  concurrency?: number;
  maxInstances?: number;
  env?: Record<string, string>;
  keepAlive?: number;
  egress?: boolean;
  archive?: boolean;
}

function registerDeploy(program: Command, io: CliIo): void {
  program
    .command('deploy')
    .description('deploy the function in <dir> (its petri.json; flags override it)')
    .argument('<dir>', 'function folder holding petri.json')
    .option('--name <name>', 'function name')
    .option('--runtime <runtime>', 'node, exec or http')
    .option('--handler <handler>', 'file.export, e.g. index.handler')
    .option('--memory <mb>', 'memory in MB (sizes CPU and network too)', intOption(1))
    .option('--timeout <ms>', 'invocation timeout in ms', intOption(1))
    .option('--concurrency <n>', 'concurrent invocations per instance', intOption(1))
    .option('--max-instances <n>', 'instance cap', intOption(1))
    .option('--env <KEY=VALUE>', 'environment variable (repeatable)', collectEnv)
    .option('--keep-alive <ms>', 'keep idle instances this long', intOption(0))
    .option('--egress', 'allow network egress beyond the node')
    .option('--archive', 'send a tar.gz of <dir> even to a local node')
    .action(action(io, deploy));
}

async function deploy(ctx: Ctx<DeployOptions>, dir: string): Promise<void> {
  const spec = applyOverrides(await readSpecFile(dir), ctx.opts);
  const name = spec.name;
  if (typeof name !== 'string' || name === '') {
    throw new PetriError(
      'InvalidSpec',
      `no function name: set "name" in petri.json or pass --name`,
    );
  }
  const client = ctx.client();
  // A node on this machine reads the folder itself; anything else needs the bytes.
  const source =
    client.isLocal() && !ctx.opts.archive
      ? { path: resolve(dir) }
      : { archive: await archiveFolder(resolve(dir)) };
  const fn = await client.deploy(name, { ...spec, source });
  ctx.print(ctx.opts.json ? formatJson(fn) : `deployed ${fn.name} version ${fn.version}`);
}

/** `<dir>/petri.json` as an object; the node validates the fields. */
async function readSpecFile(dir: string): Promise<Record<string, unknown>> {
  const info = await stat(dir).catch(() => undefined);
  if (!info?.isDirectory()) throw new PetriError('InvalidRequest', `${dir} is not a folder`);
  const file = join(dir, 'petri.json');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    throw new PetriError('InvalidSpec', `no petri.json in ${dir}`);
  }
  let spec: unknown;
  try {
    spec = JSON.parse(text);
  } catch (err) {
    throw new PetriError('InvalidSpec', `${file} is not valid JSON: ${(err as Error).message}`);
  }
  if (!isRecord(spec)) throw new PetriError('InvalidSpec', `${file} must hold a JSON object`);
  return spec;
}

/** Flags win over petri.json; nested objects (env, keepAlive, network) are merged, not replaced. */
function applyOverrides(
  spec: Record<string, unknown>,
  opts: DeployOptions,
): Record<string, unknown> {
  const out = { ...spec };
  if (opts.name !== undefined) out.name = opts.name;
  if (opts.runtime !== undefined) out.runtime = opts.runtime;
  if (opts.handler !== undefined) out.handler = opts.handler;
  if (opts.memory !== undefined) out.memoryMb = opts.memory;
  if (opts.timeout !== undefined) out.timeoutMs = opts.timeout;
  if (opts.concurrency !== undefined) out.concurrency = opts.concurrency;
  if (opts.maxInstances !== undefined) out.maxInstances = opts.maxInstances;
  if (opts.env !== undefined) out.env = { ...asRecord(spec.env), ...opts.env };
  if (opts.keepAlive !== undefined) {
    out.keepAlive = { ...asRecord(spec.keepAlive), ms: opts.keepAlive };
  }
  if (opts.egress) out.network = { ...asRecord(spec.network), egress: true };
  return out;
}

function asRecord(value: unknown): Record<string, unknown> {
  return isRecord(value) ? value : {};
}

// ---------------------------------------------------------------- invoke

interface InvokeOptions {
  data: string;
  async?: boolean;
}

function registerInvoke(program: Command, io: CliIo): void {
  program
    .command('invoke')
    .description('invoke a function and print its result')
    .argument('<name>', 'function name')
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

// ---------------------------------------------------------------- ls, get, rm

function registerFunctionVerbs(program: Command, io: CliIo): void {
  program.command('ls').description('list deployed functions').action(action(io, list));
  program
    .command('get')
    .description("show one function's spec and instances")
    .argument('<name>', 'function name')
    .action(action(io, get));
  program
    .command('rm')
    .description('drain and remove a function')
    .argument('<name>', 'function name')
    .action(action(io, remove));
}

async function list(ctx: Ctx<object>): Promise<void> {
  const body = await ctx.client().listFunctions();
  if (ctx.opts.json) return ctx.print(formatJson(body));
  const now = ctx.io.now();
  const rows = [...body.functions]
    .sort((a, b) => a.name.localeCompare(b.name))
    .map((fn): Cell[] => [
      fn.name,
      fn.version,
      fn.spec?.runtime,
      fn.spec?.memoryMb === undefined ? undefined : `${fn.spec.memoryMb} MB`,
      fn.instances?.idle,
      fn.instances?.busy,
      fn.queueLength,
      formatAge(fn.updatedAt, now),
    ]);
  ctx.print(
    table(['NAME', 'VERSION', 'RUNTIME', 'MEMORY', 'IDLE', 'BUSY', 'QUEUE', 'UPDATED'], rows),
  );
}

async function get(ctx: Ctx<object>, name: string): Promise<void> {
  const fn = await ctx.client().getFunction(name);
  ctx.print(ctx.opts.json ? formatJson(fn) : functionText(fn, ctx.io.now()));
}

function functionText(fn: FunctionView, now: number): string {
  const { name: _name, ...spec } = fn.spec ?? {};
  return keyValues([
    ['name', fn.name],
    ['version', fn.version],
    ['created', `${formatTime(fn.createdAt)} (${formatAge(fn.createdAt, now)})`],
    ['updated', `${formatTime(fn.updatedAt)} (${formatAge(fn.updatedAt, now)})`],
    ['instances', instancesText(fn.instances)],
    ['queue length', fn.queueLength],
    // Flattened generically so fields a newer node adds still show up.
    ...flatten(spec),
  ]);
}

/** Nested spec objects as dotted keys: `keepAlive.ms: 600000`, `env.FOO: bar`. */
function flatten(value: Record<string, unknown>, prefix = ''): [string, Cell][] {
  const pairs: [string, Cell][] = [];
  for (const [key, v] of Object.entries(value)) {
    const path = prefix + key;
    if (isRecord(v) && Object.keys(v).length > 0) pairs.push(...flatten(v, `${path}.`));
    else if (isRecord(v)) pairs.push([path, '{}']);
    else pairs.push([path, typeof v === 'string' ? v : JSON.stringify(v)]);
  }
  return pairs;
}

async function remove(ctx: Ctx<object>, name: string): Promise<void> {
  const body = await ctx.client().deleteFunction(name);
  ctx.print(ctx.opts.json ? formatJson(body) : `removed ${body.name ?? name}`);
}

// ---------------------------------------------------------------- logs

interface LogsOptions {
  invocation?: string;
  limit?: number;
  follow?: boolean;
}

function registerLogs(program: Command, io: CliIo): void {
  program
    .command('logs')
    .description("print a function's stdout/stderr lines (oldest first)")
    .argument('<name>', 'function name')
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

function registerInvocationVerbs(program: Command, io: CliIo): void {
  program
    .command('invocations')
    .description('list recent invocations (newest first)')
    .option('--function <name>', 'only this function')
    .option('--limit <n>', 'at most this many', intOption(1))
    .action(action(io, invocations));
  program
    .command('invocation')
    .description('show one invocation: status, timings, resources, result or error')
    .argument('<id>', 'invocation id')
    .action(action(io, invocation));
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
  if (inv.error) {
    const { code, message, details } = inv.error;
    return `${facts}\n\n${errorText(new ApiError(code, message, 0, details)).trimEnd()}`;
  }
  if (inv.status !== 'succeeded') return facts;
  // A node may keep no result (e.g. for async calls); say so rather than print "null".
  const result = inv.result === undefined ? '(not recorded by the node)' : formatJson(inv.result);
  return `${facts}\n\nresult:\n${result}`;
}

// ---------------------------------------------------------------- status

function registerStatus(program: Command, io: CliIo): void {
  program
    .command('status')
    .description('node facts and which isolation mechanisms are active')
    .action(action(io, status));
}

async function status(ctx: Ctx<object>): Promise<void> {
  const node = await ctx.client().node();
  ctx.print(ctx.opts.json ? formatJson(node) : nodeText(node, ctx.opts.url));
}

function placementText(placement: NodeView['placement'] | undefined): string {
  if (!placement) return 'not reported';
  if (!placement.active) return `${placement.policy}, inactive (${placement.reason ?? 'off'})`;
  return `${placement.policy}: ${placement.current} (daemon on core ${placement.daemonCpu})`;
}

/** A node older than these fields leaves them out. */
function instanceNodeText(node: Partial<NodeView>): string {
  if (!node.instanceNodeVersion) return 'not reported';
  return `${node.instanceNodeVersion} (${node.instanceNodeBinary ?? 'binary not reported'})`;
}

function nodeText(node: NodeView, url: string): string {
  const facts = keyValues([
    ['node', url],
    ['version', node.version],
    ['daemon node.js', node.nodeVersion ?? 'not reported'],
    ['instance node.js', instanceNodeText(node)],
    ['uptime', formatDuration(node.uptimeMs)],
    ['cores', node.cores],
    ['memory', `${node.memoryInUseMb} MB in use of ${node.memoryBudgetMb} MB`],
    ['sandbox driver', node.sandboxDriver],
    ['functions', node.functions],
    ['instances', instancesText(node.instances)],
    ['cpu placement', placementText(node.placement)],
  ]);
  const mechanisms = node.isolation?.mechanisms ?? [];
  if (mechanisms.length === 0) return `${facts}\n\nisolation: no mechanisms reported`;
  const rows = mechanisms.map((m): Cell[] => [m.name, m.active ? 'yes' : 'no', m.reason]);
  return `${facts}\n\n${table(['MECHANISM', 'ACTIVE', 'REASON'], rows)}`;
}
