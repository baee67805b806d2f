// Run an async function over items with at most `limit` running at once, keeping order.
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/**
 * A semaphore whose size can change while held: growing wakes waiters at once; shrinking lets
 * running holders finish and hands out no slot until fewer than the new limit are held.
 * Waiters with a higher priority go first, as in Semaphore.
 */
export class AdjustableSemaphore {
  private waiting: { priority: number; wake: () => void }[] = [];
  private held = 0;
  constructor(private size: number) {}

  get limit(): number {
    return this.size;
  }
  /** Slots held now. */
  get busy(): number {
    return this.held;
  }
  /** Callers waiting for a slot. */
  get queued(): number {
    return this.waiting.length;
  }

  setLimit(size: number): void {
    this.size = Math.max(1, size);
    this.wakeWhileFree();
  }

  async acquire(priority = 0): Promise<() => void> {
    if (this.held < this.size && this.waiting.length === 0) this.held++;
    else
      await new Promise<void>((wake) => {
        // Insert after every waiter of the same or higher priority: equal ones stay first come, first served.
        let i = this.waiting.length;
        while (i > 0 && this.waiting[i - 1]!.priority < priority) i--;
        this.waiting.splice(i, 0, { priority, wake });
      });
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.held--;
      this.wakeWhileFree();
    };
  }

  private wakeWhileFree(): void {
    while (this.held < this.size && this.waiting.length > 0) {
      this.held++;
      this.waiting.shift()!.wake();
    }
  }
}

/** A counting semaphore of fixed size; waiters with a higher priority go first (the scheduler: larger blobs). */
export class Semaphore extends AdjustableSemaphore {}
