/**
 * The space of the vPool's write cache, shared by all its vDisks. Every slot appended to a SCO takes
 * space; a SCO that is safe in the backend (its TLog uploaded and corked) becomes evictable and gives its
 * space back when evicted, oldest first. When the cache is full of data not yet in the backend, writers
 * wait (back-pressure) — they never fail — and `onPressure` asks the vDisks to close and ship what they
 * hold so that the uploader has something to drain.
 */
import { logger } from '../util/log.js';

const log = logger('write-cache');

export interface Evictor {
  /** Removes the SCO from the write cache; returns the bytes freed. */
  evictSco(sco: number): number;
}

export class WriteCacheSpace {
  private used = 0;
  private readonly evictable: Array<{ owner: Evictor; sco: number }> = [];
  private waiters: Array<() => void> = [];
  onPressure: () => void = () => {};

  constructor(public limit: number) {}

  get usedBytes(): number {
    return this.used;
  }

  get waiting(): number {
    return this.waiters.length;
  }

  /** Counts bytes already on disk (found at start-up). */
  account(bytes: number): void {
    this.used += bytes;
  }

  /** Takes `bytes`; resolves at once when there is room, else after evictions make room. */
  reserve(bytes: number): Promise<void> | undefined {
    if (this.tryTake(bytes)) return undefined;
    return new Promise<void>((resolve) => {
      const attempt = (): void => {
        if (this.tryTake(bytes)) resolve();
        else this.waiters.push(attempt);
      };
      log.info('write cache full: writes wait for uploads', { usedBytes: this.used, limit: this.limit, want: bytes });
      this.waiters.push(attempt);
      this.onPressure();
    });
  }

  /** A new limit, applied at once: a larger one lets waiting writers go on; a smaller one evicts as writes come. */
  setLimit(bytes: number): void {
    log.info('write-cache limit changed', { from: this.limit, to: bytes, usedBytes: this.used });
    this.limit = bytes;
    this.wake();
  }

  /** Gives back space (a SCO evicted or a vDisk removed). */
  release(bytes: number): void {
    this.used = Math.max(0, this.used - bytes);
    this.wake();
  }

  /** A SCO is now safe in the backend and may be evicted when space is needed. */
  addEvictable(owner: Evictor, sco: number): void {
    this.evictable.push({ owner, sco });
    if (this.waiters.length > 0) this.wake();
  }

  /** Forgets the evictable SCOs of `owner` (a vDisk being removed). */
  forget(owner: Evictor): void {
    for (let i = this.evictable.length - 1; i >= 0; i--) if (this.evictable[i].owner === owner) this.evictable.splice(i, 1);
  }

  private tryTake(bytes: number): boolean {
    while (this.used + bytes > this.limit && this.evictable.length > 0) {
      const e = this.evictable.shift()!;
      this.used = Math.max(0, this.used - e.owner.evictSco(e.sco));
    }
    // a write bigger than the whole cache still goes through when the cache is empty
    if (this.used + bytes <= this.limit || this.used === 0) {
      this.used += bytes;
      return true;
    }
    return false;
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const attempt of w) attempt();
    if (this.waiters.length > 0) this.onPressure();
  }
}
