import fs from 'node:fs/promises';
import path from 'node:path';
import { errnoCode, readOptional, readPids, writeControl } from './files.ts';

/**
 * The daemon's own cpuset cgroup, so CPU placement can pin and unpin the
 * whole daemon (every thread) with one µs write instead of forking `taskset`.
 */
export interface DaemonCpuset {
  /** The cores the node may use (its own cgroup's cpuset), ascending. */
  readonly allCpus: number[];
  setCpus(cpus: string): Promise<void>;
  /**
   * Moves the daemon (every thread) and any child still inside back to the
   * node's cgroup, then removes its own. Rejects, leaving the cgroup, when a
   * move fails: the rmdir could only fail with EBUSY then.
   */
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

/** Every node's daemon cpuset is `<this><node tag>`, beside the node's cgroup. */
export const DAEMON_CPUSET_PREFIX = 'petri-daemon-';

/** Long enough that a node is past the few µs between creating its cpuset and joining it. */
const STALE_AFTER_MS = 60_000;

/**
 * Removes the empty daemon cpusets in `base` older than `minAgeMs`. A plain
 * rmdir, never a retrying one: on a cgroup that holds a live daemon it fails
 * at once, which is how a node in use is told from a crashed one.
 */
export async function removeStaleDaemonCpusets(
  base: string,
  minAgeMs = STALE_AFTER_MS,
): Promise<string[]> {
  const names = (await fs.readdir(base).catch(() => [] as string[])).filter((name) =>
    name.startsWith(DAEMON_CPUSET_PREFIX),
  );
  const removed: string[] = [];
  for (const name of names) {
    const dir = path.join(base, name);
    const stat = await fs.stat(dir).catch(() => undefined);
    if (!stat?.isDirectory() || Date.now() - stat.ctimeMs < minAgeMs) continue;
    if (
      await fs.rmdir(dir).then(
        () => true,
        () => false,
      )
    )
      removed.push(name);
  }
  return removed;
}

/** Rounds of moving children out: each round catches what a child forked meanwhile. */
const CHILD_MOVE_ROUNDS = 10;

/**
 * Makes `<base>/<name>` in the v1 cpuset hierarchy with the node's cores and
 * memory nodes and moves this process into it. A directory left by a crashed
 * run of the same node is empty (its daemon is gone) and is made anew.
 * `removeDir` removes the directory on release (a retrying rmdir for real
 * cgroupfs, a recursive rm on the plain files of a fake tree).
 */
export async function joinDaemonCpuset(
  base: string,
  name: string,
  removeDir: (dir: string) => Promise<void>,
): Promise<DaemonCpuset> {
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
      // The daemon first, so nothing it forks from now on lands inside.
      await writeControl(path.join(base, 'cgroup.procs'), pid);
      await moveThreads(base);
      await moveChildren(dir, base, pid);
      await removeDir(dir);
    },
  };
}

/**
 * cgroup.procs moves the whole thread group at once; writing each thread to
 * `tasks` as well makes sure of it thread by thread (a thread already there
 * is a no-op), once per stop.
 */
async function moveThreads(base: string): Promise<void> {
  for (const tid of await fs.readdir('/proc/self/task')) {
    await moveIgnoringGone(path.join(base, 'tasks'), Number(tid));
  }
}

/**
 * Children forked while the daemon was pinned (an `ip` run, a shell that has
 * not yet joined its instance's cgroup) start inside the daemon's cpuset and
 * keep it busy until they exit or move.
 */
async function moveChildren(dir: string, base: string, self: number): Promise<void> {
  for (let round = 0; round < CHILD_MOVE_ROUNDS; round++) {
    const inside = (await readPids(path.join(dir, 'cgroup.procs'))).filter((p) => p !== self);
    if (inside.length === 0) return;
    for (const child of inside) await moveIgnoringGone(path.join(base, 'cgroup.procs'), child);
  }
}

/** A process or thread that exited meanwhile (ESRCH) has nothing left to move. */
async function moveIgnoringGone(file: string, id: number): Promise<void> {
  try {
    await writeControl(file, id);
  } catch (error) {
    if (errnoCode(error) !== 'ESRCH') throw error;
  }
}
