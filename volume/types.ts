/**
 * The volume layer's seams, as the FUSE adapter and the CLI see them. The implementation lives in
 * ./vpool.ts (a vPool: the tree of directories and vDisks) and ./vdisk/vdisk.ts (one thin virtual disk).
 *
 * Paths are absolute within the vPool (`/`, `/dir/disk`), as FUSE hands them over. Every error is a
 * VolumeError (util/errors.ts) whose `code` the FUSE edge maps to an errno.
 */
export const CLUSTER_SIZE = 4096;
/** 64 TiB: the largest vDisk. */
export const MAX_VDISK_SIZE = 64 * 2 ** 40;
export const DEFAULT_WRITE_CACHE_BYTES = 2 ** 30;
export const DEFAULT_READ_CACHE_BYTES = 256 * 2 ** 20;

export type NodeKind = 'file' | 'dir';

export interface NodeStat {
  kind: NodeKind;
  /** A stable inode number for this node. */
  ino: number;
  mode: number;
  uid: number;
  gid: number;
  /** Bytes for a vDisk; 4096 for a directory. */
  size: number;
  /** Bytes really written into this node (its own clusters × 4096): `st_blocks` = allocatedBytes / 512; a clone's inherited data is not counted. */
  allocatedBytes: number;
  nlink: number;
  atimeMs: number;
  mtimeMs: number;
  ctimeMs: number;
}

export interface AttrChange {
  mode?: number;
  uid?: number;
  gid?: number;
  atimeMs?: number;
  mtimeMs?: number;
}

export interface VDiskInfo {
  id: string;
  size: number;
  /** Written into this vDisk itself: what `du` counts. */
  allocatedBytes: number;
  /** A clone's data read through from its ancestors (0 for a vDisk that is no clone): counted with them. */
  inheritedBytes: number;
  /** Bytes of this vDisk's SCOs already in the backend. */
  backendBytes: number;
  /** Bytes written but not yet in the backend. */
  dirtyBytes: number;
  /** SCOs and TLogs waiting for upload. */
  uploadBacklog: { scos: number; tlogs: number };
  template: boolean;
  /** The clone's parent and the snapshot it was cloned from (paths relative to the vPool root), or null. */
  parent: { path: string; snapshot: string } | null;
  /** Paths of the vDisks cloned from this one. */
  clones: string[];
  /** The DTL protecting the writes not yet in the backend (DESIGN §3, §4). */
  dtl: DtlInfo;
  router: string;
  /**
   * A failure of the local state disk (write cache, metadata) affecting this vDisk, or null: `code` the errno
   * name (EIO, ENOSPC), `since` ms since the epoch. EIO from the write cache is for good (writes and fsyncs
   * fail until a restart); ENOSPC and a failed metadata commit clear once a later write or cork succeeds.
   */
  fault: VDiskFault | null;
  /** How long this vDisk has had data not yet in the backend (ms since the first write after it last had none; 0: none). */
  uploadLagMs: number;
  /** Bytes recorded for the DTL but not yet on its server (async mode's lag; 0 for none). */
  dtlQueuedBytes: number;
}

export interface VDiskFault {
  code: string;
  message: string;
  since: number;
}

export type DtlMode = 'none' | 'async' | 'sync';
export type DtlState = 'ok_sync' | 'ok_standalone' | 'catchup' | 'degraded';
export interface DtlInfo {
  mode: DtlMode;
  state: DtlState;
  /** HOST:PORT of the DTL server in use, or null. */
  server: string | null;
}

/** One thin virtual disk. All methods validate their arguments (INVALID / TOO_BIG). */
export interface VDisk {
  readonly id: string;
  /** What the kernel engine's reader threads need to serve reads from the write cache (datapath/write-cache/reader-view.ts). */
  readonly readerView?: ReaderView;
  /** Current size in bytes, exactly as set. */
  readonly size: number;
  /** Bytes written into this vDisk itself (its own mapped clusters × 4096; a clone's inherited ones are VDiskInfo.inheritedBytes). */
  readonly allocatedBytes: number;
  /** Reads `length` bytes at `offset`; holes and the range past the size read as zeros (a read past the end is cut to the size). */
  read(offset: number, length: number): Promise<Buffer>;
  /**
   * Reads into `out` the bytes at `offset` (no second copy: whole clusters go straight from the caches into
   * `out`); holes read as zeros. Resolves with the bytes filled — out.length cut to the size, 0 at or past
   * it — and leaves the rest of `out` untouched. On an error (CHECKSUM, BACKEND) `out` holds no promised
   * content, and nothing writes into it once the promise has settled.
   */
  readInto(out: Buffer, offset: number): Promise<number>;
  /** Writes `data` at `offset`; grows the vDisk if the write ends past its size. Durable against a kill of the process once resolved. */
  write(offset: number, data: Uint8Array): Promise<void>;
  /**
   * Discards `length` bytes at `offset` (any alignment; the range must end at or below the size, else
   * INVALID): the whole range reads as zeros afterwards, whole clusters are freed (allocatedBytes drops,
   * SEEK_HOLE sees them). TRIM, PUNCH_HOLE, ZERO_RANGE and WRITE_ZEROES are all this. Durable like a write.
   */
  discard(offset: number, length: number): Promise<void>;
  /** Sets the size; a shrink discards the data past the new size (it reads as zeros if grown again). */
  resize(size: number): Promise<void>;
  /** Makes every acknowledged write durable on the local write cache (host crash). */
  sync(): Promise<void>;
  /** Closes the open SCO and TLog and waits until everything written so far is in the backend. */
  syncToBackend(): Promise<void>;
  info(): VDiskInfo;
  /** lseek SEEK_DATA / SEEK_HOLE: the first offset ≥ `offset` that is data (a written cluster, a clone's parent's included) or a hole; -1 if none (ENXIO). */
  seek(offset: number, what: 'data' | 'hole'): number;
}

/** One snapshot as the `user.vdisk.snapshots` view shows it (DESIGN §3). */
export interface SnapshotInfo {
  name: string;
  uuid: string;
  /** Milliseconds since the epoch. */
  timestamp: number;
  sticky: boolean;
  automatic: boolean;
  consistent: boolean;
  /** The snapshot's TLogs and the snapshot list naming it are in the backend. */
  inBackend: boolean;
  /** Paths (relative to the vPool root) of the vDisks cloned from this snapshot. */
  clones: string[];
}

/** What a scrub of one vDisk did (volume/scrub/manager.ts). */
export interface ScrubReport {
  vdisk: string;
  scrub: string;
  outcome: 'applied' | 'nothing to do';
  /** Clusters of the live map moved to new SCOs. */
  relocated: number;
  /** Backend objects the sweep deleted. */
  swept: { objects: number; bytes: number };
  stats: { bytesRead: number; bytesWritten: number; garbageBytesBefore: number; bytesFreed: number; ms: number };
  /** How the budget and the yielding to the vDisk's I/O held the scrub back (volume/scrub/throttle.ts); absent for a remote result. */
  throttle?: { ops: number; bytes: number; budgetWaitMs: number; yieldWaitMs: number; yieldsCut: number };
}

/** How the last scrub of a vDisk ended (failures too; kept in the metadata store across restarts): `user.vdisk.info`'s `scrub.lastRun`. */
export interface ScrubLastRun {
  /** When it started (ms since the epoch) and how long it took. */
  at: number;
  ms: number;
  outcome: 'applied' | 'nothing to do' | 'stale' | 'failed';
  freedBytes: number;
  error?: string;
}

/** An object a sweep deletes (or would, in a dry run), and why. */
export interface SweepItem {
  key: string;
  reason: string;
}

/** Where scrubbing of a vDisk stands (`user.vdisk.scrubbing`, `user.vdisk.info`). */
export interface ScrubStatus {
  running: boolean;
  /** The applied scrub: its id, when it ran and was applied; null if never. */
  last: { id: string; ranAt: number; appliedAt?: number } | null;
  lastReport: ScrubReport | null;
  /** The last scrub of this vDisk, failed ones too (survives a restart, not a rebuild on a fresh state directory); null if none. */
  lastRun: ScrubLastRun | null;
  /** Where a running scrub stands (phase, segments done, bytes read and written); null when none runs. */
  progress: { phase: string; segmentsDone: number; segments: number; bytesRead: number; bytesWritten: number } | null;
  /** Garbage the last scrub left (pinned by clones, or in SCOs above the fill ratio). */
  garbageBytes: number;
  /** TLog ranges with garbage recorded since (snapshot deletes, rollbacks). */
  pendingGarbage: Array<{ fromTlog: number; toTlog: number; reason: string }>;
  lastSweep: { at: number; dryRun: boolean; items: SweepItem[] } | null;
}

/**
 * Scrubbing (docs/scrubbing.md): reclaiming the backend space of overwritten data, deleted snapshots and
 * rollbacks. One scrub of a vDisk at a time (BUSY). Crash: at any point nothing is lost (see the doc).
 */
export interface ScrubApi {
  /** Objects of a scrub never applied are swept once this old (ms). */
  staleScrubMs: number;
  /** Scrubs the vDisk at `path` here: the job, the apply, the sweep. */
  scrub(path: string): Promise<ScrubReport>;
  /** The same scrub in the background: returns at once (BUSY if one of this vDisk runs); statusAt says how it went. */
  start(path: string): void;
  /** Applies the newest result a remote scrubber left; null when none waits. BUSY (stale) if it no longer fits. */
  applyPending(path: string): Promise<ScrubReport | null>;
  /** Mark and sweep of the vDisk's backend objects; lists only with `dryRun`. */
  sweep(path: string, dryRun: boolean): Promise<SweepItem[]>;
  /** Whole vDisk namespaces in the backend nothing references (volume/scrub/orphans.ts); lists only with `dryRun`. */
  orphans(dryRun: boolean): Promise<SweepItem[]>;
  statusAt(path: string): ScrubStatus;
  /** The budget and the yielding of the scrubs that start from now on (volume/scrub/throttle.ts); missing keys: defaults. */
  setLimits(l: Partial<{ bandwidthMBps: number; iops: number; yieldMs: number; maxYieldMs: number }>): void;
  /** Counts since the vPool opened (the Prometheus metrics). */
  totals(): ScrubTotals;
}

/** What the scrubs of this process did since it started. */
export interface ScrubTotals {
  /** Scrubs applied (or found nothing to do), by this process or from a remote result. */
  scrubs: number;
  /** Scrubs that failed (a stale result included). */
  failures: number;
  /** Of those, results refused as stale. */
  stale: number;
  bytesRead: number;
  bytesWritten: number;
  /** Bytes the sweeps deleted from the backend (the reclaimed space). */
  bytesFreed: number;
  /** Time spent in scrubs, in seconds. */
  seconds: number;
}

/**
 * Snapshots, rollback, clones and templates of the vDisks of a vPool (volume/snapshots/snapshots.ts). Paths are
 * absolute within the vPool. Names: 1–255 bytes of UTF-8 without `/`, `:` or NUL (INVALID).
 * Crash promise of every change: once it resolves it is in the metadata store (survives a kill and a host
 * crash); the backend copy follows (`inBackend`), and syncToBackend()/close() wait for it.
 */
export interface SnapshotApi {
  /**
   * Closes the current TLog and names that point `name` (EXISTS if taken; READ_ONLY on a template); `timestamp`
   * defaults to now. Crash: once resolved the snapshot and every write acknowledged before the call survive a
   * kill and a host crash; lost with the host before `inBackend`, it is gone after a rebuild from the backend.
   */
  create(path: string, name: string, opts?: { sticky?: boolean; automatic?: boolean; timestamp?: number }): Promise<SnapshotInfo>;
  /** The snapshots, oldest first. Reads only: nothing to promise on a crash. */
  list(path: string): SnapshotInfo[];
  /** Sets or clears the sticky flag (NOT_FOUND for an unknown name). Crash: durable locally once resolved. */
  setSticky(path: string, name: string, sticky: boolean): Promise<void>;
  /** Removes a snapshot; its TLogs merge into the next one (BUSY if it has clones). Crash: durable locally once resolved. */
  remove(path: string, name: string): Promise<void>;
  /**
   * Drops every write and snapshot after `name`; size and data are as of the snapshot (BUSY if a later
   * snapshot has clones). Crash: before it resolves, the vDisk is either untouched or, once the rollback's
   * intent is committed, rolled back at the next start; once resolved it is rolled back locally and in the backend.
   */
  rollback(path: string, name: string): Promise<void>;
  /**
   * A new vDisk at `target` whose data is `path`'s as of snapshot `name` (an empty name snapshots now).
   * Resolves once the clone exists and its parent's snapshot is in the backend. INVALID past depth 255.
   * Crash: before it resolves there is no clone (at most unreferenced objects); once resolved the clone is
   * whole locally and in the backend (the tree follows like any new file).
   */
  clone(path: string, name: string, target: string): Promise<void>;
  /** Makes the vDisk a read-only template: a last snapshot is taken if needed, every other one removed. Crash: durable locally once resolved. */
  makeTemplate(path: string): Promise<void>;
}

export interface StatFs {
  blockSize: number;
  totalBlocks: number;
  freeBlocks: number;
  files: number;
  freeFiles: number;
  nameMax: number;
}

export interface CacheStats {
  writeCacheBytes: number;
  writeCacheLimit: number;
  /** Writes waiting for write-cache room right now. */
  writeCacheWaiters: number;
  /** True while writes wait because the state disk is full (only the reserve for metadata commits left). */
  stateDiskFull: boolean;
  readCacheBytes: number;
  readCacheLimit: number;
  readCacheHits: number;
  readCacheMisses: number;
  /** The claim on the backend (volume/claim/claim.ts): its epoch; lost to another router; renewals failing past the lease. */
  claim?: { epoch: number; fenced: boolean; expired: boolean };
}

/** A vPool: the directory tree and its vDisks. */
export interface VPool {
  readonly name: string;
  readonly routerId: string;
  /** Snapshots, rollback, clones, templates. */
  readonly snapshots: SnapshotApi;
  /** Scrubbing: reclaiming the backend space of garbage (docs/scrubbing.md). */
  readonly scrub: ScrubApi;
  stat(path: string): NodeStat;
  readdir(path: string): string[];
  mkdir(path: string, mode: number, uid: number, gid: number): Promise<void>;
  rmdir(path: string): Promise<void>;
  /** Creates an empty vDisk of `size` bytes (EXISTS if the path is taken). */
  createFile(path: string, mode: number, uid: number, gid: number, size?: number): Promise<void>;
  unlink(path: string): Promise<void>;
  /** POSIX rename: replaces a file target, or an empty directory target. */
  rename(from: string, to: string): Promise<void>;
  setAttrs(path: string, change: AttrChange): Promise<void>;
  getXattr(path: string, name: string): Buffer | undefined;
  setXattr(path: string, name: string, value: Uint8Array): Promise<void>;
  listXattr(path: string): string[];
  removeXattr(path: string, name: string): Promise<void>;
  /** `user.vdisk.dtl`: the vDisk's DTL mode, changed live and recorded (INVALID: a bad mode, or async/sync without a DTL server). */
  setDtlMode(path: string, mode: DtlMode): Promise<void>;
  /** The vDisk at `path` (one object per vDisk, shared by every opener). */
  vdisk(path: string): VDisk;
  statfs(): StatFs;
  /** The caches as they stand: bytes used and limits, and the read cache's piece hits and misses since start. */
  cacheStats(): CacheStats;
  /** Changes the write- and read-cache limits (bytes) while mounted. */
  setCacheLimits(limits: { writeCacheBytes?: number; readCacheBytes?: number }): void;
  /** Ships every vDisk's data and the tree to the backend and waits for it. */
  syncToBackend(): Promise<void>;
  /** syncToBackend(), then releases everything. */
  close(): Promise<void>;
  /** Before a backend write made outside the vPool's stores (the rekey job): FENCED once the claim is lost (volume/claim/claim.ts gate()). */
  backendGate?(what: string): Promise<void>;
  /** Ownership per vDisk (docs/cluster.md): hands the vDisk at `path` to router `to` — shipped whole, closed here, BUSY here until taken back. */
  handOverVDisk?(path: string, to: string): Promise<{ id: string; size: number }>;
  /** Serves the delegated vDisk `id` here again under owner tag `tag`: rebuilt from the backend, its owner-tag fence written first. */
  takeBackVDisk?(id: string, tag: number): Promise<void>;
  /** vDisks delegated to other routers now: id → router. */
  delegatedVDisks?(): Map<string, string>;
}
import type { ReaderView } from './datapath/write-cache/reader-view.js';
