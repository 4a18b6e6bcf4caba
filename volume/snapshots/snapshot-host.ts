/**
 * What the snapshot and clone code (snapshots.ts, clone.ts) share without importing each other: what they
 * need from the vPool (SnapshotHost, implemented in volume/vpool-tree.ts), what a clone needs from the snapshot
 * manager (CloneSource, implemented by SnapshotManager), and the name-safe time stamp of generated names.
 */
import type { MetadataOp } from '../../mds/types.js';
import type { SnapshotMeta } from '../lineage/snapshot-store.js';
import type { VDiskContext } from '../vdisk/vdisk-context.js';
import type { VDiskImpl } from '../vdisk/vdisk.js';

/** What the snapshot code needs from the vPool (volume/vpool-tree.ts). */
export interface SnapshotHost {
  ctx: VDiskContext;
  /** The vDisk at `path` (NOT_FOUND, IS_DIR). Reads only (as are all(), byId(), pathOf(), checkFree()). */
  vdiskAt(path: string): VDiskImpl;
  /** Every open vDisk of the vPool. */
  all(): Iterable<VDiskImpl>;
  byId(id: string): VDiskImpl | undefined;
  /** The absolute vPool path of vDisk `id`, or undefined. */
  pathOf(id: string): string | undefined;
  /** EXISTS if `path` is taken, NOT_FOUND / NOT_DIR if its directory is missing. */
  checkFree(path: string): void;
  /**
   * Adds `v` as a new file at `path` with the mode and owner of the file at `like` (a serialised tree change),
   * committing `extra` with it. Crash: in the metadata store, with `extra`, once resolved; else not at all.
   */
  addVDisk(path: string, like: string, v: VDiskImpl, extra: MetadataOp[]): Promise<void>;
  /** Records vDisk `id`'s backend objects for removal and starts it. Crash: resumed at the next start. */
  discard(id: string): Promise<void>;
}

/** What a clone needs from the snapshot manager (snapshots.ts SnapshotManager). */
export interface CloneSource {
  /** How long a clone waits for the backend before it gives up with BACKEND. */
  readonly backendWaitMs: number;
  /** uuid → clones being made of that snapshot right now. */
  readonly pinned: Map<string, number>;
  /** `p`, or BACKEND once backendWaitMs have passed. */
  deadline<T>(p: Promise<T>, what: string, context: Record<string, unknown>): Promise<T>;
  /** The snapshot `name` of `v` for a clone. */
  snapshotForClone(v: VDiskImpl, name: string): SnapshotMeta;
  /** Takes a snapshot; the caller holds the vDisk's lock. */
  takeLocked(v: VDiskImpl, name: string, opts: { sticky?: boolean; automatic?: boolean; timestamp?: number }): Promise<SnapshotMeta>;
}

/** A name-safe UTC stamp: 20261125T210000Z (no `:`). */
export function stamp(ms: number): string {
  return new Date(ms).toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
}
