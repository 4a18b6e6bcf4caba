/**
 * A BlobStore over another whose puts (and deletes, gets) first run a hook: how the crash tests' children stop a
 * process at one chosen backend write (the hook never returns; the parent kills the child there) or hold a
 * write while the test does something else; a hook that throws is the backend refusing that call. Everything
 * else goes straight to `inner`.
 */
import type { BlobStore } from '../../volume/backend/types.js';

export interface StoreHooks {
  /** Runs before each put of `key`; the put waits for it. */
  beforePut?: (key: string) => void | Promise<void>;
  /** Runs before each get of `key`; the get waits for it (and fails with what it throws). */
  beforeGet?: (key: string) => void | Promise<void>;
  /** Runs before each delete of `key`; the delete waits for it. */
  beforeDelete?: (key: string) => void | Promise<void>;
  /**
   * Offer `inner`'s createExclusive (default false: without it the claim is taken with plain puts, as the
   * children that predate it did).
   */
  exclusive?: boolean;
}

export function hookedStore(inner: BlobStore, hooks: StoreHooks): BlobStore {
  const store: BlobStore = {
    url: inner.url,
    put: async (key, data) => {
      await hooks.beforePut?.(key);
      return inner.put(key, data);
    },
    get: async (key) => {
      await hooks.beforeGet?.(key);
      return inner.get(key);
    },
    getRange: (key, offset, length) => inner.getRange(key, offset, length),
    head: (key) => inner.head(key),
    list: (prefix, opts) => inner.list(prefix, opts),
    delete: async (key) => {
      await hooks.beforeDelete?.(key);
      return inner.delete(key);
    },
    close: () => inner.close(),
  };
  if (hooks.exclusive) store.createExclusive = (key, data) => inner.createExclusive!(key, data);
  return store;
}
