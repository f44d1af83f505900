/** Versions, aliases, configuration without code and function URLs: versions, alias, config, url. */
import { InvalidArgumentError, type Command } from 'commander';
import { PetriError } from '../errors.ts';
import { isRecord, type AliasView } from './client.ts';
import { formatAge, formatJson, keyValues, table, type Cell } from './format.ts';
import { action, FUNCTION_ARGUMENT, plainVerb, type CliIo, type Ctx } from './verb.ts';

export function registerVersionVerbs(program: Command, io: CliIo): void {
  plainVerb(program, io, 'versions', "list a function's versions", versions, FUNCTION_ARGUMENT);
  plainVerb(
    program,
    io,
    'url',
    "print a function's URL (<node>/fn/<name>)",
    url,
    FUNCTION_ARGUMENT,
  );
  registerConfig(program, io);
  registerAlias(program, io);
}

async function versions(ctx: Ctx<object>, name: string): Promise<void> {
  const body = await ctx.client().listVersions(name);
  if (ctx.opts.json) return ctx.print(formatJson(body));
  const now = ctx.io.now();
  const rows = body.versions.map((v): Cell[] => [
    v.version,
    v.current ? '*' : '',
    v.spec?.memoryMb === undefined ? undefined : `${v.spec.memoryMb} MB`,
    v.spec?.timeoutMs === undefined ? undefined : `${v.spec.timeoutMs} ms`,
    v.codeDigest?.slice(0, 12),
    v.aliases?.length ? v.aliases.join(',') : undefined,
    formatAge(v.createdAt, now),
  ]);
  ctx.print(table(['VERSION', 'CURRENT', 'MEMORY', 'TIMEOUT', 'CODE', 'ALIASES', 'CREATED'], rows));
}

async function url(ctx: Ctx<object>, name: string): Promise<void> {
  const client = ctx.client();
  await client.getFunction(name); // a function that does not exist has no URL
  const address = client.functionUrl(name);
  ctx.print(ctx.opts.json ? formatJson({ name, url: address }) : address);
}

// ---------------------------------------------------------------- config

interface ConfigOptions {
  set?: [string, unknown][];
  unset?: string[];
}

function registerConfig(program: Command, io: CliIo): void {
  program
    .command('config')
    .description("change a function's configuration without its code (a new version)")
    .argument(...FUNCTION_ARGUMENT)
    .option(
      '--set <key=value>',
      'set a spec field: memoryMb=256, env.KEY=value, keepAlive.ms=0 (repeatable)',
      collectSet,
    )
    .option(
      '--unset <key>',
      'back to the default: maxInstances, env.KEY (repeatable)',
      collectUnset,
    )
    .action(action(io, config));
}

/** `key=value`: the value as JSON when it parses (256, true, ["a"]), else as text; env values always text. */
function collectSet(value: string, previous: [string, unknown][] = []): [string, unknown][] {
  const eq = value.indexOf('=');
  if (eq <= 0) throw new InvalidArgumentError('must look like key=value');
  const key = value.slice(0, eq);
  const text = value.slice(eq + 1);
  checkKey(key);
  return [...previous, [key, key.startsWith('env.') ? text : jsonOrText(text)]];
}

function collectUnset(value: string, previous: string[] = []): string[] {
  checkKey(value);
  return [...previous, value];
}

function checkKey(key: string): void {
  if (key.split('.').some((part) => part === ''))
    throw new InvalidArgumentError(`"${key}" is not a field path like memoryMb or env.KEY`);
}

function jsonOrText(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

/** The merge patch the --set and --unset flags make (RFC 7396: null removes). */
export function configPatch(sets: [string, unknown][], unsets: string[]): Record<string, unknown> {
  const patch: Record<string, unknown> = {};
  const put = (key: string, value: unknown): void => {
    const parts = key.split('.');
    let at = patch;
    for (const part of parts.slice(0, -1)) {
      const next = at[part];
      if (!isRecord(next)) at[part] = {};
      at = at[part] as Record<string, unknown>;
    }
    at[parts.at(-1)!] = value;
  };
  for (const [key, value] of sets) put(key, value);
  for (const key of unsets) put(key, null);
  return patch;
}

async function config(ctx: Ctx<ConfigOptions>, name: string): Promise<void> {
  const patch = configPatch(ctx.opts.set ?? [], ctx.opts.unset ?? []);
  if (Object.keys(patch).length === 0)
    throw new PetriError(
      'InvalidRequest',
      'nothing to change: pass --set key=value or --unset key',
    );
  const fn = await ctx.client().patchFunction(name, patch);
  ctx.print(ctx.opts.json ? formatJson(fn) : `configured ${fn.name} version ${fn.version}`);
}

// ---------------------------------------------------------------- alias

interface AliasSetOptions {
  canary?: number;
  weight?: number;
}

function registerAlias(program: Command, io: CliIo): void {
  const alias = program.command('alias').description("a function's aliases: set, get, rm, ls");
  alias
    .command('set')
    .description('point an alias at a version (rollback: point it back), optionally with a canary')
    .argument(...FUNCTION_ARGUMENT)
    .argument('<alias>', 'alias name')
    .argument('<version>', 'version number')
    .option('--canary <version>', 'a second version that takes --weight of the calls', positiveInt)
    .option('--weight <share>', "the canary's share of calls, 0 to 1", share)
    .action(action(io, aliasSet));
  alias
    .command('get')
    .description('show one alias')
    .argument(...FUNCTION_ARGUMENT)
    .argument('<alias>', 'alias name')
    .action(action(io, aliasGet));
  alias
    .command('rm')
    .description('remove an alias')
    .argument(...FUNCTION_ARGUMENT)
    .argument('<alias>', 'alias name')
    .action(action(io, aliasRemove));
  alias
    .command('ls')
    .description("list a function's aliases")
    .argument(...FUNCTION_ARGUMENT)
    .action(action(io, aliasList));
}

function positiveInt(value: string): number {
  const n = Number(value);
  if (!/^[0-9]+$/.test(value) || !Number.isSafeInteger(n) || n < 1)
    throw new InvalidArgumentError('must be a version number (1, 2, ...)');
  return n;
}

function share(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0 || n > 1)
    throw new InvalidArgumentError('must be a number from 0 to 1');
  return n;
}

async function aliasSet(
  ctx: Ctx<AliasSetOptions>,
  name: string,
  alias: string,
  versionText: string,
): Promise<void> {
  const version = Number(versionText);
  if (!/^[0-9]+$/.test(versionText) || version < 1)
    throw new PetriError('InvalidRequest', `version "${versionText}" must be a number from 1`);
  const { canary, weight } = ctx.opts;
  if ((canary === undefined) !== (weight === undefined))
    throw new PetriError('InvalidRequest', '--canary and --weight go together');
  const body =
    canary === undefined || weight === undefined
      ? { version }
      : { version, canary: { version: canary, weight } };
  const view = await ctx.client().setAlias(name, alias, body);
  ctx.print(ctx.opts.json ? formatJson(view) : `${aliasLine(view)}`);
}

async function aliasGet(ctx: Ctx<object>, name: string, alias: string): Promise<void> {
  const view = await ctx.client().getAlias(name, alias);
  if (ctx.opts.json) return ctx.print(formatJson(view));
  ctx.print(
    keyValues([
      ['alias', view.name],
      ['function', view.functionName],
      ['version', view.version],
      [
        'canary',
        view.canary ? `${view.canary.version} (${percent(view.canary.weight)})` : undefined,
      ],
      ['updated', formatAge(view.updatedAt, ctx.io.now())],
    ]),
  );
}

async function aliasRemove(ctx: Ctx<object>, name: string, alias: string): Promise<void> {
  const body = await ctx.client().deleteAlias(name, alias);
  ctx.print(ctx.opts.json ? formatJson(body) : `removed alias ${alias} of ${name}`);
}

async function aliasList(ctx: Ctx<object>, name: string): Promise<void> {
  const body = await ctx.client().listAliases(name);
  if (ctx.opts.json) return ctx.print(formatJson(body));
  const now = ctx.io.now();
  const rows = body.aliases.map((a): Cell[] => [
    a.name,
    a.version,
    a.canary ? `${a.canary.version} (${percent(a.canary.weight)})` : undefined,
    formatAge(a.updatedAt, now),
  ]);
  ctx.print(table(['ALIAS', 'VERSION', 'CANARY', 'UPDATED'], rows));
}

function aliasLine(view: AliasView): string {
  const canary = view.canary
    ? ` and ${view.canary.version} for ${percent(view.canary.weight)} of calls`
    : '';
  return `alias ${view.name} of ${view.functionName} -> version ${view.version}${canary}`;
}

function percent(weight: number): string {
  return `${Math.round(weight * 1000) / 10}%`;
}
