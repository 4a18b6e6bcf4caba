/**
 * Helpers of the read-path tests (test/readpath-*.test.ts): put a vDisk's data in the backend only (every
 * SCO evicted from the write cache), empty the read cache, look at where a vDisk's SCOs are, capture the
 * log, hold chosen ranged GETs of the backend.
 */
import type { ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import type { BlobStore, ListOptions } from '../../volume/backend/types.js';
import { FileBlobStore } from '../../volume/backend/file-store.js';
import type { VDisk, VPool } from '../../volume/types.js';
import type { VDiskImpl } from '../../volume/vdisk/vdisk.js';
import type { PoolEnv } from './vpool.js';

/** The SCO files of vDisk `v` in the write cache. */
export function localScos(env: PoolEnv, v: VDisk): string[] {
  const dir = path.join(env.state, 'wc', v.info().id, 'sco');
  return fs.existsSync(dir) ? fs.readdirSync(dir) : [];
}

/**
 * Ships everything, then evicts every SCO that is in the backend: the write-cache limit drops to 1 byte
 * and one small write to a scratch vDisk makes the space evict all it can; the limit is restored. Waits
 * (a liveness bound of 30 s, not a speed one) for the unlinks, which run off the event loop.
 */
export async function evictAll(env: PoolEnv, pool: VPool, disks: VDisk[]): Promise<void> {
  await pool.syncToBackend();
  const { writeCacheLimit } = pool.cacheStats();
  pool.setCacheLimits({ writeCacheBytes: 1 });
  const scratch = `/evictor-${Math.random().toString(36).slice(2)}`;
  await pool.createFile(scratch, 0o644, 0, 0, 4096);
  // the write evicts as it reserves its room; it may wait for room if anything is left that is not in the
  // backend, so the limit comes back once the SCOs are gone (or the wait is over), before awaiting it
  const w = pool.vdisk(scratch).write(0, Buffer.alloc(4096, 1));
  for (const deadline = Date.now() + 30_000; disks.some((d) => localScos(env, d).length > 0) && Date.now() < deadline;) {
    await new Promise((r) => setTimeout(r, 5));
  }
  pool.setCacheLimits({ writeCacheBytes: writeCacheLimit });
  await w;
  await pool.unlink(scratch);
  for (const d of disks) if (localScos(env, d).length > 0) throw new Error(`SCOs of ${d.info().id} still in the write cache: ${localScos(env, d).join(' ')}`);
}

/** Drops every piece of the read cache. */
export function emptyReadCache(pool: VPool): void {
  const { readCacheLimit } = pool.cacheStats();
  pool.setCacheLimits({ readCacheBytes: 0 });
  pool.setCacheLimits({ readCacheBytes: readCacheLimit });
}

/** The implementation behind `v` (tests look at its read-ahead). */
export function impl(v: VDisk): VDiskImpl {
  return v as VDiskImpl;
}


/**
 * A BlobStore that passes everything through to `inner` but holds the ranged GETs whose key `hold` picks
 * until release(); counts every ranged GET by key. Released in teardown, so a failing test never hangs
 * the vPool's close(). Adds up the bytes they return (rangeBytes).
 */
export class HeldReads implements BlobStore {
  /** Ranged GETs asked for, by key (held ones included). */
  readonly ranges = new Map<string, number>();
  /** Bytes the ranged GETs returned (what the backend served to reads). */
  rangeBytes = 0;
  /** Ranged GETs waiting at the gate now. */
  held = 0;
  private pick: (key: string) => boolean = () => false;
  private gate: Promise<void> = Promise.resolve();
  private open: () => void = () => {};

  constructor(private readonly inner: BlobStore) {}

  get url(): string {
    return this.inner.url;
  }

  /** From now on, ranged GETs of the keys `pick` chooses wait until release(). */
  hold(pick: (key: string) => boolean): void {
    this.pick = pick;
    this.gate = new Promise((r) => { this.open = r; });
  }

  release(): void {
    this.pick = () => false;
    this.open();
  }

  async getRange(key: string, offset: number, length: number): Promise<Buffer> {
    this.ranges.set(key, (this.ranges.get(key) ?? 0) + 1);
    if (this.pick(key)) {
      this.held++;
      try {
        await this.gate;
      } finally {
        this.held--;
      }
    }
    const data = await this.inner.getRange(key, offset, length);
    this.rangeBytes += data.length;
    return data;
  }

  put(key: string, data: Uint8Array): Promise<void> { return this.inner.put(key, data); }
  get(key: string): Promise<Buffer> { return this.inner.get(key); }
  head(key: string): Promise<{ size: number } | null> { return this.inner.head(key); }
  list(prefix: string, opts?: ListOptions): Promise<string[]> { return this.inner.list(prefix, opts); }
  delete(key: string): Promise<void> { return this.inner.delete(key); }
  close(): Promise<void> {
    this.release();
    return this.inner.close();
  }
}

/**
 * The file backend of `env` behind HeldReads, which has no localPath: the read cache fetches and keeps
 * pieces (the path of an S3 or an encrypted backend) instead of reading the object files in place.
 */
export async function copyInBackend(t: ExecutionContext, env: PoolEnv): Promise<HeldReads> {
  return heldReads(t, await FileBlobStore.open(env.backendUrl));
}

export function heldReads(t: ExecutionContext, inner: BlobStore): HeldReads {
  const h = new HeldReads(inner);
  t.teardown(() => h.release());
  return h;
}
