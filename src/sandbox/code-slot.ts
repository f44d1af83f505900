import { execFile } from 'node:child_process';
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
  ) {}

  /** The folder shown inside the sandbox (at the same path). */
  get dir(): string {
    return path.join(this.base, 'code');
  }

  private get hold(): string {
    return path.join(this.base, 'hold');
  }

  static async make(root: string, id: string, tools: MountTools): Promise<CodeSlot> {
    const slot = new CodeSlot(tools, path.join(root, id));
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
