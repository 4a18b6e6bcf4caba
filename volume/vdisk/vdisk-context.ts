/**
 * What every vDisk of a vPool shares: the backend, the metadata store, the caches, the upload slots. It
 * names the vDisk only through interfaces (FamilyMember here, DtlVDisk in dtl-sink.ts) that VDiskImpl
 * implements, so that vdisk.ts imports this file and not the other way round.
 */
import type { BlobStore } from '../backend/types.js';
import type { MetadataStore } from '../../mds/types.js';
import type { ReadCache } from '../datapath/read/read-cache.js';
import type { Semaphore } from '../datapath/upload/uploader.js';
import type { UploadBuffers } from '../datapath/upload/upload-buffers.js';
import type { WriteCacheSpace } from '../datapath/write-cache/write-cache-space.js';
import type { SlotSource } from '../datapath/read/read-path.js';
import type { VDiskDoc } from '../lineage/snapshot-store.js';
import type { DtlProvider } from './dtl-sink.js';

export interface VDiskContext {
  backend: BlobStore;
  mds: MetadataStore;
  space: WriteCacheSpace;
  readCache: ReadCache;
  uploads: Semaphore;
  /** The buffers SCOs are read into for their puts (../datapath/upload/upload-buffers.ts), bounded per vPool. */
  uploadBuffers: UploadBuffers;
  /** Map checkpoint jobs at once over the vPool's vDisks (checkpointer.ts). */
  checkpointJobs: Semaphore;
  routerId: string;
  /** `<state>/wc`: one directory per vDisk below it. */
  writeCacheDir: string;
  scoClusters: number;
  tlogScos: number;
  /** The DTL (dtl-hook.ts), when the mount has DTL servers. */
  dtl?: DtlProvider;
  /** The write cache's file I/O (../datapath/write-cache/cache-io.ts): node:fs, or a fault-injecting one in tests. */
  io?: import('../datapath/write-cache/cache-io.js').CacheIo;
  /**
   * Set when this router took the vPool over from another holder (claim epoch, volume/claim/claim.ts): a
   * rebuild from the backend then records the vDisk's fence first (../datapath/formats/epoch-fence.ts).
   */
  fenceEpoch?: number;
  /**
   * Ownership per vDisk: the registry's owner tag under which this router starts serving vDisk `id` from the
   * backend (a delegation to it, or the vPool's holder taking it back), or undefined: a rebuild of that vDisk
   * then writes its owner-tag fence first (../datapath/epoch-fence.ts).
   */
  fenceTag?: (id: string) => number | undefined;
  /** With a registry: the vPool's owner tag (the vDisks not under a fenceTag are served under it). */
  ownerTag?: number;
  /** The vPool's backend claim epoch held now (../claim/claim.ts); absent for a delegated vDisk. */
  claimEpoch?: () => number;
  /**
   * Called before a write, discard, resize or fsync is acknowledged (../claim/vdisk-gate.ts beforeAck: a delegated
   * vDisk's confirmation that this router still owns it, when the last one is stale); null: nothing to wait for.
   */
  beforeAck?: (what: string) => Promise<void> | null;
  /** Why this router lost its claim on the vPool (its vDisks answer I/O with FENCED), or null. */
  fenced?: () => string | null;
  /**
   * Map checkpoints (../lineage/map-checkpoint.ts): written every this many corked TLogs (default
   * DEFAULT_CHECKPOINT_EVERY_TLOGS in checkpointer.ts; 0: never written), and loaded by a rebuild from the
   * backend unless `loadCheckpoints` is false (tests and benches compare both).
   */
  checkpointEveryTlogs?: number;
  loadCheckpoints?: boolean;
  /** Clone relations across the vPool's vDisks (set by the vPool, volume/snapshots/snapshots.ts). */
  family?: VDiskFamily;
}

/** A vDisk as its family sees it (VDiskImpl): its id, its doc (parentage), and its slots (a clone reads its ancestors'). */
export interface FamilyMember extends SlotSource {
  readonly id: string;
  readonly docs: { readonly doc: VDiskDoc };
}

/** Reads only: nothing to promise on a crash. */
export interface VDiskFamily {
  byId(id: string): FamilyMember | undefined;
  /** The parent's path (relative to the vPool root) and snapshot name of a clone, or null. */
  parentOf(v: FamilyMember): { path: string; snapshot: string } | null;
  /** Paths (relative to the vPool root) of the vDisks cloned from `v`. */
  clonePaths(v: FamilyMember): string[];
}
