/**
 * The space of the vPool's write cache, shared by all its vDisks. Every slot appended to a SCO takes
 * space; a SCO that is safe in the backend (its TLog uploaded and corked) becomes evictable and gives its
 * space back when evicted, oldest first. When the cache is full of data not yet in the backend, writers
 * wait (back-pressure) — they never fail — and `onPressure` asks the vDisks to close and ship what they
 * hold so that the uploader has something to drain.
 */
import fs from 'node:fs';
import { logger } from '../../../util/log.js';

const log = logger('write-cache');

export interface Evictor {
  /** Removes the SCO from the write cache; returns the bytes freed. */
  evictSco(sco: number): number;
}

/**
 * The filesystem under the write cache (statfs of the state directory). Its real free space bounds the
 * cache as much as the configured limit does: the disk may be smaller than `writeCacheBytes`, or shared
 * (read cache, metadata, other files). `reserve` bytes are always left free — the room a cork's metadata
 * commit needs; the cork is what frees space (after it, uploaded SCOs can be evicted), so if writes could
 * eat that room a full disk would never drain (Open vStorage's "trigger gap").
 */
export interface StateDisk {
  /** Bytes available to us on the filesystem now (statfs bavail × bsize). */
  available(): number;
  /** Bytes kept free for metadata commits. */
  reserve: number;
}

/** The state disk as statfs sees it; reserve 5% of the filesystem, at least 16 MiB, at most 256 MiB. */
export function statfsDisk(dir: string, reserve?: number): StateDisk {
  const st = fs.statfsSync(dir);
  const total = st.blocks * st.bsize;
  return {
    available: () => {
      const s = fs.statfsSync(dir);
      return s.bavail * s.bsize;
    },
    reserve: reserve ?? Math.min(256 * 2 ** 20, Math.max(16 * 2 ** 20, Math.floor(total * 0.05))),
  };
}

export class WriteCacheSpace {
  private used = 0;
  private readonly evictable: Array<{ owner: Evictor; sco: number }> = [];
  private waiters: Array<() => void> = [];
  onPressure: () => void = () => {};
  /** statfs is asked again when its last answer is older than this, or too close to the reserve. */
  private static readonly STAT_MS = 1000;
  private statAt = 0;
  private statAvail = Infinity;
  /** Bytes taken since the last statfs (the estimate of what is free goes down by them). */
  private takenSinceStat = 0;
  private diskFull = false;
  private diskFullLoggedAt = 0;

  constructor(public limit: number, private readonly disk?: StateDisk) {}

  /** Writers waiting for room right now. */
  get waitingWriters(): number {
    return this.waiters.length;
  }

  /** True while writes wait because the state disk (not the limit) is full. */
  get stateDiskFull(): boolean {
    return this.diskFull;
  }

  /** Looks at the disk again and lets waiting writers try (the vPool's ticker calls it every second). */
  recheck(): void {
    this.statAt = 0;
    if (this.waiters.length > 0) this.wake();
  }

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
    // evicting frees disk space too (the unlink runs off the event loop: counted as freed at once)
    let freed = 0;
    while (!this.diskHasRoom(bytes, freed) && this.evictable.length > 0) {
      const e = this.evictable.shift()!;
      const n = e.owner.evictSco(e.sco);
      this.used = Math.max(0, this.used - n);
      freed += n;
    }
    if (!this.diskHasRoom(bytes, freed)) {
      if (!this.diskFull && Date.now() - this.diskFullLoggedAt > 60_000) {
        this.diskFullLoggedAt = Date.now(); // at most once a minute: near the edge it comes and goes with each write
        log.error('the state disk is full (only the reserve for metadata commits is left): writes wait until uploads let SCOs be evicted or space is freed', {
          usedBytes: this.used, want: bytes, availableBytes: this.statAvail, reserveBytes: this.disk?.reserve,
        });
      }
      this.diskFull = true;
      return false;
    }
    this.diskFull = false;
    // a write bigger than the whole cache still goes through when the cache is empty
    if (this.used + bytes <= this.limit || this.used === 0) {
      this.used += bytes;
      this.takenSinceStat += bytes;
      return true;
    }
    return false;
  }

  /** Whether `bytes` more fit on the state disk above the reserve (`freed` bytes were just evicted). */
  private diskHasRoom(bytes: number, freed: number): boolean {
    if (this.disk === undefined) return true;
    const now = Date.now();
    let room = this.statAvail - this.takenSinceStat + freed - this.disk.reserve;
    // statfs only when the estimate is old or getting close: it costs a syscall per write otherwise
    if (now - this.statAt > WriteCacheSpace.STAT_MS || room < bytes + this.disk.reserve) {
      try {
        this.statAvail = this.disk.available();
      } catch {
        this.statAvail = Infinity; // cannot tell: the limit alone decides, and a real ENOSPC fails the write
      }
      this.statAt = now;
      this.takenSinceStat = 0;
      room = this.statAvail + freed - this.disk.reserve;
    }
    return room >= bytes;
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const attempt of w) attempt();
    if (this.waiters.length > 0) this.onPressure();
  }
}
