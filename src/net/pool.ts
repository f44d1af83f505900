import type { SlotNames } from './naming.ts';

/** One ready network namespace: veth on the bridge, IFB, address configured. */
export interface Slot extends SlotNames {
  n: number;
  address: string;
  /** The MAC of the instance's eth0 (random, set at creation; group-path.ts). */
  mac: string;
  /** `shapeKey` of the shaping already installed, if any. */
  shaped?: string;
}

import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Keeps `size` ready namespaces so a cold start only pays for shaping (one
 * `tc -batch` round) instead of `ip netns add` plus two `ip -batch` rounds.
 * Refills one slot at a time in the background: on two cores a burst of
 * parallel `ip` processes would slow the cold starts it is meant to speed up.
 */
export class NamespacePool {
  private readonly ready: Slot[] = [];
  private filling: Promise<void> | undefined;
  private closed = false;

  constructor(
    private readonly size: number,
    private readonly create: () => Promise<Slot>,
    private readonly onError: (error: unknown) => void,
  ) {}

  /** A ready slot, or undefined when the pool is empty. */
  take(): Slot | undefined {
    return this.ready.shift();
  }

  /**
   * Starts a background refill unless one is running or the pool is full.
   * `delayMs` keeps it off a cold start's critical path: node's spawn() blocks
   * the event loop for a few ms (fork of a large process), so a refill
   * started at once would delay the instance's own spawn.
   */
  refill(delayMs = 0): void {
    if (this.filling || this.closed || this.ready.length >= this.size) return;
    const start = delayMs > 0 ? sleep(delayMs) : Promise.resolve();
    this.filling = start
      .then(() => this.fill())
      .finally(() => {
        this.filling = undefined;
      });
  }

  private async fill(): Promise<void> {
    while (!this.closed && this.ready.length < this.size) {
      try {
        this.ready.push(await this.create());
      } catch (error) {
        // Stop instead of spinning on a broken node; the next prepare retries.
        this.onError(error);
        return;
      }
    }
  }

  /** Resolves when no refill is running (the pool is full, closed or failed). */
  async idle(): Promise<void> {
    while (this.filling) await this.filling;
  }

  get readyCount(): number {
    return this.ready.length;
  }

  /** Stops refilling and hands back every ready slot for tear-down. */
  async drain(): Promise<Slot[]> {
    this.closed = true;
    await this.idle();
    return this.ready.splice(0);
  }
}
