/** What every vDisk of a vPool shares: the backend, the metadata store, the caches, the upload slots. */
import type { BlobStore } from '../backend/types.js';
import type { MetadataStore } from '../../mds/types.js';
import type { ReadCache } from '../datapath/read-cache.js';
import type { Semaphore } from '../datapath/uploader.js';
import type { WriteCacheSpace } from '../datapath/write-cache-space.js';

export interface VDiskContext {
  backend: BlobStore;
  mds: MetadataStore;
  space: WriteCacheSpace;
  readCache: ReadCache;
  uploads: Semaphore;
  routerId: string;
  /** `<state>/wc`: one directory per vDisk below it. */
  writeCacheDir: string;
  scoClusters: number;
  tlogScos: number;
  /** The DTL (dtl-hook.ts), when the mount has DTL servers. */
  dtl?: import('./dtl-hook.js').DtlProvider;
  /** The write cache's file I/O (../datapath/cache-io.ts): node:fs, or a fault-injecting one in tests. */
  io?: import('../datapath/cache-io.js').CacheIo;
  /** Clone relations across the vPool's vDisks (set by the vPool, volume/snapshots/snapshots.ts). */
  family?: VDiskFamily;
}

/** Reads only: nothing to promise on a crash. */
export interface VDiskFamily {
  byId(id: string): import('./vdisk.js').VDiskImpl | undefined;
  /** The parent's path (relative to the vPool root) and snapshot name of a clone, or null. */
  parentOf(v: import('./vdisk.js').VDiskImpl): { path: string; snapshot: string } | null;
  /** Paths (relative to the vPool root) of the vDisks cloned from `v`. */
  clonePaths(v: import('./vdisk.js').VDiskImpl): string[];
}
