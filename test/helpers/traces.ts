import fs from 'node:fs/promises';
import path from 'node:path';
import { DEFAULT_CGROUP_ROOT } from '../../src/cgroup/index.ts';
import { chainNames, listNetns, runCommand } from '../../src/net/index.ts';
import { leftoverMatchers } from '../../src/net/naming.ts';

/**
 * What a node tag has on this system, as identities: a namespace or link
 * that was removed and made again under the same name is another identity
 * (links by ifindex, namespaces by their eth0's MAC),
 * so "the crashed run's namespace is gone" holds even when a fresh pool
 * reuses its name.
 */

/** Cgroup directories at or under `petri/<tag>`, in every hierarchy (the node's own cgroup may be nested). */
export async function cgroupTraces(tag: string): Promise<string[]> {
  const found: string[] = [];
  async function walk(dir: string, depth: number): Promise<void> {
    if (depth > 8) return;
    const entries = await fs.readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const entry of entries) {
      if (!entry.isDirectory()) continue;
      const full = path.join(dir, entry.name);
      if (entry.name === tag && path.basename(dir) === 'petri') {
        found.push(full, ...(await subdirs(full)));
      } else await walk(full, depth + 1);
    }
  }
  await walk(DEFAULT_CGROUP_ROOT, 0);
  return found.map((dir) => `cgroup ${dir}`);
}

async function subdirs(dir: string): Promise<string[]> {
  const entries = await fs.readdir(dir, { withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isDirectory()).map((e) => path.join(dir, e.name));
}

/** The cgroup directories of one instance (their path holds its id). */
export async function instanceCgroupTraces(tag: string, instanceId: string): Promise<string[]> {
  return (await cgroupTraces(tag)).filter((trace) => trace.endsWith(`/${tag}/${instanceId}`));
}

/**
 * Instance namespaces and veth/IFB links of `tag`. A namespace is known by
 * its eth0's MAC (random per veth): namespace inode numbers are reused as
 * soon as one is freed, and a fresh pool reuses the names.
 */
export async function netInstanceTraces(tag: string): Promise<string[]> {
  const match = leftoverMatchers(tag);
  const traces: string[] = [];
  for (const name of (await listNetns()).filter((n) => match.netns.test(n))) {
    const inner = await links(['-n', name]).catch(() => []);
    const eth0 = inner.find((link) => link.ifname === 'eth0');
    traces.push(`netns ${name} (eth0 ${eth0?.address ?? 'missing'})`);
  }
  for (const link of await links()) {
    if (match.link.test(link.ifname)) traces.push(`link ${link.ifname} #${link.ifindex}`);
  }
  return traces;
}

/** One instance's namespace and links, found by the namespace its wrap enters. */
export async function netTracesOf(tag: string, wrapped: string[]): Promise<string[]> {
  const flag = wrapped.find((arg) => arg.startsWith('--net=/run/netns/'));
  const netns = flag?.slice('--net=/run/netns/'.length);
  const n = netns?.slice(`petri-${tag}-`.length);
  if (!netns || !n) return [];
  const own = new RegExp(`^(netns ${netns} |link p[vi]${tag}${n} #)`);
  return (await netInstanceTraces(tag)).filter((trace) => own.test(trace));
}

/** Everything of `tag`'s network: instance traces, the bridge, the iptables chains. */
export async function netTraces(tag: string, bridge = 'petri0'): Promise<string[]> {
  const traces = await netInstanceTraces(tag);
  for (const link of await links()) if (link.ifname === bridge) traces.push(`bridge ${bridge}`);
  const { forward, nat } = chainNames(tag);
  for (const [table, chain] of [
    ['filter', forward],
    ['nat', nat],
  ]) {
    const exists = await runCommand('iptables', ['-w', '-t', table, '-S', chain]).then(
      () => true,
      () => false,
    );
    if (exists) traces.push(`iptables ${table} ${chain}`);
  }
  return traces;
}

interface Link {
  ifname: string;
  ifindex: number;
  address?: string;
}

/** Links of this namespace, or of another with `['-n', name]`. */
async function links(where: string[] = []): Promise<Link[]> {
  const parsed: unknown = JSON.parse(await runCommand('ip', [...where, '-j', 'link', 'show']));
  if (!Array.isArray(parsed)) return [];
  return parsed.filter(
    (link: unknown): link is Link =>
      typeof link === 'object' &&
      link !== null &&
      typeof (link as Link).ifname === 'string' &&
      typeof (link as Link).ifindex === 'number',
  );
}

/** Processes whose environment names this instance (PETRI_INSTANCE_ID), sandboxed ones included. */
export async function processesOf(instanceId: string): Promise<number[]> {
  return processesWhere((id) => id === instanceId);
}

/** Kills every process of an instance whose id starts with `prefix` (after a failed test). */
export async function killInstancesOf(prefix: string): Promise<void> {
  for (const pid of await processesWhere((id) => id.startsWith(prefix))) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Gone meanwhile.
    }
  }
}

async function processesWhere(match: (instanceId: string) => boolean): Promise<number[]> {
  const pids: number[] = [];
  for (const name of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const environ = await fs.readFile(`/proc/${name}/environ`, 'latin1').catch(() => '');
    const entry = environ.split('\0').find((e) => e.startsWith('PETRI_INSTANCE_ID='));
    if (entry && match(entry.slice('PETRI_INSTANCE_ID='.length))) pids.push(Number(name));
  }
  return pids;
}
