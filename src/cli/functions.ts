/** The function verbs: deploy, ls, get, rm. */
import { readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import { PetriError } from '../errors.ts';
import { archiveFolder } from './archive.ts';
import { ApiError, isRecord, type FunctionView } from './client.ts';
import {
  formatAge,
  formatInstances,
  formatJson,
  formatTime,
  keyValues,
  table,
  type Cell,
} from './format.ts';
import { action, FUNCTION_ARGUMENT, intOption, plainVerb, type CliIo, type Ctx } from './verb.ts';

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
  configOnly?: boolean;
}

export function registerDeploy(program: Command, io: CliIo): void {
  program
    .command('deploy')
    .description('deploy the function in <dir> (its petri.json; flags override it)')
    .argument('<dir>', 'function folder holding petri.json')
    .option('--name <name>', 'function name')
    .option('--runtime <runtime>', 'node, exec, http or service')
    .option('--handler <handler>', 'file.export, e.g. index.handler')
    .option('--memory <mb>', 'memory in MB (sizes CPU and network too)', intOption(1))
    .option('--timeout <ms>', 'invocation timeout in ms', intOption(1))
    .option('--concurrency <n>', 'concurrent invocations per instance', intOption(1))
    .option('--max-instances <n>', 'instance cap', intOption(1))
    .option('--env <KEY=VALUE>', 'environment variable (repeatable)', collectEnv)
    .option('--keep-alive <ms>', 'keep idle instances this long', intOption(0))
    .option('--egress', 'allow network egress beyond the node')
    .option('--archive', 'send a tar.gz of <dir> even to a local node')
    .option(
      '--config-only',
      "apply petri.json's configuration without sending the code (a new version, same code)",
    )
    .action(action(io, deploy));
}

function collectEnv(value: string, previous: Record<string, string> = {}): Record<string, string> {
  const eq = value.indexOf('=');
  if (eq <= 0) throw new InvalidArgumentError('must look like KEY=VALUE');
  return { ...previous, [value.slice(0, eq)]: value.slice(eq + 1) };
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
  if (ctx.opts.configOnly) {
    const current = await client.getFunction(name);
    const fn = await client.patchFunction(name, patchTowards(current.spec, spec));
    const what = fn.version === current.version ? 'unchanged at' : 'configured';
    ctx.print(ctx.opts.json ? formatJson(fn) : `${what} ${fn.name} version ${fn.version}`);
    return;
  }
  const sendArchive = async (): Promise<FunctionView> =>
    client.deploy(name, { ...spec, source: { archive: await archiveFolder(resolve(dir)) } });
  // A node on this machine reads the folder itself if its config allows that
  // folder; otherwise it gets the bytes, packed with this user's own rights.
  let fn: FunctionView;
  if (client.isLocal() && !ctx.opts.archive) {
    try {
      fn = await client.deploy(name, { ...spec, source: { path: resolve(dir) } });
    } catch (err) {
      if (!(err instanceof ApiError && err.code === 'SourceNotAllowed')) throw err;
      fn = await sendArchive();
    }
  } else {
    fn = await sendArchive();
  }
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

/**
 * The merge patch (RFC 7396) that turns `current` into `target`: fields
 * `target` lacks become null (their defaults), objects are diffed key by
 * key, so an env variable removed from petri.json is removed on the node.
 */
export function patchTowards(
  current: Record<string, unknown>,
  target: Record<string, unknown>,
): Record<string, unknown> {
  const patch: Record<string, unknown> = {};
  for (const key of Object.keys(current)) if (!(key in target)) patch[key] = null;
  for (const [key, value] of Object.entries(target)) {
    const before = current[key];
    if (isRecord(before) && isRecord(value)) {
      const inner = patchTowards(before, value);
      if (Object.keys(inner).length > 0) patch[key] = inner;
    } else if (JSON.stringify(before) !== JSON.stringify(value)) {
      patch[key] = value;
    }
  }
  return patch;
}

function asRecord(value: unknown): Record<string, unknown> {
  return isRecord(value) ? value : {};
}

// ---------------------------------------------------------------- ls, get, rm

export function registerFunctionVerbs(program: Command, io: CliIo): void {
  plainVerb(program, io, 'ls', 'list deployed functions', list);
  plainVerb(program, io, 'get', "show one function's spec and instances", get, FUNCTION_ARGUMENT);
  plainVerb(program, io, 'rm', 'drain and remove a function', remove, FUNCTION_ARGUMENT);
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
  const text = keyValues([
    ['name', fn.name],
    ['version', fn.version],
    ['created', `${formatTime(fn.createdAt)} (${formatAge(fn.createdAt, now)})`],
    ['updated', `${formatTime(fn.updatedAt)} (${formatAge(fn.updatedAt, now)})`],
    ['instances', formatInstances(fn.instances)],
    ['queue length', fn.queueLength],
    // Flattened generically so fields a newer node adds still show up.
    ...flatten(spec),
  ]);
  const live = fn.instanceList ?? [];
  if (live.length === 0) return text;
  const rows = live.map((i): Cell[] => [
    i.id,
    i.state,
    i.address,
    i.ports === 'all' ? 'all' : i.ports?.length ? i.ports.join(',') : 'none',
    i.group === undefined ? undefined : `${i.group}#${i.rank}`,
  ]);
  return `${text}\n${table(['INSTANCE', 'STATE', 'ADDRESS', 'PORTS', 'GROUP'], rows)}`;
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
