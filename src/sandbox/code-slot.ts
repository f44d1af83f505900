import { execFile, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { PetriError } from '../errors.ts';
import { findHostTool } from './host-tools.ts';

const run = promisify(execFile);

/** mount and umount (util-linux) and sh, from the trusted PATH. */
export interface MountTools {
  mount: string;
  umount: string;
  sh: string;
}

export function findMountTools(): MountTools | undefined {
  const mount = findHostTool('mount');
  const umount = findHostTool('umount');
  const sh = findHostTool('sh');
  return mount && umount && sh ? { mount, umount, sh } : undefined;
}

/**
 * Both mounts of a fill in one spawn: a spawn from the daemon (a large
 * process) costs far more than the mounts (about 45 ms each on a loaded
 * 2-core node, against 50 ms for one sh running both). The script is a
 * constant; mount and the paths come as its arguments, never in its text.
 */
const FILL_SCRIPT = '"$0" --bind -o ro "$1" "$2" && "$0" --bind "$2" "$3"';

/** FILL_SCRIPT in a loop: three paths a line each in, the exit status a line out. */
const FILL_LOOP =
  'while IFS= read -r src && IFS= read -r hold && IFS= read -r dir; do ' +
  '"$0" --bind -o ro "$src" "$hold" && "$0" --bind "$hold" "$dir"; echo "$?"; done';

/**
 * One small long-lived `sh` that makes a bind's mounts: a spawn from the
 * daemon itself copies its page tables (15–20 ms measured at 200 MB of RSS,
 * most of a bind), a fork from this shell costs about a millisecond. Fills
 * go one at a time. The paths are the daemon's own, one per line (a path
 * with a newline is refused); the shell exits when its stdin closes, so it
 * cannot outlive the daemon.
 */
export class MountShell {
  private child: ChildProcessWithoutNullStreams | undefined;
  private tail: Promise<void> = Promise.resolve();
  private stderr = '';
  private pending: ((status: string | undefined) => void) | undefined;
  private buffered = '';

  constructor(private readonly tools: MountTools) {}

  /** Binds `codeDir` read-only onto `hold`, then `hold` onto `dir`. */
  fill(codeDir: string, hold: string, dir: string): Promise<void> {
    const paths = [codeDir, hold, dir];
    if (paths.some((p) => p.includes('\n'))) {
      return Promise.reject(new PetriError('Internal', 'a mount path holds a newline'));
    }
    const done = this.tail.then(() => this.request(paths));
    this.tail = done.catch(() => undefined);
    return done;
  }

  /** Ends the shell and waits for it to exit. */
  async close(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    // Held again while it exits: an unref'd child would let a stopping daemon's
    // event loop run dry here and exit before the rest of its clean-up.
    child.ref();
    for (const stream of [child.stdin, child.stdout, child.stderr]) {
      (stream as unknown as { ref?: () => void }).ref?.();
    }
    child.stdin.end();
    await exited;
  }

  private async request(paths: string[]): Promise<void> {
    const child = this.shell();
    this.stderr = '';
    const status = await new Promise<string | undefined>((resolve) => {
      this.pending = resolve;
      child.stdin.write(paths.join('\n') + '\n');
    });
    if (status !== '0') {
      const why =
        this.stderr.trim() || (status === undefined ? 'the mount shell exited' : `exit ${status}`);
      throw new PetriError('Internal', `mount ${paths[0]} into ${paths[2]} failed: ${why}`);
    }
  }

  private shell(): ChildProcessWithoutNullStreams {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null)
      return this.child;
    const child = spawn(this.tools.sh, ['-c', FILL_LOOP, this.tools.mount], {
      env: {},
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.buffered = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      this.buffered += chunk;
      let newline = this.buffered.indexOf('\n');
      while (newline >= 0) {
        const line = this.buffered.slice(0, newline);
        this.buffered = this.buffered.slice(newline + 1);
        this.settle(line);
        newline = this.buffered.indexOf('\n');
      }
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      // Only the last few KB matter for an error message.
      this.stderr = (this.stderr + chunk).slice(-4096);
    });
    child.on('exit', () => {
      if (this.child === child) this.child = undefined;
      this.settle(undefined);
    });
    child.on('error', () => this.settle(undefined));
    // An idle shell must not keep the daemon's event loop alive.
    child.unref();
    for (const stream of [child.stdin, child.stdout, child.stderr]) {
      (stream as unknown as { unref?: () => void }).unref?.();
    }
    this.child = child;
    return child;
  }

  private settle(status: string | undefined): void {
    const pending = this.pending;
    this.pending = undefined;
    pending?.(status);
  }
}

/**
 * The empty folder a prewarmed runtime's sandbox shows (read-only) where a
 * function's code will appear, and the one way code gets there.
 *
 * `dir` is bind-mounted onto itself and made a shared mount before the
 * sandbox starts, so the sandbox's copy of it (bwrap makes every mount a
 * slave) receives mounts made on it later from outside. `fill` binds one
 * version folder read-only onto `hold` (a host-only folder beside it) and
 * then `hold` onto `dir`: the copy that reaches the sandbox is cloned from
 * a read-only mount, so it is read-only inside too (a remount would change
 * the host's mount only). Nothing else is ever mounted on `dir`: before
 * `fill` the sandbox sees an empty folder, after it one function's code.
 * Every argument is a path the daemon made; nothing comes from a function.
 */
export class CodeSlot {
  private filled = false;

  private constructor(
    private readonly tools: MountTools,
    /** `<root>/<instanceId>`, holding `code` and `hold`. */
    private readonly base: string,
    private readonly shell: MountShell | undefined,
  ) {}

  /** The folder shown inside the sandbox (at the same path). */
  get dir(): string {
    return path.join(this.base, 'code');
  }

  private get hold(): string {
    return path.join(this.base, 'hold');
  }

  static async make(
    root: string,
    id: string,
    tools: MountTools,
    shell?: MountShell,
  ): Promise<CodeSlot> {
    const slot = new CodeSlot(tools, path.join(root, id), shell);
    fs.mkdirSync(slot.hold, { recursive: true, mode: 0o700 });
    // The instance's user must enter it (and its parents), never write it.
    fs.mkdirSync(slot.dir, { recursive: true, mode: 0o755 });
    for (const dir of [root, slot.base]) fs.chmodSync(dir, 0o711);
    try {
      // One run: the bind, then (util-linux applies it after) the shared propagation.
      await slot.mount('--bind', '--make-shared', slot.dir, slot.dir);
    } catch (err) {
      await slot.remove();
      throw err;
    }
    return slot;
  }

  /** Shows `codeDir` read-only in the slot (once). */
  async fill(codeDir: string): Promise<void> {
    if (this.filled) throw new PetriError('Internal', 'a prewarmed runtime is bound only once');
    this.filled = true;
    // `mount --bind -o ro` binds and then remounts read-only (two syscalls).
    if (this.shell) return this.shell.fill(path.resolve(codeDir), this.hold, this.dir);
    const args = ['-c', FILL_SCRIPT, this.tools.mount, path.resolve(codeDir), this.hold, this.dir];
    await this.exec(this.tools.sh, args, `mount ${path.resolve(codeDir)} into ${this.dir}`);
  }

  /** Unmounts everything in the slot and deletes it. Idempotent. */
  async remove(): Promise<void> {
    await unmountUnder(this.base, this.tools);
    fs.rmSync(this.base, { recursive: true, force: true });
  }

  private mount(...args: string[]): Promise<void> {
    return this.exec(this.tools.mount, args, `mount ${args.join(' ')}`);
  }

  private async exec(file: string, args: string[], what: string): Promise<void> {
    try {
      await run(file, args, { timeout: 10_000, env: {} });
    } catch (err) {
      const stderr = (err as { stderr?: string }).stderr?.trim();
      throw new PetriError('Internal', `${what} failed: ${stderr || String(err)}`);
    }
  }
}

/** Mount points at or under `dir` (from /proc/self/mountinfo), deepest and newest first. */
export function mountsUnder(dir: string): string[] {
  const root = path.resolve(dir);
  let text: string;
  try {
    text = fs.readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return [];
  }
  const points: string[] = [];
  for (const line of text.split('\n')) {
    // Field 5 is the mount point, with spaces and the like written as octal escapes.
    const field = line.split(' ')[4];
    if (field === undefined) continue;
    const point = field.replace(/\\([0-7]{3})/g, (_, code: string) =>
      String.fromCharCode(parseInt(code, 8)),
    );
    if (point === root || point.startsWith(root + '/')) points.push(point);
  }
  return points.reverse();
}

/** Unmounts every mount at or under `dir` (a slot holds up to three, stacked). */
export async function unmountUnder(dir: string, tools: MountTools): Promise<void> {
  for (let pass = 0; pass < 8; pass++) {
    const points = mountsUnder(dir);
    if (points.length === 0) return;
    for (const point of points) {
      await run(tools.umount, ['-l', point], { timeout: 10_000 }).catch(() => undefined);
    }
  }
}
