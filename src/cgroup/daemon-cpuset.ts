import fs from 'node:fs/promises';
import path from 'node:path';
import { errnoCode, readOptional, writeControl } from './files.ts';

/**
 * The daemon's own cpuset cgroup, so CPU placement can pin and unpin the
 * whole daemon (every thread) with one µs write instead of forking `taskset`.
 */
export interface DaemonCpuset {
  /** The cores the node may use (its own cgroup's cpuset), ascending. */
  readonly allCpus: number[];
  setCpus(cpus: string): Promise<void>;
  /** Moves the daemon back to the node's cgroup and removes its own. */
  release(): Promise<void>;
}

/** "0-2,5" → [0, 1, 2, 5]. */
export function parseCpuList(list: string): number[] {
  const cpus: number[] = [];
  for (const part of list.trim().split(',').filter(Boolean)) {
    const [low, high = low] = part.split('-').map(Number);
    for (let cpu = low; cpu <= high; cpu++) cpus.push(cpu);
  }
  return cpus;
}

/**
 * Makes `<base>/<name>` in the v1 cpuset hierarchy with the node's cores and
 * memory nodes and moves this process into it. A directory left by a crashed
 * run of the same node is empty (its daemon is gone) and is made anew.
 */
export async function joinDaemonCpuset(base: string, name: string): Promise<DaemonCpuset> {
  const { pid } = process;
  const dir = path.join(base, name);
  const cpus = (await readOptional(path.join(base, 'cpuset.cpus')))?.trim() ?? '';
  const mems = (await readOptional(path.join(base, 'cpuset.mems')))?.trim() ?? '';
  await fs.rmdir(dir).catch((error: unknown) => {
    if (errnoCode(error) !== 'ENOENT') throw error;
  });
  await fs.mkdir(dir);
  await writeControl(path.join(dir, 'cpuset.cpus'), cpus);
  await writeControl(path.join(dir, 'cpuset.mems'), mems);
  await writeControl(path.join(dir, 'cgroup.procs'), pid);
  return {
    allCpus: parseCpuList(cpus),
    setCpus: (list) => writeControl(path.join(dir, 'cpuset.cpus'), list),
    release: async () => {
      await writeControl(path.join(base, 'cgroup.procs'), pid);
      await fs.rmdir(dir);
    },
  };
}
