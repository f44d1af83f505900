import type { Clock, Timer } from '../node/index.ts';

/**
 * Processor sharing of a node's cores among the invocations running on it:
 * with `k` of them, each progresses at `min(1, cores / k)` (a function runs
 * on at most one core), so an invocation that needs `cpuMs` of a core alone
 * takes `cpuMs × max(1, k / cores)` while `k` stay. One timer, for the
 * next to finish, re-set whenever one starts or ends.
 */
export class CpuShare {
  private readonly jobs: { left: number; done: () => void }[] = [];
  private last: number;
  private timer: Timer | undefined;

  constructor(
    private readonly clock: Clock,
    readonly cores: number,
  ) {
    if (!(cores > 0)) throw new RangeError(`cores must be > 0, got ${cores}`);
    this.last = clock.now();
  }

  /** Invocations running now. */
  get running(): number {
    return this.jobs.length;
  }

  /** Runs `cpuMs` of work; `done` is called (on a timer, never inside this call) once it is served. */
  run(cpuMs: number, done: () => void): void {
    this.progress();
    this.jobs.push({ left: Math.max(0, cpuMs), done });
    this.reschedule();
  }

  private rate(): number {
    return Math.min(1, this.cores / Math.max(1, this.jobs.length));
  }

  private progress(): void {
    const now = this.clock.now();
    const served = (now - this.last) * this.rate();
    this.last = now;
    if (served <= 0) return;
    for (const job of this.jobs) job.left -= served;
  }

  private reschedule(): void {
    this.timer?.cancel();
    this.timer = undefined;
    if (this.jobs.length === 0) return;
    let least = Infinity;
    for (const job of this.jobs) least = Math.min(least, job.left);
    this.timer = this.clock.setTimer(Math.max(0, least) / this.rate(), () => this.due());
  }

  private due(): void {
    this.timer = undefined;
    this.progress();
    const finished: (() => void)[] = [];
    for (let i = this.jobs.length - 1; i >= 0; i--) {
      // Within a microsecond of a core: done (floating-point remainders).
      if (this.jobs[i].left <= 1e-3) {
        finished.push(this.jobs[i].done);
        this.jobs.splice(i, 1);
      }
    }
    this.reschedule();
    for (let i = finished.length - 1; i >= 0; i--) finished[i]();
  }
}
