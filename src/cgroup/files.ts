import fs from 'node:fs/promises';
import {
  closeSync,
  ftruncateSync,
  openSync,
  readFileSync,
  statfsSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** Node's errno code of an error, if it has one. */
export function errnoCode(error: unknown): string | undefined {
  return error instanceof Error && 'code' in error && typeof error.code === 'string'
    ? error.code
    : undefined;
}

/**
 * Reads a control file, or undefined when it does not exist (the kernel lacks
 * the feature). Synchronous on purpose: usage is read after every invocation,
 * and a tiny cgroupfs read costs microseconds, less than an async round trip.
 */
export async function readOptional(file: string): Promise<string | undefined> {
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return undefined;
    throw error;
  }
}

/** Reads a control file holding one integer ("max" reads as Infinity). */
export async function readNumber(file: string): Promise<number | undefined> {
  const text = await readOptional(file);
  if (text === undefined) return undefined;
  const trimmed = text.trim();
  if (trimmed === 'max') return Infinity;
  const value = Number(trimmed);
  return Number.isFinite(value) ? value : undefined;
}

/** Reads one `key value` line of a flat-keyed file (cpu.stat, memory.events, memory.oom_control). */
export async function readKey(file: string, key: string): Promise<number | undefined> {
  const text = await readOptional(file);
  if (text === undefined) return undefined;
  for (const line of text.split('\n')) {
    const [name, value] = line.trim().split(/\s+/);
    if (name === key) return Number(value);
  }
  return undefined;
}

/** Writes a control file. cgroupfs rejects bad values with an errno, which this rethrows with the path. */
export async function writeControl(file: string, value: string | number): Promise<void> {
  try {
    // Synchronous for the same reason as readOptional: a control write is a few µs.
    writeFileSync(file, String(value));
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw Object.assign(new Error(`cannot write ${value} to ${file}: ${message}`), {
      code: errnoCode(error),
    });
  }
}

/**
 * A control file written often (a phase change's quota or cpuset), kept
 * open: a write on an open descriptor costs about half an open-write-close
 * (4–6 µs against 12 µs here). cgroupfs takes each write whole, so only a
 * plain file (the fake trees of tests) is truncated first (~1.5 µs saved a
 * write on cgroupfs).
 */
/** statfs types of cgroup v1 and v2 mounts (linux/magic.h). */
const CGROUP_MAGIC = new Set([0x27e0eb, 0x63677270]);

export class KeptControl {
  private fd: number | undefined;
  private truncate = true;

  constructor(readonly file: string) {}

  write(value: string | number): void {
    const text = String(value);
    try {
      if (this.fd === undefined) {
        this.fd = openSync(this.file, 'r+');
        this.truncate = !CGROUP_MAGIC.has(statfsSync(this.file).type);
      }
      if (this.truncate) ftruncateSync(this.fd, 0);
      writeSync(this.fd, text, 0);
    } catch (error) {
      this.close();
      const message = error instanceof Error ? error.message : String(error);
      throw Object.assign(new Error(`cannot write ${text} to ${this.file}: ${message}`), {
        code: errnoCode(error),
      });
    }
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

/** Writes a control file only where the kernel has it (memsw, swap.max, oom.group…). */
export async function writeIfPresent(file: string, value: string | number): Promise<boolean> {
  if (!(await exists(file))) return false;
  await writeControl(file, value);
  return true;
}

export async function exists(file: string): Promise<boolean> {
  try {
    await fs.access(file);
    return true;
  } catch {
    return false;
  }
}

/** PIDs listed in a cgroup.procs file (none when it is gone). */
export async function readPids(file: string): Promise<number[]> {
  const text = await readOptional(file);
  if (text === undefined) return [];
  return text
    .split('\n')
    .map((line) => Number(line.trim()))
    .filter((pid) => Number.isInteger(pid) && pid > 0);
}

/** False once the process is gone, even if a stale cgroup.procs (fake trees) still lists it. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return errnoCode(error) !== 'ESRCH';
  }
}

export function killAll(pids: number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Already gone: nothing to kill.
    }
  }
}

/**
 * SIGKILLs what the procs files list until none is left alive. Repeats the kill
 * because a process may fork between reading the list and the kill landing.
 */
export async function killUntilEmpty(procsFiles: string[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const lists = await Promise.all(procsFiles.map(readPids));
    const left = [...new Set(lists.flat())].filter(alive);
    if (left.length === 0) return;
    if (Date.now() > deadline) {
      throw new Error(`processes ${left.join(', ')} still in ${procsFiles[0]} after kill`);
    }
    killAll(left);
    await sleep(5);
  }
}

/**
 * Removes a cgroup directory. The kernel answers EBUSY for a short while after
 * the last process died (it is still being reaped), so retry briefly.
 */
export async function rmdirCgroup(dir: string, timeoutMs = 1000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await fs.rmdir(dir);
      return;
    } catch (error) {
      const code = errnoCode(error);
      if (code === 'ENOENT') return;
      if (code !== 'EBUSY' || Date.now() > deadline) throw error;
      await sleep(5);
    }
  }
}

/**
 * Runs `make` again when a level of its path vanished under it: a node that
 * stops removes the shared `petri` parent once no other node is inside, which
 * may fall between this node's mkdir of `petri` and of `petri/<tag>` (ENOENT;
 * ENODEV while the kernel is still removing it).
 */
export async function retryVanishedParent<T>(make: () => Promise<T>, attempts = 5): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await make();
    } catch (error) {
      const code = errnoCode(error);
      if ((code !== 'ENOENT' && code !== 'ENODEV') || attempt >= attempts) throw error;
    }
  }
}

/** Child cgroups of a directory (sub-directories; control files are plain files). */
export async function childCgroups(dir: string): Promise<string[]> {
  try {
    const entries = await fs.readdir(dir, { withFileTypes: true });
    return entries.filter((e) => e.isDirectory()).map((e) => path.join(dir, e.name));
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return [];
    throw error;
  }
}

/** Checks a relative cgroup name: plain segments only, so nothing escapes the node's cgroup. */
export function checkName(name: string): string[] {
  const parts = name.split('/');
  for (const part of parts) {
    if (!/^[A-Za-z0-9_.-]+$/.test(part) || part === '.' || part === '..') {
      throw new Error(`invalid cgroup name ${JSON.stringify(name)}`);
    }
  }
  return parts;
}

/** CFS bandwidth period Petri uses everywhere: 100 ms (DESIGN §9). */
export const CFS_PERIOD_US = 100_000;
/** The kernel refuses quotas under 1 ms. */
const MIN_QUOTA_US = 1000;

/** Quota in µs per 100 ms period for `cpu` vCPUs; undefined means unlimited. */
export function cpuQuotaUs(cpu: number): number | undefined {
  if (!Number.isFinite(cpu) || cpu <= 0) return undefined;
  return Math.max(MIN_QUOTA_US, Math.round(cpu * CFS_PERIOD_US));
}
