/** The status verb: node facts, CPU placement and isolation mechanisms. */
import type { Command } from 'commander';
import type { NodeView } from './client.ts';
import {
  formatDuration,
  formatInstances,
  formatJson,
  keyValues,
  table,
  type Cell,
} from './format.ts';
import { plainVerb, type CliIo, type Ctx } from './verb.ts';

export function registerStatus(program: Command, io: CliIo): void {
  plainVerb(program, io, 'status', 'node facts and which isolation mechanisms are active', status);
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

function startPathsText(startPaths: NodeView['startPaths'] | undefined): string {
  if (!startPaths) return 'not reported';
  const pausing = startPaths.pausing
    ? `idle instances paused after ${startPaths.pauseGraceMs} ms`
    : `no pausing (${startPaths.reason ?? 'off'})`;
  return `${startPaths.policy}, ${pausing}`;
}

/** Group members are instances too, counted apart from the invocable ones. */
function groupsText(groups: NodeView['groups'] | undefined): string {
  if (!groups) return 'not reported';
  const m = groups.members;
  const live = m.starting + m.waiting + m.running + m.stopping;
  return `${groups.running} running, ${live} members (running ${m.running}, waiting ${m.waiting}, starting ${m.starting}, stopping ${m.stopping}, exited ${m.exited})`;
}

/** Ready generic runtimes (node config `prewarm`) and the memory they hold. */
function prewarmText(prewarm: NodeView['prewarm'] | undefined): string {
  if (!prewarm || prewarm.sets.length === 0) return 'none configured';
  const sets = prewarm.sets.map(
    (s) =>
      `${s.runtime} ${s.memoryMb} MB ${s.mode}: ${s.ready}/${s.target} ready, ${s.starting} starting, ${s.bound} bound`,
  );
  return `${sets.join('; ')} (${prewarm.memoryMb} MB held)`;
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
    ['instances', formatInstances(node.instances)],
    ['groups', groupsText(node.groups)],
    ['cpu placement', placementText(node.placement)],
    ['start paths', startPathsText(node.startPaths)],
    ['prewarm', prewarmText(node.prewarm)],
  ]);
  const mechanisms = node.isolation?.mechanisms ?? [];
  if (mechanisms.length === 0) return `${facts}\n\nisolation: no mechanisms reported`;
  const rows = mechanisms.map((m): Cell[] => [m.name, m.active ? 'yes' : 'no', m.reason]);
  return `${facts}\n\n${table(['MECHANISM', 'ACTIVE', 'REASON'], rows)}`;
}
