/**
 * The mirror store of a backend move (docs/scrubbing.md, "Policy updates"): a BlobStore over the old backend
 * X (`from`) and the new one Y (`to`) while the move job copies X into Y and the vPool keeps serving.
 *
 * - Reads (get, getRange, head, list) go to X, which stays complete until the switch.
 * - Every write goes to both, Y first, under a per-key write lock that the move job's copy of the same key
 *   takes too (sync()): a copy made from an older version can never land after a newer put, nor bring back a
 *   deleted object. A crash between the two leaves X and Y differing on that key (a write never
 *   acknowledged, so either version is right); the move job's next pass makes Y equal X again.
 * - createExclusive (the claim) is decided by X; what X took is then put to Y.
 * - switchToTarget(): from then on everything goes to Y alone (the move job calls it once Y equals X); the
 *   locks are taken for every key being written, so no write is half on X.
 *
 * Stored bytes are copied as they are: an encrypted vPool's objects move without being decrypted (the
 * encryption wraps this store), and the keys do not change.
 */
import type { BlobStore, ListOptions } from '../backend/types.js';
import { KeyedSerial } from '../../util/serial.js';

export class MirrorStore implements BlobStore {
  private switched = false;
  private readonly writing = new KeyedSerial();
  createExclusive?: (key: string, data: Uint8Array) => Promise<boolean>;

  constructor(readonly from: BlobStore, readonly to: BlobStore) {
    if (from.createExclusive !== undefined) {
      this.createExclusive = (key, data) =>
        this.locked(key, async () => {
          if (this.switched) return this.to.createExclusive ? this.to.createExclusive(key, data) : (await this.to.put(key, data), true);
          const took = await this.from.createExclusive!(key, data);
          if (took) await this.to.put(key, data);
          return took;
        });
    }
  }

  /** True once everything goes to the new backend alone. */
  get moved(): boolean {
    return this.switched;
  }

  get url(): string {
    return this.switched ? this.to.url : this.from.url;
  }

  private get reader(): BlobStore {
    return this.switched ? this.to : this.from;
  }

  /** Runs `fn` once every earlier write of `key` through this store has ended. */
  private locked<T>(key: string, fn: () => Promise<T>): Promise<T> {
    return this.writing.run(key, fn);
  }

  put(key: string, data: Uint8Array): Promise<void> {
    return this.locked(key, async () => {
      await this.to.put(key, data);
      if (!this.switched) await this.from.put(key, data);
    });
  }

  delete(key: string): Promise<void> {
    return this.locked(key, async () => {
      await this.to.delete(key);
      if (!this.switched) await this.from.delete(key);
    });
  }

  get(key: string): Promise<Buffer> {
    return this.reader.get(key);
  }

  getRange(key: string, offset: number, length: number): Promise<Buffer> {
    return this.reader.getRange(key, offset, length);
  }

  /** The reader's file, if it has one (reads go to X until the switch, then to Y). */
  localPath(key: string): string | null {
    return this.reader.localPath?.(key) ?? null;
  }

  head(key: string): Promise<{ size: number } | null> {
    return this.reader.head(key);
  }

  list(prefix: string, opts?: ListOptions): Promise<string[]> {
    return this.reader.list(prefix, opts);
  }

  /**
   * Makes Y's `key` equal X's, under the key's write lock: copied when Y lacks it or holds other bytes, deleted
   * from Y when X has none. `beforeWrite` runs before a write to Y (the claim's gate).
   */
  sync(key: string, beforeWrite?: () => Promise<void>): Promise<'same' | 'copied' | 'deleted'> {
    return this.locked(key, async () => {
      if (this.switched) return 'same';
      const src = await getOrNull(this.from, key);
      const dst = await getOrNull(this.to, key);
      if (src === null) {
        if (dst === null) return 'same';
        await beforeWrite?.();
        await this.to.delete(key);
        return 'deleted';
      }
      if (dst !== null && dst.equals(src)) return 'same';
      await beforeWrite?.();
      await this.to.put(key, src);
      return 'copied';
    });
  }

  /** From now on reads and writes go to Y alone; waits out the writes in flight (each is on both by then). */
  async switchToTarget(): Promise<void> {
    this.switched = true;
    await this.writing.idle();
  }

  async close(): Promise<void> {
    await Promise.all([this.from.close(), this.to.close()]);
  }
}

async function getOrNull(store: BlobStore, key: string): Promise<Buffer | null> {
  try {
    return await store.get(key);
  } catch (err) {
    if ((err as { code?: string }).code === 'NOT_FOUND') return null;
    throw err;
  }
}
