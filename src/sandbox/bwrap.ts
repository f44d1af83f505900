import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { NodeConfig } from '../config.ts';
import { PetriError } from '../errors.ts';
import { findHostTool, TRUSTED_PATH } from './host-tools.ts';
import type { InheritedDescriptor, IsolationLayer, LayerInstance } from './layer.ts';
import { INSTANCE_HOME, INSTANCE_HOSTNAME, SandboxRoot } from './root.ts';
import { userNamespaceFilter } from './seccomp.ts';
import type { MechanismStatus, SandboxSpec } from './types.ts';
import { UidPool } from './uid-pool.ts';

export interface BwrapLayerOptions {
  /** The bwrap binary; found on the trusted PATH when absent. */
  binary?: string;
  /** setpriv (util-linux), which drops to the instance's uid; found on the trusted PATH when absent. */
  setpriv?: string;
  /** The Node binary instances run; default the daemon's own. */
  nodeBinary?: string;
  /** Extra host paths to show read-only inside (e.g. the runtime host's folder). */
  readOnlyPaths?: string[];
  warn?: (message: string) => void;
}

/** The descriptor bwrap reads the seccomp program from. */
const SECCOMP_FD = 4;
/** What bwrap keeps for setpriv, which uses them to drop to the instance's uid and then drops them. */
const SETPRIV_CAPS = ['CAP_SETUID', 'CAP_SETGID', 'CAP_SETPCAP'];

type BwrapConfig = Pick<NodeConfig, 'isolation' | 'stateDir' | 'sandbox'>;

/**
 * The bubblewrap layer. Each instance gets an empty root with only the
 * configured system folders (read-only), a curated /etc, the node binary,
 * the instance host and its own version folder (read-only), a private
 * size-capped /tmp and /dev/shm, its own pid/ipc/uts/mount namespaces and
 * /proc, of /sys only its own cgroup folders, and is killed with its parent. bwrap runs as root only to
 * build that; setpriv then becomes the instance's own reserved uid (one per
 * live instance, owning nothing on the host), with no capabilities, an
 * empty bounding set and no_new_privs, before the instance host starts. A
 * seccomp filter stops it from making user namespaces, the one way an
 * unprivileged process gets capabilities back. The network namespace is not
 * unshared here: the network layer enters a prepared one. Inherited
 * descriptors (the protocol pipe on fd 3) pass through unchanged.
 *
 * @example
 * const layer = bwrapLayer(config);
 * const instance = await layer.prepare(spec);
 * spawn(...instance.wrap([process.execPath, hostScript]));
 */
export function bwrapLayer(config: BwrapConfig, options: BwrapLayerOptions = {}): IsolationLayer {
  const binary = options.binary ?? findHostTool('bwrap');
  const setpriv = options.setpriv ?? findHostTool('setpriv');
  const nodeBinary = options.nodeBinary ?? process.execPath;
  const stateDir = path.resolve(config.stateDir);
  let status = preconditions(config, binary, setpriv);
  let layer: ActiveLayer | undefined;
  if (status.active && binary && setpriv) {
    const root = SandboxRoot.build({ stateDir, config: config.sandbox, nodeBinary });
    const filter = userNamespaceFilter();
    const seccompFile = filter && root.file('no-user-namespaces.bpf');
    if (seccompFile && filter) fs.writeFileSync(seccompFile, filter, { mode: 0o600 });
    const { first, count } = config.sandbox.uidRange;
    // Where this node starts in the range, so two nodes on one host rarely meet.
    const start = createHash('sha256').update(stateDir).digest().readUInt32BE(0) % count;
    layer = new ActiveLayer(binary, setpriv, root, new UidPool(first, count, start), seccompFile);
    const failure = probe(layer, nodeBinary);
    if (failure) {
      status = { name: 'bwrap', active: false, reason: failure };
      layer = undefined;
    } else {
      const clash = hostUserInRange(first, count);
      if (clash)
        options.warn?.(`sandbox.uidRange holds the host's user ${clash}: pick another range`);
    }
  }
  if (!status.active && config.isolation.bwrap !== 'off') {
    options.warn?.(`bwrap isolation inactive: ${status.reason}`);
  }
  const readOnlyPaths = (options.readOnlyPaths ?? []).map((p) => path.resolve(p));
  const active = layer;
  return {
    mechanisms: () => [{ ...status }],
    sandboxRoot: () => active?.root.report(active.seccompFile !== undefined),
    prepare: async (spec) =>
      active
        ? active.instance(spec, readOnlyPaths)
        : { wrap: (command) => command, destroy: async () => undefined },
    reconcile: async () => undefined,
    close: async () => undefined,
  };
}

function preconditions(
  config: BwrapConfig,
  binary: string | undefined,
  setpriv: string | undefined,
): MechanismStatus {
  const name = 'bwrap';
  if (config.isolation.bwrap === 'off') {
    return { name, active: false, reason: 'disabled by config (isolation.bwrap=off)' };
  }
  const trusted = TRUSTED_PATH.join(':');
  if (!binary) return { name, active: false, reason: `bwrap not found in ${trusted}` };
  if (process.geteuid?.() !== 0) return { name, active: false, reason: 'not root' };
  if (!setpriv) {
    return { name, active: false, reason: `setpriv (util-linux) not found in ${trusted}` };
  }
  return { name, active: true };
}

/**
 * Runs the whole chain once (namespaces, root, uid drop, seccomp) with the
 * node binary, so a kernel, bwrap or file mode that would stop instances
 * shows at start.
 */
function probe(layer: ActiveLayer, nodeBinary: string): string | undefined {
  const uid = layer.uids.take();
  if (uid === undefined) return 'sandbox.uidRange is empty';
  const descriptors = layer.openDescriptors();
  try {
    const args = layer.args(uid, 1024 * 1024, [], '/', [nodeBinary, '--version']);
    const stdio: ('ignore' | 'pipe' | number)[] = ['ignore', 'pipe', 'pipe', 'ignore'];
    for (const { fd, source } of descriptors) stdio[fd] = source;
    const result = spawnSync(layer.binary, args, {
      encoding: 'utf8',
      timeout: 10_000,
      stdio,
      env: { PATH: TRUSTED_PATH.join(':') },
    });
    if (result.error) return `bwrap failed to start: ${result.error.message}`;
    if (result.status !== 0) {
      return `bwrap failed: ${result.stderr.trim() || `exit ${result.status}`}`;
    }
    return undefined;
  } finally {
    for (const { source } of descriptors) fs.closeSync(source);
    layer.uids.release(uid);
  }
}

/** The first host user (from /etc/passwd) whose uid lies in the range, if any. */
function hostUserInRange(first: number, count: number): string | undefined {
  let text: string;
  try {
    text = fs.readFileSync('/etc/passwd', 'utf8');
  } catch {
    return undefined;
  }
  for (const line of text.split('\n')) {
    const [name, , uid] = line.split(':');
    const value = Number(uid);
    if (name && Number.isInteger(value) && value >= first && value < first + count) return name;
  }
  return undefined;
}

class ActiveLayer {
  constructor(
    readonly binary: string,
    private readonly setpriv: string,
    readonly root: SandboxRoot,
    readonly uids: UidPool,
    readonly seccompFile: string | undefined,
  ) {}

  instance(spec: SandboxSpec, readOnlyPaths: string[]): LayerInstance {
    const uid = this.uids.take();
    if (uid === undefined) {
      throw new PetriError(
        'CapacityExceeded',
        `every uid of sandbox.uidRange (${this.uids.count}) is in use by a live instance`,
      );
    }
    const tmpBytes = spec.resources.tmpSizeMb * 1024 * 1024;
    const binds = [...readOnlyPaths, path.resolve(spec.codeDir)];
    const writable = spec.writableDir === undefined ? [] : [path.resolve(spec.writableDir)];
    // The instance's user owns its output folder, and nothing else on the host.
    for (const dir of writable) fs.chownSync(dir, uid, uid);
    let released = false;
    return {
      env: { HOME: INSTANCE_HOME },
      descriptors: () => this.openDescriptors(),
      wrap: (command, context) => [
        this.binary,
        ...this.args(
          uid,
          tmpBytes,
          [...binds, ...(context?.ownPaths ?? [])],
          path.resolve(spec.cwd),
          command,
          writable,
        ),
      ],
      destroy: async () => {
        // Called after the sandbox's processes are gone (its pid namespace died with bwrap).
        if (!released) this.uids.release(uid);
        released = true;
      },
    };
  }

  openDescriptors(): InheritedDescriptor[] {
    if (!this.seccompFile) return [];
    return [{ fd: SECCOMP_FD, source: fs.openSync(this.seccompFile, 'r') }];
  }

  /** bwrap's arguments for one instance running `command` as `uid`. */
  args(
    uid: number,
    tmpBytes: number,
    binds: string[],
    cwd: string,
    command: string[],
    writable: string[] = [],
  ): string[] {
    // Absolute files the command names (node, the host script) must be bound too.
    const files = command.filter((arg) => path.isAbsolute(arg) && isFile(arg));
    return [
      // --new-session stops the instance from pushing input into the node's terminal (TIOCSTI).
      '--die-with-parent',
      '--unshare-pid',
      '--unshare-ipc',
      '--unshare-uts',
      ...['--hostname', INSTANCE_HOSTNAME],
      '--new-session',
      ...['--cap-drop', 'ALL'],
      ...SETPRIV_CAPS.flatMap((cap) => ['--cap-add', cap]),
      ...(this.seccompFile ? ['--seccomp', String(SECCOMP_FD)] : []),
      ...this.root.filesystemArgs(
        uid,
        tmpBytes,
        [...new Set([...binds, this.setpriv, ...files])],
        writable,
      ),
      ...['--chdir', cwd],
      '--',
      this.setpriv,
      `--reuid=${uid}`,
      `--regid=${uid}`,
      '--clear-groups',
      '--inh-caps=-all',
      '--bounding-set=-all',
      '--no-new-privs',
      '--',
      ...command,
    ];
  }
}

function isFile(file: string): boolean {
  try {
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}
