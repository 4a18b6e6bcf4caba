/** What every vDisk of a vPool shares: the backend, the metadata store, the caches, the upload slots. */
import type { BlobStore } from './backend/types.js';
import type { MetadataStore } from '../mds/types.js';
import type { ReadCache } from './read-cache.js';
import type { Semaphore } from './uploader.js';
import type { WriteCacheSpace } from './write-cache-space.js';

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
}
