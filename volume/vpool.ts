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
import { vdiskContext } from './vpool-context.js';
import { TreeShipper } from './tree/tree-shipper.js';
import { claimVPool, type TakenClaim } from './vpool-claim.js';
import { FencedStore } from './claim/fenced-store.js';
import type { BackendClaim } from './claim/claim.js';
import { dropLeftovers, loadTree } from './vpool-start.js';
import { VPoolTree } from './vpool-tree.js';
import { VDiskImpl } from './vdisk/vdisk.js';
import type { VDiskContext } from './vdisk/vdisk-context.js';
import { withShipProgress } from './datapath/upload/ship-progress.js';
import { ScrubManager, scratchDirOf } from './scrub/manager.js';
import { CLUSTER_SIZE, type CacheStats, type StatFs, type VPool } from './types.js';
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
  const ctx = vdiskContext(stateDir, backend, mds, routerId, opts, {
    fenceEpoch: taken.fenceEpoch,
    fenced: () => claim.fenced,
    // who this router is to a DTL server's fence (dtl-client/fence.ts)
    claimEpoch: () => claim.epoch,
    ...(opts.ownerTag === undefined ? {} : { ownerTag: opts.ownerTag }),
    ...(opts.beforeAck === undefined ? {} : { beforeAck: opts.beforeAck }),
  });
  const pool = new VPoolImpl(opts.name, ctx, opts.scoMaxAgeMs ?? 5000, scratchDirOf(stateDir), claim);
  try {
    await pool.start(opts.delegated);
  } catch (err) {
    claim.stop(); // not released: what start() did is half-done; the claim expires
    throw err;
  }
  return pool;
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
      // a vDisk delegated to another router is that router's to change (its objects are not this one's to sweep)
      allIds: () => this.tree.files().map((n) => n.vdiskId!).filter((id) => !this.disks.delegated.has(id)),
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

  async start(delegated?: ReadonlyMap<string, string>): Promise<void> {
    const { mds, backend } = this.ctx;
    const { tree, from } = await loadTree(mds, backend);
    this.tree = tree;
    this.shipper = new TreeShipper(backend, mds, () => this.tree.dump(), () => this.claim.epoch);
    await dropLeftovers(mds, this.tree, this.ctx.writeCacheDir);
    if (delegated !== undefined) await this.disks.markDelegated(this.tree, delegated);
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

  // ---- ownership per vDisk (docs/cluster.md) ---------------------------------------------------------

  /**
   * Hands the vDisk at `p` over to router `to` (the caller has held its calls, and records the handover in the
   * registry after this — if that fails, it takes the vDisk back): shipped whole, checkpointed, its DTL
   * retired, closed here. Its calls here answer BUSY naming `to` until takeBackVDisk(). Refused (BUSY) for a
   * clone or a vDisk with clones: they read each other's data, served by one router (this step's limit).
   */
  async handOverVDisk(p: string, to: string): Promise<{ id: string; size: number }> {
    const v = this.disks.of(this.fileNode(p));
    if (v.docs.doc.parent !== null || this.snapshots.hasClones(v)) {
      throw new VolumeError('BUSY', `${p} is a clone or has clones: it is served with its family by the vPool's owner`, { path: p });
    }
    if (this.claim.fenced !== null) throw new VolumeError('FENCED', `this router lost its claim on the vPool (${this.claim.fenced})`, { path: p });
    await this.disks.delegate(v, to, DTL_RETIRE_MS);
    return { id: v.id, size: v.size };
  }

  /** Serves the delegated vDisk `id` here again under owner tag `tag` (its delegate closed it, or lost it): rebuilt from the backend, fenced first. */
  async takeBackVDisk(id: string, tag: number): Promise<void> {
    await this.disks.takeBack(id, tag);
  }

  /** vDisks delegated to other routers now: id → router. */
  delegatedVDisks(): Map<string, string> {
    return new Map([...this.disks.delegated].map(([id, d]) => [id, d.router]));
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
