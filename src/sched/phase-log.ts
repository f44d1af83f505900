import { MICROTASKS_PER_INVOCATION, type MicrotaskRecord, type SchedClock } from './types.ts';

/** A phase being recorded: its record, filled in as it waits, runs and ends. */
export interface OpenPhase {
  readonly record: MicrotaskRecord;
  readonly announcedAt: number;
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

/**
 * One invocation's phases in order, by the paper's rule: a phase ends when
 * the next begins or the invocation ends. Past MICROTASKS_PER_INVOCATION
 * announcements only a count is kept, so a hostile loop costs the daemon
 * nothing more.
 */
export class PhaseLog {
  private readonly records: MicrotaskRecord[] = [];
  private open: OpenPhase | undefined;
  private dropped = 0;
  private finished = false;

  constructor(
    private readonly clock: SchedClock,
    private readonly startedAt: number,
  ) {}

  /** Ends the open phase and opens `name`; undefined when over the cap or finished. */
  announce(name: string, className: string): OpenPhase | undefined {
    if (this.finished) return undefined;
    const now = this.clock.now();
    this.close(now);
    if (this.records.length >= MICROTASKS_PER_INVOCATION) {
      this.dropped += 1;
      return undefined;
    }
    const record: MicrotaskRecord = {
      name,
      class: className,
      startMs: round(now - this.startedAt),
      durationMs: 0,
      waitedMs: 0,
    };
    this.records.push(record);
    this.open = { record, announcedAt: now };
    return this.open;
  }

  /** The phase got its class's capacity now. */
  admitted(phase: OpenPhase): void {
    phase.record.waitedMs = round(this.clock.now() - phase.announcedAt);
  }

  finish(): { microtasks: MicrotaskRecord[]; dropped: number } {
    if (!this.finished) this.close(this.clock.now());
    this.finished = true;
    return { microtasks: this.records, dropped: this.dropped };
  }

  private close(now: number): void {
    if (!this.open) return;
    this.open.record.durationMs = round(now - this.open.announcedAt);
    this.open = undefined;
  }
}
