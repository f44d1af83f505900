import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { NodeConfig } from '../config.ts';
import type { IsolationLayer, LayerInstance } from './layer.ts';
import type { MechanismStatus, SandboxSpec } from './types.ts';

export interface BwrapLayerOptions {
  /** The bwrap binary; found on PATH when absent. */
  binary?: string;
  /** Extra directories to show read-only inside (e.g. the runtime host's folder). */
  readOnlyPaths?: string[];
  warn?: (message: string) => void;
}

/** Where bwrap mounts a private tmpfs; anything under them must be bound back explicitly. */
const PRIVATE_TMP = '/tmp';

/**
 * The bubblewrap layer: read-only root, read-only code, a private size-capped
 * /tmp, its own pid/ipc/uts/mount namespaces, killed with its parent. The
 * state directory is covered by an empty tmpfs, so an instance sees its own
 * code folder and nothing of other functions or the database. The network
 * namespace is not unshared here: the network layer enters a prepared one.
 * Inherited descriptors (the protocol pipe on fd 3) pass through unchanged.
 *
 * @example
 * const layer = bwrapLayer(config);
 * const instance = await layer.prepare(spec);
 * spawn(...instance.wrap([process.execPath, hostScript]));
 */
export function bwrapLayer(
  config: Pick<NodeConfig, 'isolation' | 'stateDir'>,
  options: BwrapLayerOptions = {},
): IsolationLayer {
  const binary = options.binary ?? findOnPath('bwrap');
  const status = bwrapStatus(config, binary);
  if (!status.active && config.isolation.bwrap !== 'off') {
    options.warn?.(`bwrap isolation inactive: ${status.reason}`);
  }
  const stateDir = path.resolve(config.stateDir);
  return {
    mechanisms: () => [{ ...status }],
    prepare: async (spec) =>
      status.active && binary
        ? bwrapInstance(binary, stateDir, spec, options.readOnlyPaths ?? [])
        : { wrap: (command) => command, destroy: async () => undefined },
    reconcile: async () => undefined,
    close: async () => undefined,
  };
}

function bwrapStatus(
  config: Pick<NodeConfig, 'isolation'>,
  binary: string | undefined,
): MechanismStatus {
  const name = 'bwrap';
  if (config.isolation.bwrap === 'off') {
    return { name, active: false, reason: 'disabled by config (isolation.bwrap=off)' };
  }
  if (!binary) return { name, active: false, reason: 'bwrap not found on PATH' };
  if (process.geteuid?.() !== 0) return { name, active: false, reason: 'not root' };
  const failure = probe(binary);
  return failure ? { name, active: false, reason: failure } : { name, active: true };
}

/** Runs bwrap once with the namespaces Petri uses, so a kernel that forbids them shows at start. */
function probe(binary: string): string | undefined {
  const args = [...namespaceArgs(), '--ro-bind', '/', '/', '--proc', '/proc', '--', '/bin/true'];
  const result = spawnSync(binary, args, { encoding: 'utf8', timeout: 5000 });
  if (result.error) return `bwrap failed to start: ${result.error.message}`;
  if (result.status !== 0)
    return `bwrap failed: ${result.stderr.trim() || `exit ${result.status}`}`;
  return undefined;
}

function findOnPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(':')) {
    const file = path.join(dir, name);
    try {
      fs.accessSync(file, fs.constants.X_OK);
      return file;
    } catch {
      // Not in this directory.
    }
  }
  return undefined;
}

function namespaceArgs(): string[] {
  // --new-session stops the instance from pushing input into the node's terminal (TIOCSTI).
  // bwrap run as root keeps every capability unless told otherwise: without --cap-drop a
  // function could remount its root read-write or rewrite its namespace's routes.
  return [
    '--die-with-parent',
    '--unshare-pid',
    '--unshare-ipc',
    '--unshare-uts',
    '--new-session',
    '--cap-drop',
    'ALL',
  ];
}

function bwrapInstance(
  binary: string,
  stateDir: string,
  spec: SandboxSpec,
  extraPaths: string[],
): LayerInstance {
  const codeDir = path.resolve(spec.codeDir);
  const tmpBytes = spec.resources.tmpSizeMb * 1024 * 1024;
  const hidden = [PRIVATE_TMP, stateDir];
  const base = [
    ...namespaceArgs(),
    ...['--hostname', 'petri'],
    ...['--ro-bind', '/', '/'],
    ...['--dev', '/dev'],
    ...['--proc', '/proc'],
    ...['--size', String(tmpBytes), '--tmpfs', PRIVATE_TMP],
    // An empty tmpfs over the state dir hides other functions' code and the database.
    ...(isUnder(stateDir, PRIVATE_TMP) ? [] : ['--size', '1048576', '--tmpfs', stateDir]),
  ];
  return {
    wrap: (command) => {
      const binds = new Set([codeDir, ...extraPaths.map((p) => path.resolve(p))]);
      for (const dir of commandDirs(command)) {
        if (hidden.some((top) => isUnder(dir, top))) binds.add(dir);
      }
      const bindArgs = [...binds].flatMap((dir) => ['--ro-bind', dir, dir]);
      return [binary, ...base, ...bindArgs, '--chdir', path.resolve(spec.cwd), '--', ...command];
    },
    destroy: async () => undefined,
  };
}

/**
 * Folders of the absolute file paths in a command (the node binary, the host
 * script): when they sit in a hidden place (/tmp, the state dir) they must be
 * bound back or the command cannot start inside.
 */
function commandDirs(command: string[]): string[] {
  return command
    .filter((arg) => path.isAbsolute(arg) && isFile(arg))
    .map((arg) => path.dirname(arg));
}

function isFile(file: string): boolean {
  try {
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

function isUnder(child: string, parent: string): boolean {
  const rel = path.relative(parent, child);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}
