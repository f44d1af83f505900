import fs from 'node:fs';
import path from 'node:path';

/**
 * Where the launch chain's host tools are looked up: system directories only.
 * Never the daemon's own PATH (npm puts node_modules/.bin first) and never
 * /usr/local, which is group-writable on Debian.
 */
export const TRUSTED_PATH = ['/usr/sbin', '/usr/bin', '/sbin', '/bin'] as const;

/** The programs the launch chain runs as root before the sandbox exists. */
export const LAUNCH_TOOLS = ['sh', 'nsenter', 'bwrap', 'setpriv'] as const;
export type LaunchTool = (typeof LAUNCH_TOOLS)[number];

/** Each launch tool's absolute path, or undefined when it is not on the trusted path. */
export type HostTools = Record<LaunchTool, string | undefined>;

/**
 * Finds `name` in TRUSTED_PATH: an executable regular file that only its
 * owner can change (and, when the daemon is root, owned by root), so nobody
 * but root can swap what the chain runs as root.
 *
 * @example findHostTool('nsenter') // '/usr/sbin/nsenter'
 */
export function findHostTool(name: string): string | undefined {
  const asRoot = process.geteuid?.() === 0;
  for (const dir of TRUSTED_PATH) {
    const file = path.join(dir, name);
    try {
      const stat = fs.statSync(file);
      const writableByOthers = (stat.mode & 0o022) !== 0;
      if (!stat.isFile() || writableByOthers || (asRoot && stat.uid !== 0)) continue;
      fs.accessSync(file, fs.constants.X_OK);
      return file;
    } catch {
      // Not in this directory.
    }
  }
  return undefined;
}

/** Resolves every launch tool once, at start. */
export function resolveHostTools(): HostTools {
  const tools = {} as HostTools;
  for (const name of LAUNCH_TOOLS) tools[name] = findHostTool(name);
  return tools;
}
