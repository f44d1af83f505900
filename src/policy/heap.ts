/** A binary min-heap under `before` (true: a comes out first). */
export class MinHeap<T> {
  private readonly items: T[] = [];

  constructor(private readonly before: (a: T, b: T) => boolean) {}

  get size(): number {
    return this.items.length;
  }

  peek(): T | undefined {
    return this.items[0];
  }

  // The sifts move a hole instead of swapping pairs: the same moves, no array made per swap.
  push(item: T): void {
    const items = this.items;
    let i = items.push(item) - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const above = items[parent];
      if (!this.before(item, above)) break;
      items[i] = above;
      i = parent;
    }
    items[i] = item;
  }

  pop(): T | undefined {
    const items = this.items;
    const top = items[0];
    const last = items.pop();
    if (items.length > 0 && last !== undefined) {
      items[0] = last;
      this.siftDown(0);
    }
    return top;
  }

  /** Keeps only the items `keep` accepts (a rebuild, for dropping stale entries). */
  retain(keep: (item: T) => boolean): void {
    const kept = this.items.filter(keep);
    this.items.length = 0;
    this.items.push(...kept);
    for (let i = (kept.length >> 1) - 1; i >= 0; i--) this.siftDown(i);
  }

  private siftDown(i: number): void {
    const items = this.items;
    const n = items.length;
    const item = items[i];
    for (;;) {
      const left = 2 * i + 1;
      const right = left + 1;
      let first = i;
      let firstItem = item;
      if (left < n && this.before(items[left], firstItem)) {
        first = left;
        firstItem = items[left];
      }
      if (right < n && this.before(items[right], firstItem)) {
        first = right;
        firstItem = items[right];
      }
      if (first === i) break;
      items[i] = firstItem;
      i = first;
    }
    items[i] = item;
  }
}
