/**
 * A vPool: the directory tree and its vDisks, wired to one backend, one metadata store and the local
 * caches under the state directory:
 *
 *   <state>/mds/   the metadata store (lmdb)      <state>/wc/<id>/   each vDisk's write cache
 *   <state>/rc/    the read cache                  <state>/backend/   the default file:// backend
 *
 * Start-up: the tree comes from the metadata store, else from the backend (`pool/tree.json`), else it is
 * new; then every vDisk opens (local restart or rebuild from the backend, ./vdisk/vdisk-open.ts).
 * Here: opening it, its start, caches, shipping and close; the tree and its changes are in vpool-tree.ts.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { VolumeError } from '../util/errors.js';
import { logger } from '../util/log.js';
import { openBlobStore } from './backend/index.js';
import type { BlobStore } from './backend/types.js';
import { openMetadataStore } from '../mds/index.js';
import type { MetadataStore } from '../mds/types.js';
import { ReadCache } from './datapath/read/read-cache.js';
import { TreeShipper } from './tree/tree-shipper.js';
import { Semaphore } from './datapath/upload/uploader.js';
import { UploadBuffers } from './datapath/upload/upload-buffers.js';
import { CHECKPOINT_JOBS } from './vdisk/checkpointer.js';
import { claimVPool, type TakenClaim } from './vpool-claim.js';
import { FencedStore } from './claim/fenced-store.js';
import type { BackendClaim } from './claim/claim.js';
import { dropLeftovers, loadTree } from './vpool-start.js';
import { VPoolTree } from './vpool-tree.js';
import { VDiskImpl } from './vdisk/vdisk.js';
import type { VDiskContext } from './vdisk/vdisk-context.js';
import { statfsDisk, WriteCacheSpace } from './datapath/write-cache/write-cache-space.js';
import { withShipProgress } from './datapath/upload/ship-progress.js';
import { ScrubManager, scratchDirOf } from './scrub/manager.js';
import { CLUSTER_SIZE, DEFAULT_READ_CACHE_BYTES, DEFAULT_WRITE_CACHE_BYTES, type CacheStats, type StatFs, type VPool } from './types.js';
import type { VPoolOptions } from './vpool-options.js';

const log = logger('vpool');
/** How long a clean close waits for each vDisk's DTL server to empty its copy. */
const DTL_RETIRE_MS = 10_000;

export async function openVPool(opts: VPoolOptions): Promise<VPool> {
  const stateDir = path.resolve(opts.stateDir);
  fs.mkdirSync(stateDir, { recursive: true });
  const backendUrl = opts.backendUrl ?? `file://${path.join(stateDir, 'backend')}`;
  const rawBackend = opts.backend ?? (await openBlobStore(backendUrl));
  const mds = opts.metadataStore ?? openMetadataStore(opts.metadata ?? 'lmdb', path.join(stateDir, 'mds'));
  const routerId = opts.routerId ?? os.hostname();
  // the claim first (refused: nothing was touched); then every backend write of the vPool goes through the
  // self-fence, which lets it through only while the claim is held
  let taken: TakenClaim;
  try {
    taken = await claimVPool(rawBackend, mds, stateDir, { router: routerId, leaseMs: opts.claimLeaseMs, force: opts.force, settleMs: opts.claimSettleMs, ownerTag: opts.ownerTag });
  } catch (err) {
    if (opts.metadataStore === undefined) await mds.close().catch(() => undefined);
    if (opts.backend === undefined) await rawBackend.close().catch(() => undefined);
    throw err;
  }
  const { claim } = taken;
  opts.onClaim?.(claim);
  const backend = new FencedStore(rawBackend, claim);
  const writeCacheDir = path.join(stateDir, 'wc');
  fs.mkdirSync(writeCacheDir, { recursive: true });
  const disk = statfsDisk(writeCacheDir, opts.stateReserveBytes);
  const ctx: VDiskContext = {
    backend, mds,
    // bounded by the limit and by the real free space of the state disk, minus a reserve for metadata commits
    space: new WriteCacheSpace(opts.writeCacheBytes ?? DEFAULT_WRITE_CACHE_BYTES, disk),
    readCache: new ReadCache(path.join(stateDir, 'rc'), opts.readCacheBytes ?? DEFAULT_READ_CACHE_BYTES, backend, disk),
    uploads: new Semaphore(4),
    uploadBuffers: new UploadBuffers(),
    checkpointJobs: new Semaphore(CHECKPOINT_JOBS),
    routerId,
    fenceEpoch: taken.fenceEpoch,
    fenced: () => claim.fenced,
    writeCacheDir,
    scoClusters: checkTuning(opts.scoClusters ?? 1024, 'scoClusters', 1, 65536),
    tlogScos: checkTuning(opts.tlogScos ?? 16, 'tlogScos', 1, 100000),
    dtl: opts.dtl,
    io: opts.cacheIo,
    checkpointEveryTlogs: opts.checkpointEveryTlogs === undefined ? undefined : checkTuning(opts.checkpointEveryTlogs, 'checkpointEveryTlogs', 0, 1_000_000),
    loadCheckpoints: opts.loadCheckpoints,
  };
  const pool = new VPoolImpl(opts.name, ctx, opts.scoMaxAgeMs ?? 5000, scratchDirOf(stateDir), claim);
  try {
    await pool.start();
  } catch (err) {
    claim.stop(); // not released: what start() did is half-done; the claim expires
    throw err;
  }
  return pool;
}

function checkTuning(v: number, name: string, min: number, max: number): number {
  if (!Number.isInteger(v) || v < min || v > max) throw new VolumeError('INVALID', `${name} must be an integer in ${min}..${max}, got ${v}`, { [name]: v });
  return v;
}

class VPoolImpl extends VPoolTree implements VPool {
  private ticker: NodeJS.Timeout | null = null;

  readonly scrub: ScrubManager;

  constructor(name: string, ctx: VDiskContext, private readonly scoMaxAgeMs: number, scratchDir: string, claim: BackendClaim) {
    super(name, ctx, claim);
    this.scrub = new ScrubManager({
      backend: ctx.backend, scratchDir, scoClusters: ctx.scoClusters,
      vdiskAt: (p) => this.disks.of(this.fileNode(p)),
      all: () => this.disks.open.values(),
      allIds: () => this.tree.files().map((n) => n.vdiskId!),
      cloning: (v) => v.docs.doc.snapshots.some((s) => this.snapshots.pinned.has(s.uuid)),
      referenced: () => this.referencedVDisks(),
    });
    claim.onFenced(() => this.onFenced());
  }

  /** The claim was lost (volume/claim/claim.ts logged why): nothing more goes to the backend. */
  private onFenced(): void {
    for (const v of this.disks.open.values()) {
      v.uploader.stop();
      v.readerView.close(); // the kernel engine's reader threads stop serving reads (reads answer FENCED from here)
    }
    this.shipper?.stop();
  }

  get routerId(): string {
    return this.ctx.routerId;
  }

  get backend(): BlobStore {
    return this.ctx.backend;
  }

  /** The claim's gate, for backend writes made beside the vPool's fenced store (the rekey job). */
  backendGate(what: string): Promise<void> {
    return this.claim.gate(what);
  }

  get mds(): MetadataStore {
    return this.ctx.mds;
  }

  async start(): Promise<void> {
    const { mds, backend } = this.ctx;
    const { tree, from } = await loadTree(mds, backend);
    this.tree = tree;
    this.shipper = new TreeShipper(backend, mds, () => this.tree.dump(), () => this.claim.epoch);
    await dropLeftovers(mds, this.tree, this.ctx.writeCacheDir);
    await this.disks.openAll(this.tree);
    this.ctx.space.onPressure = () => {
      for (const v of this.disks.open.values()) if (v.cache.hasPending) this.shipQuietly(v, 'write-cache pressure');
    };
    this.shipper.changed();
    this.shipper.resume();
    this.ticker = setInterval(() => this.tick(), Math.min(1000, this.scoMaxAgeMs)).unref();
    log.info('vPool up', { vpool: this.name, tree: from, nodes: this.tree.size, vdisks: this.disks.open.size, backend: backend.url, router: this.routerId, epoch: this.claim.epoch });
  }

  cacheStats(): CacheStats {
    const { space, readCache } = this.ctx;
    return {
      writeCacheBytes: space.usedBytes, writeCacheLimit: space.limit, writeCacheWaiters: space.waitingWriters, stateDiskFull: space.stateDiskFull,
      readCacheBytes: readCache.usedBytes, readCacheLimit: readCache.limit, readCacheHits: readCache.hits, readCacheMisses: readCache.misses,
      claim: { epoch: this.claim.epoch, fenced: this.claim.fenced !== null, expired: this.claim.expired },
    };
  }

  setCacheLimits(limits: { writeCacheBytes?: number; readCacheBytes?: number }): void {
    const check = (v: number, name: string) => {
      if (!Number.isSafeInteger(v) || v < 0) throw new VolumeError('INVALID', `${name} must be a whole number of bytes, got ${v}`, { [name]: v });
      return v;
    };
    if (limits.writeCacheBytes !== undefined) this.ctx.space.setLimit(check(limits.writeCacheBytes, 'writeCacheBytes'));
    if (limits.readCacheBytes !== undefined) this.ctx.readCache.setLimit(check(limits.readCacheBytes, 'readCacheBytes'));
  }

  statfs(): StatFs {
    const s = fs.statfsSync(this.ctx.writeCacheDir);
    return { blockSize: CLUSTER_SIZE, totalBlocks: Math.floor((s.blocks * s.bsize) / CLUSTER_SIZE), freeBlocks: Math.floor((s.bavail * s.bsize) / CLUSTER_SIZE), files: this.tree.size, freeFiles: 1e9, nameMax: 255 };
  }

  // ---- backend ----------------------------------------------------------------------------------------

  async syncToBackend(): Promise<void> {
    const disks = [...this.disks.open.values()];
    await withShipProgress(this.name, disks, async () => {
      await Promise.all(disks.map((v) => v.syncToBackend()));
      await this.shipper.flush();
    }, 'every vDisk and the tree to the backend');
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      const t0 = Date.now();
      if (this.claim.fenced !== null) return this.closeFenced();
      await this.syncToBackend();
      // a map checkpoint of each vDisk that shipped TLogs since its last one: the next rebuild from the
      // backend (another router's takeover, a lost state disk) replays nothing (volume/vdisk/checkpointer.ts)
      await Promise.all([...this.disks.open.values()].map((v) => v.checkpoints.flush()));
      // all in the backend: no DTL entry of this incarnation may outlive the clean close (a recovery on
      // another router would replay it over newer data)
      await Promise.all([...this.disks.open.values()].map((v) => v.dtl.retire(DTL_RETIRE_MS)));
      if (this.ticker !== null) clearInterval(this.ticker);
      await this.shipper.waitRemovals();
      this.shipper.stop();
      for (const v of this.disks.open.values()) v.shutdown();
      this.ctx.readCache.close();
      await this.claim.release();
      await this.ctx.mds.close();
      await this.ctx.backend.close();
      log.info('vPool closed: everything is in the backend', { vpool: this.name, ms: Date.now() - t0 });
    })();
    return this.closing;
  }

  /** Closing after the claim was lost: nothing can be shipped; the local state is stale (see vpool-claim.ts). */
  private async closeFenced(): Promise<void> {
    if (this.ticker !== null) clearInterval(this.ticker);
    this.shipper.stop();
    for (const v of this.disks.open.values()) v.shutdown();
    this.ctx.readCache.close();
    await this.ctx.mds.close();
    await this.ctx.backend.close();
    log.warn('vPool closed without shipping: this router had lost its claim on it', { vpool: this.name, why: this.claim.fenced });
  }

  // ---- helpers ----------------------------------------------------------------------------------------

  private tick(): void {
    this.ctx.space.recheck(); // space freed on the state disk by others does not wake waiting writers otherwise
    const now = Date.now();
    for (const v of this.disks.open.values()) if (v.cache.hasPending && now - v.lastShipMs >= this.scoMaxAgeMs) this.shipQuietly(v, 'age');
  }

  /**
   * ship() from a timer or from the space accounting: closing the TLog writes to the state disk and can
   * fail (ENOSPC, EIO); that must neither throw out of a timer nor fail an unrelated writer. Logged; the
   * next tick or pressure tries again (a faulted vDisk shows its fault in info()).
   */
  private shipQuietly(v: VDiskImpl, why: string): void {
    try {
      v.ship();
    } catch (err) {
      log.warn('closing the open TLog for upload failed; tried again later', { vdisk: v.id, why, error: (err as Error).message });
    }
  }
}
