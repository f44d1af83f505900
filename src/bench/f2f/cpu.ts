import fs from 'node:fs/promises';
import path from 'node:path';
import { runCommand as sh } from '../../net/index.ts';

/**
 * Equal CPU on both sides of `bench net --f2f`. The benchmark compares
 * network paths, so a native namespace gets exactly the CPU of the group
 * member it stands for: the member's cgroup v1 CFS quota, period and weight
 * (`cpu.shares`) and its cpuset, read from the kernel once the group runs,
 * and the same place in the hierarchy. A member's cgroup is
 * `<parent>/<node tag>/<instance>` (`/petri/<tag>/<instance>`); its mirror is
 * `<parent>/<mirror>/<k>`, the middle level with the node tag's settings. The
 * place matters when the machine is busy: CFS splits CPU between siblings by
 * weight, so a mirror at the top level (weight 1024 per namespace) outweighs
 * the members, whose node shares one 1024 inside `/petri` with every other
 * Petri node on the machine (research.md measured 1.25× the CPU time for the
 * top-level mirror against the same pair nested, under two busy loops).
 * Without any of this the native pair runs unconfined on every core and the
 * ratio measures CPU limits and placement instead of the network.
 */

const CGROUP_ROOT = '/sys/fs/cgroup';

/** The CFS settings of one cgroup level. */
export interface CfsLevel {
  /** CFS quota per period, µs; -1: none. */
  quotaUs: number;
  periodUs: number;
  /** CFS weight among siblings. */
  shares: number;
}

export interface CpuLimits extends CfsLevel {
  cpus: string;
  mems: string;
  /** The member's node level (its cgroup's parent), mirrored as the middle level. */
  group: CfsLevel & { cpus: string };
  /** Where the node level sits, relative to each controller's root ("/petri"). */
  cpuParent: string;
  cpusetParent: string;
}

async function readTrim(file: string): Promise<string> {
  return (await fs.readFile(file, 'utf8')).trim();
}

/** The v1 cgroup path of `pid` in `controller`'s hierarchy ("/" when none). */
async function cgroupOf(pid: number, controller: string): Promise<string> {
  const lines = (await readTrim(`/proc/${pid}/cgroup`)).split('\n');
  for (const line of lines) {
    const [, controllers, where] = line.split(':');
    if (controllers?.split(',').includes(controller)) return where ?? '/';
  }
  return '/';
}

/** Pids in a network namespace (its sandbox's processes, for a Petri member). */
export async function pidsIn(netns: string): Promise<number[]> {
  const out = await sh('ip', ['netns', 'pids', netns]);
  return out
    .split('\n')
    .map((line) => Number(line.trim()))
    .filter((pid) => Number.isSafeInteger(pid) && pid > 0);
}

/** The namespace of this node tag whose eth0 has `address`. */
export async function netnsWithAddress(tag: string, address: string): Promise<string> {
  const pattern = new RegExp(`^petri-${tag}-\\d+$`);
  const names = (await sh('ip', ['netns', 'list']))
    .split('\n')
    .map((line) => line.split(' ')[0])
    .filter((name) => pattern.test(name));
  for (const name of names) {
    const out = await sh('ip', ['-n', name, '-4', '-o', 'addr', 'show']).catch(() => '');
    if (out.includes(` ${address}/`)) return name;
  }
  throw new Error(`no namespace of node ${tag} has address ${address}`);
}

/**
 * The CPU limits of the processes in `netns`: the most restrictive quota
 * among them and that process's cpuset (the sandbox's helpers outside the
 * instance cgroup have none).
 */
export async function cpuLimitsIn(netns: string): Promise<CpuLimits> {
  let best: CpuLimits | undefined;
  for (const pid of await pidsIn(netns)) {
    const cpuRel = checkedCgroupPath(await cgroupOf(pid, 'cpu'));
    const setRel = checkedCgroupPath(await cgroupOf(pid, 'cpuset'));
    const cpuDir = path.join(CGROUP_ROOT, 'cpu', cpuRel);
    const setDir = path.join(CGROUP_ROOT, 'cpuset', setRel);
    const limits: CpuLimits = {
      ...(await cfsLevel(cpuDir)),
      cpus: await readTrim(path.join(setDir, 'cpuset.cpus')),
      mems: await readTrim(path.join(setDir, 'cpuset.mems')),
      group: {
        ...(await cfsLevel(path.dirname(cpuDir))),
        cpus: await readTrim(path.join(path.dirname(setDir), 'cpuset.cpus')),
      },
      cpuParent: path.dirname(path.dirname(cpuRel)),
      cpusetParent: path.dirname(path.dirname(setRel)),
    };
    const share = (l: CpuLimits) => (l.quotaUs < 0 ? Infinity : l.quotaUs / l.periodUs);
    if (!best || share(limits) < share(best)) best = limits;
  }
  if (!best) throw new Error(`no process in namespace ${netns}`);
  return best;
}

async function cfsLevel(dir: string): Promise<CfsLevel> {
  return {
    quotaUs: Number(await readTrim(path.join(dir, 'cpu.cfs_quota_us'))),
    periodUs: Number(await readTrim(path.join(dir, 'cpu.cfs_period_us'))),
    shares: Number(await readTrim(path.join(dir, 'cpu.shares'))),
  };
}

/** A cgroup path as /proc shows it, refused unless plain (it becomes a directory the bench writes). */
function checkedCgroupPath(rel: string): string {
  if (!/^\/[A-Za-z0-9._/-]*$/.test(rel) || rel.split('/').includes('..'))
    throw new Error(`unexpected cgroup path ${JSON.stringify(rel)}`);
  return rel;
}

/** A cgroup pair (cpu, cpuset) holding a native namespace's processes under a member's limits. */
export interface CpuMirror {
  limits: CpuLimits;
  /** Moves every process now in `netns` (and so their future children) in. */
  adopt(netns: string): Promise<void>;
  /** Removes the cgroups; their processes must be gone (waits up to 5 s for them). */
  remove(): Promise<void>;
}

/** Mirrors of several members of one node: one middle level (the node's), one child each. */
export interface CpuMirrorGroup {
  mirrors: CpuMirror[];
  remove(): Promise<void>;
}

async function writeCfs(dir: string, level: CfsLevel): Promise<void> {
  await fs.writeFile(path.join(dir, 'cpu.cfs_period_us'), String(level.periodUs));
  await fs.writeFile(path.join(dir, 'cpu.cfs_quota_us'), String(level.quotaUs));
  await fs.writeFile(path.join(dir, 'cpu.shares'), String(level.shares));
}

/** rmdir that waits for the cgroup's last processes to go (up to 5 s). */
async function removeCgroup(dir: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await fs.rmdir(dir);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      if (attempt >= 50) throw err;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

/**
 * `<parent>/<name>/<k>` in the cpu and cpuset hierarchies for each of
 * `limits` (members of one node), `<parent>/<name>` with the node level's
 * settings (the first member's).
 */
export async function cpuMirrorGroup(name: string, limits: CpuLimits[]): Promise<CpuMirrorGroup> {
  if (!/^[a-z0-9-]{1,64}$/.test(name)) throw new Error(`bad cgroup name ${name}`);
  if (limits.length === 0) throw new Error('no limits to mirror');
  const [first] = limits;
  const cpuGroup = path.join(CGROUP_ROOT, 'cpu', first.cpuParent, name);
  const setGroup = path.join(CGROUP_ROOT, 'cpuset', first.cpusetParent, name);
  const made: string[] = [];
  const remove = async (): Promise<void> => {
    for (const dir of [...made].reverse()) await removeCgroup(dir);
  };
  const mirrors: CpuMirror[] = [];
  try {
    await fs.mkdir(cpuGroup);
    made.push(cpuGroup);
    await writeCfs(cpuGroup, first.group);
    await fs.mkdir(setGroup);
    made.push(setGroup);
    await fs.writeFile(path.join(setGroup, 'cpuset.cpus'), first.group.cpus);
    await fs.writeFile(path.join(setGroup, 'cpuset.mems'), first.mems);
    for (const [k, l] of limits.entries()) {
      const cpuDir = path.join(cpuGroup, String(k));
      const setDir = path.join(setGroup, String(k));
      await fs.mkdir(cpuDir);
      made.push(cpuDir);
      await writeCfs(cpuDir, l);
      await fs.mkdir(setDir);
      made.push(setDir);
      await fs.writeFile(path.join(setDir, 'cpuset.cpus'), l.cpus);
      await fs.writeFile(path.join(setDir, 'cpuset.mems'), l.mems);
      mirrors.push({
        limits: l,
        async adopt(netns) {
          for (const pid of await pidsIn(netns)) {
            for (const dir of [cpuDir, setDir]) {
              await fs
                .writeFile(path.join(dir, 'cgroup.procs'), String(pid))
                .catch(() => undefined);
            }
          }
        },
        remove: async () => {
          await removeCgroup(cpuDir);
          await removeCgroup(setDir);
        },
      });
    }
  } catch (err) {
    await remove().catch(() => undefined);
    throw err;
  }
  return { mirrors, remove };
}

export function describeLimits(l: CpuLimits): string {
  const vcpu = l.quotaUs < 0 ? 'unlimited' : `${(l.quotaUs / l.periodUs).toFixed(2)} vCPU`;
  return `${vcpu} (weight ${l.shares}) on cpus ${l.cpus}, in ${l.cpuParent}/<node, weight ${l.group.shares}>`;
}
