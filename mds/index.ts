/**
 * Opens a MetadataStore by kind: 'lmdb' (durable, in directory `dir`) or 'memory' (unit tests).
 * Re-exports the store classes and the seam's types.
 */
import { MetadataError } from '../util/errors.js';
import { LmdbMetadataStore } from './lmdb-store.js';
import { MemoryMetadataStore } from './memory-store.js';
import type { MetadataStore } from './types.js';

export type { MetadataOp, MetadataStore } from './types.js';
export { LmdbMetadataStore } from './lmdb-store.js';
export { MemoryMetadataStore } from './memory-store.js';

export type MetadataStoreKind = 'lmdb' | 'memory';

export function openMetadataStore(kind: MetadataStoreKind, dir?: string): MetadataStore {
  switch (kind) {
    case 'memory':
      return new MemoryMetadataStore();
    case 'lmdb':
      if (typeof dir !== 'string' || dir.length === 0) {
        throw new MetadataError('INVALID', 'an lmdb metadata store needs a directory', { kind });
      }
      return LmdbMetadataStore.open(dir);
    default:
      throw new MetadataError('INVALID', `unknown metadata store kind: ${String(kind)}`, { kind });
  }
}
