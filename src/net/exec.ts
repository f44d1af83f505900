import { execFileSync, spawn } from 'node:child_process';

/** A host command (ip, tc, iptables, …) exited non-zero. */
export class NetCommandError extends Error {
  readonly code = 'NetCommandFailed';
  constructor(
    readonly command: readonly string[],
    readonly exitCode: number | null,
    readonly stderr: string,
  ) {
    super(`${command.join(' ')} exited ${exitCode}: ${stderr.trim() || '(no output)'}`);
  }
}

/**
 * Runs a program without a shell and resolves with its stdout. `input` goes
 * to stdin — that is how `ip -batch -` / `tc -batch -` get their lines, so one
 * process (one netlink round) does a whole set-up or tear-down.
 */
export function run(file: string, args: readonly string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    // A program that fails early closes stdin; the exit code tells the story.
    child.stdin.on('error', () => undefined);
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve(stdout);
      else reject(new NetCommandError([file, ...args], code, stderr));
    });
    child.stdin.end(input ?? '');
  });
}

/** True when `file args…` runs and exits 0 (used only by the start-up probe). */
export function succeedsSync(file: string, args: readonly string[]): boolean {
  try {
    execFileSync(file, args, { stdio: 'ignore', timeout: 5000 });
    return true;
  } catch {
    return false;
  }
}

export interface BatchOptions {
  /** Run inside this named network namespace (`-n`). */
  netns?: string;
  /** Keep going after a failing line (tear-down), still exiting non-zero. */
  force?: boolean;
}

function batchArgs(options: BatchOptions): string[] {
  return [
    ...(options.netns ? ['-n', options.netns] : []),
    ...(options.force ? ['-force'] : []),
    '-batch',
    '-',
  ];
}

/** One `ip -batch -` round. */
export function ipBatch(lines: readonly string[], options: BatchOptions = {}): Promise<string> {
  return run('ip', batchArgs(options), lines.join('\n') + '\n');
}

/** One `tc -batch -` round. */
export function tcBatch(lines: readonly string[], options: BatchOptions = {}): Promise<string> {
  return run('tc', batchArgs(options), lines.join('\n') + '\n');
}
