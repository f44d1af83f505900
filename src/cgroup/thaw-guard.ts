import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';

/** Where a node's instances' freeze switches are: `<dir>/<instance>/<file>`, thawed by `thawed`. */
export interface FreezeControl {
  dir: string;
  file: string;
  thawed: string;
}

/**
 * Waits for EOF on stdin (the daemon is gone, however it ended), then writes
 * the thaw value into every instance's freeze file. Paths and value come as
 * arguments, never inside the script text.
 */
const GUARD_SCRIPT =
  'while read -r _; do :; done; for f in "$1"/*/"$2"; do [ -f "$f" ] && echo "$3" > "$f"; done 2>/dev/null; exit 0';

/**
 * Thaws the node's frozen instances if the daemon dies. A frozen instance
 * cannot notice that its pipe to the daemon closed (the instance host exits
 * on that), so after a crash it would sit frozen, holding its memory, until
 * the node's next start. The guard is a shell outside every instance cgroup,
 * blocked reading a pipe only the daemon holds; when the pipe closes it
 * thaws them all, and the hosts then see their pipe closed and exit.
 */
export class ThawGuard {
  private constructor(private readonly child: ChildProcess) {}

  static start(shell: string, control: FreezeControl): ThawGuard {
    const child = spawn(
      shell,
      ['-c', GUARD_SCRIPT, 'petri-thaw-guard', control.dir, control.file, control.thawed],
      // Its own session: a Ctrl-C meant for the daemon must not end the guard first.
      { stdio: ['pipe', 'ignore', 'ignore'], detached: true },
    );
    child.on('error', () => undefined);
    child.stdin?.on('error', () => undefined);
    // Neither the guard nor its pipe keeps the daemon's event loop alive.
    child.unref();
    (child.stdin as unknown as { unref?: () => void } | null)?.unref?.();
    return new ThawGuard(child);
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Ends the guard (a graceful stop: its instances are gone already) and waits for it. */
  async close(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = once(this.child, 'exit');
    this.child.stdin?.end();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 2000);
    await exited;
    clearTimeout(timer);
  }
}
