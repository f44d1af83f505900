import fs from 'node:fs/promises';
import path from 'node:path';
import { runCommand as sh } from '../../net/index.ts';

/**
 * Equal CPU on both sides of `bench net --f2f`. The benchmark compares
 * network paths, so a native namespace gets exactly the CPU of the group
 * member it stands for: the member's cgroup v1 CFS quota and period and its
 * cpuset, read from the kernel once the group runs. Without this, the native
 * pair runs unconfined on every core while Petri's members (1 vCPU each, and
 * packed onto the daemon's core by `pack-when-sequential` placement) share
 * one, and the ratio measures CPU placement instead of the network.
 */

const CGROUP_ROOT = '/sys/fs/cgroup';

export interface CpuLimits {
  /** CFS quota per period, µs; -1: none. */
  quotaUs: number;
  periodUs: number;
  cpus: string;
  mems: string;
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
    const cpuDir = path.join(CGROUP_ROOT, 'cpu', await cgroupOf(pid, 'cpu'));
    const setDir = path.join(CGROUP_ROOT, 'cpuset', await cgroupOf(pid, 'cpuset'));
    const limits: CpuLimits = {
      quotaUs: Number(await readTrim(path.join(cpuDir, 'cpu.cfs_quota_us'))),
      periodUs: Number(await readTrim(path.join(cpuDir, 'cpu.cfs_period_us'))),
      cpus: await readTrim(path.join(setDir, 'cpuset.cpus')),
      mems: await readTrim(path.join(setDir, 'cpuset.mems')),
    };
    const share = (l: CpuLimits) => (l.quotaUs < 0 ? Infinity : l.quotaUs / l.periodUs);
    if (!best || share(limits) < share(best)) best = limits;
  }
  if (!best) throw new Error(`no process in namespace ${netns}`);
  return best;
}

/** A cgroup pair (cpu, cpuset) holding a native namespace's processes under a member's limits. */
export interface CpuMirror {
  limits: CpuLimits;
  /** Moves every process now in `netns` (and so their future children) in. */
  adopt(netns: string): Promise<void>;
  /** Removes the cgroups; their processes must be gone (waits up to 5 s for them). */
  remove(): Promise<void>;
}

export async function cpuMirror(name: string, limits: CpuLimits): Promise<CpuMirror> {
  if (!/^[a-z0-9-]{1,64}$/.test(name)) throw new Error(`bad cgroup name ${name}`);
  const cpuDir = path.join(CGROUP_ROOT, 'cpu', name);
  const setDir = path.join(CGROUP_ROOT, 'cpuset', name);
  await fs.mkdir(cpuDir);
  await fs.mkdir(setDir);
  await fs.writeFile(path.join(cpuDir, 'cpu.cfs_period_us'), String(limits.periodUs));
  await fs.writeFile(path.join(cpuDir, 'cpu.cfs_quota_us'), String(limits.quotaUs));
  await fs.writeFile(path.join(setDir, 'cpuset.cpus'), limits.cpus);
  await fs.writeFile(path.join(setDir, 'cpuset.mems'), limits.mems);
  return {
    limits,
    async adopt(netns) {
      for (const pid of await pidsIn(netns)) {
        for (const dir of [cpuDir, setDir]) {
          await fs.writeFile(path.join(dir, 'cgroup.procs'), String(pid)).catch(() => undefined);
        }
      }
    },
    async remove() {
      for (const dir of [cpuDir, setDir]) {
        for (let attempt = 0; ; attempt++) {
          try {
            await fs.rmdir(dir);
            break;
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code === 'ENOENT') break;
            if (attempt >= 50) throw err;
            await new Promise((resolve) => setTimeout(resolve, 100));
          }
        }
      }
    },
  };
}

export function describeLimits(l: CpuLimits): string {
  const vcpu = l.quotaUs < 0 ? 'unlimited' : `${(l.quotaUs / l.periodUs).toFixed(2)} vCPU`;
  return `${vcpu} on cpus ${l.cpus}`;
}
