import { existsSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { readOptional, writeControl } from './files.ts';

/**
 * The cgroup freezer: a frozen cgroup keeps its memory and gets no CPU time
 * until it is thawed. A freeze is asked for with one write and completes
 * asynchronously (v1 shows FREEZING, v2 `frozen 0` in cgroup.events, until
 * every task has stopped), so `freeze` polls until the kernel says it is done.
 */

/** How long a freeze may take before it is given up (and undone). */
export const FREEZE_TIMEOUT_MS = 1000;
const POLL_MS = 1;

/** v1: `freezer.state` in the instance's freezer-hierarchy directory. */
export async function freezeV1(dir: string, timeoutMs = FREEZE_TIMEOUT_MS): Promise<void> {
  const file = path.join(dir, 'freezer.state');
  await writeControl(file, 'FROZEN');
  await waitFor(
    async () => (await readOptional(file))?.trim() === 'FROZEN',
    timeoutMs,
    () => thawV1(dir),
  );
}

/** Synchronous like every control write: a thaw is on the paused path's critical path. */
export async function thawV1(dir: string): Promise<void> {
  await writeWhereExists(path.join(dir, 'freezer.state'), 'THAWED');
}

/** v2: `cgroup.freeze` (kernel 5.2+), done once `cgroup.events` says `frozen 1`. */
export async function freezeV2(dir: string, timeoutMs = FREEZE_TIMEOUT_MS): Promise<void> {
  await writeControl(path.join(dir, 'cgroup.freeze'), 1);
  await waitFor(
    () => isFrozenV2(dir),
    timeoutMs,
    () => thawV2(dir),
  );
}

export async function thawV2(dir: string): Promise<void> {
  await writeWhereExists(path.join(dir, 'cgroup.freeze'), 0);
}

/** A thaw also runs over every hierarchy's folder at clean-up, where most have no freezer file. */
async function writeWhereExists(file: string, value: string | number): Promise<void> {
  if (existsSync(file)) await writeControl(file, value);
}

async function isFrozenV2(dir: string): Promise<boolean> {
  const events = (await readOptional(path.join(dir, 'cgroup.events'))) ?? '';
  return /^frozen 1$/m.test(events);
}

async function waitFor(
  done: () => Promise<boolean>,
  timeoutMs: number,
  undo: () => Promise<void>,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await done())) {
    if (Date.now() > deadline) {
      await undo();
      throw new Error(`cgroup did not freeze within ${timeoutMs} ms`);
    }
    await sleep(POLL_MS);
  }
}
