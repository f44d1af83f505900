import type { Clock, Timer } from './clock.ts';

/**
 * Carries out a keep-alive policy's "start one at time T" decisions on the
 * pool's clock: at most one pending start per function, replaced by a newer
 * decision and cancelled when an invocation arrives first.
 */
export class PrewarmScheduler {
  private readonly pending = new Map<string, Timer>();

  constructor(
    private readonly clock: Clock,
    /** Starts one instance now; returns whether it could. */
    private readonly startAhead: (functionName: string) => boolean,
  ) {}

  schedule(functionName: string, at: number): void {
    this.cancel(functionName);
    const timer = this.clock.setTimer(
      Math.max(0, at - this.clock.now()),
      () => {
        this.pending.delete(functionName);
        this.startAhead(functionName);
      },
      { background: true },
    );
    this.pending.set(functionName, timer);
  }

  cancel(functionName: string): void {
    this.pending.get(functionName)?.cancel();
    this.pending.delete(functionName);
  }

  /** Pending starts (one per function at most). */
  size(): number {
    return this.pending.size;
  }

  clear(): void {
    for (const timer of this.pending.values()) timer.cancel();
    this.pending.clear();
  }
}
