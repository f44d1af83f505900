import { execFileSync } from 'node:child_process';
import fs from 'node:fs';

/**
 * Moving a process into a cgroup waits for an RCU grace period (the kernel's
 * per-CPU threadgroup rwsem), measured here at 15–25 ms per cold start. The
 * cgroup2 mount option `favordynmods` (Linux 6.0+) trades that for slightly
 * slower fork/exit and makes moves cost microseconds. It is a flag of the
 * whole machine, so Petri sets it only when root and `isolation.fastCgroupMoves`
 * is 'auto', and never clears it (another node may rely on it).
 */
export type FastMovesResult = 'already' | 'enabled' | 'unavailable';

export function cgroup2Mounts(mountsText: string): string[] {
  return mountsText
    .split('\n')
    .map((line) => line.split(' '))
    .filter((fields) => fields[2] === 'cgroup2')
    .map((fields) => fields[1]);
}

export function enableFastCgroupMoves(mountsFile = '/proc/mounts'): FastMovesResult {
  let text: string;
  try {
    text = fs.readFileSync(mountsFile, 'utf8');
  } catch {
    return 'unavailable';
  }
  if (/\bfavordynmods\b/.test(text)) return 'already';
  if (process.getuid?.() !== 0) return 'unavailable';
  for (const mount of cgroup2Mounts(text)) {
    try {
      execFileSync('mount', ['-o', 'remount,favordynmods', mount], { stdio: 'ignore' });
      return 'enabled';
    } catch {
      // an older kernel rejects the option; try the next mount
    }
  }
  return 'unavailable';
}
