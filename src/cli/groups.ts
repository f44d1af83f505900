/** The group verbs: `petri group run | ls | get | scale | watch | rm` (function groups, DESIGN §10). */
import type { Command } from 'commander';
import type { GroupStreamLine, GroupView } from './client.ts';
import { formatAge, formatJson, formatTime, keyValues, table, type Cell } from './format.ts';
import { action, intOption, type CliIo, type Ctx } from './verb.ts';

interface RunOptions {
  size: number;
  barrier?: number;
  name?: string;
  maxDuration?: number;
}

export function registerGroupVerbs(program: Command, io: CliIo): void {
  const group = program
    .command('group')
    .description('function groups: service instances that find each other');
  group
    .command('run')
    .description('start <function> (runtime "service") as a group of --size members, all or none')
    .argument('<function>', 'function name')
    .requiredOption('--size <n>', 'members', intOption(1))
    .option('--barrier <n>', "members' commands start once n have joined", intOption(1))
    .option('--name <name>', 'group name (default: <function>-<n>)')
    .option('--max-duration <ms>', "the group's lifetime", intOption(1000))
    .action(action(io, run));
  group.command('ls').description('list running groups').action(action(io, list));
  group
    .command('get')
    .description("show one group's members: rank, state, address")
    .argument('<name>', 'group name')
    .action(action(io, get));
  group
    .command('scale')
    .description('add members (new ranks) or remove the highest ranks')
    .argument('<name>', 'group name')
    .requiredOption('--size <n>', 'members', intOption(1))
    .action(action(io, scale));
  group
    .command('watch')
    .description('follow membership changes (joins and leaves) until the group is removed')
    .argument('<name>', 'group name')
    .action(action(io, watch));
  group
    .command('rm')
    .description('stop every member and remove the group')
    .argument('<name>', 'group name')
    .action(action(io, remove));
}

async function run(ctx: Ctx<RunOptions>, fn: string): Promise<void> {
  const { size, barrier, name, maxDuration } = ctx.opts;
  const view = await ctx.client().createGroup({
    function: fn,
    size,
    ...(barrier === undefined ? {} : { barrier }),
    ...(name === undefined ? {} : { name }),
    ...(maxDuration === undefined ? {} : { maxDurationMs: maxDuration }),
  });
  ctx.print(ctx.opts.json ? formatJson(view) : groupText(view, ctx.io.now()));
}

async function list(ctx: Ctx<object>): Promise<void> {
  const body = await ctx.client().listGroups();
  if (ctx.opts.json) return ctx.print(formatJson(body));
  const now = ctx.io.now();
  const rows = body.groups.map((g): Cell[] => [
    g.name,
    g.function,
    g.size,
    g.members.filter((m) => m.state === 'running').length,
    g.barrier,
    formatAge(g.createdAt, now),
  ]);
  ctx.print(table(['NAME', 'FUNCTION', 'SIZE', 'RUNNING', 'BARRIER', 'STARTED'], rows));
}

async function get(ctx: Ctx<object>, name: string): Promise<void> {
  const view = await ctx.client().getGroup(name);
  ctx.print(ctx.opts.json ? formatJson(view) : groupText(view, ctx.io.now()));
}

async function scale(ctx: Ctx<{ size: number }>, name: string): Promise<void> {
  const view = await ctx.client().scaleGroup(name, ctx.opts.size);
  ctx.print(ctx.opts.json ? formatJson(view) : groupText(view, ctx.io.now()));
}

async function watch(ctx: Ctx<object>, name: string): Promise<void> {
  await ctx.client().watchGroup(name, (line) => {
    ctx.print(ctx.opts.json ? JSON.stringify(line) : streamLineText(line, ctx.io.now()));
  });
}

function streamLineText(line: GroupStreamLine, now: number): string {
  const members = line.members.map((m) => `${m.rank}=${m.address}`).join(' ') || 'none';
  if (line.type === 'members') return `members of ${line.group}: ${members}`;
  const delay = `${Math.max(0, Math.round(now - line.at))} ms ago`;
  return `${line.type} rank ${line.rank} ${line.address} (${delay}); members: ${members}`;
}

async function remove(ctx: Ctx<object>, name: string): Promise<void> {
  const body = await ctx.client().deleteGroup(name);
  ctx.print(ctx.opts.json ? formatJson(body) : `removed group ${body.name ?? name}`);
}

function groupText(view: GroupView, now: number): string {
  const head = keyValues([
    ['name', view.name],
    ['function', `${view.function} (version ${view.version}, ${view.memoryMb} MB a member)`],
    ['size', view.size],
    ['barrier', view.barrier],
    ['started', `${formatTime(view.createdAt)} (${formatAge(view.createdAt, now)})`],
    ['ends', formatTime(view.expiresAt)],
    ['coordinator', view.coordinator],
  ]);
  const rows = view.members.map((m): Cell[] => [
    m.rank,
    m.state,
    m.address,
    m.instanceId,
    m.exitCode === undefined ? undefined : `exit ${m.exitCode ?? m.signal}`,
  ]);
  return `${head}\n${table(['RANK', 'STATE', 'ADDRESS', 'INSTANCE', 'EXIT'], rows)}`;
}
