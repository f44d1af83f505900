/**
 * The host uids reserved for instances (`sandbox.uidRange`), one per live
 * instance, so no two instances share per-user kernel state (inotify and
 * pipe-buffer quotas, keyrings, message queues). A released uid is handed
 * out again (lowest free first), which keeps the set of uids a node ever
 * uses as small as its peak number of instances.
 *
 * @example
 * const pool = new UidPool(1_879_048_192, 65_536, 17);
 * const uid = pool.take(); // 1879048209
 * pool.release(uid);
 */
export class UidPool {
  private readonly used = new Set<number>();

  /**
   * @param start offset in the range where this node starts looking: two nodes on one
   *   host with different start offsets keep apart while they run few instances.
   */
  constructor(
    readonly first: number,
    readonly count: number,
    private readonly start = 0,
  ) {}

  /** A free uid, or undefined when every uid of the range is in use. */
  take(): number | undefined {
    for (let i = 0; i < this.count; i++) {
      const uid = this.first + ((this.start + i) % this.count);
      if (!this.used.has(uid)) {
        this.used.add(uid);
        return uid;
      }
    }
    return undefined;
  }

  release(uid: number): void {
    this.used.delete(uid);
  }

  get inUse(): number {
    return this.used.size;
  }
}
