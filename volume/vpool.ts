/**
 * A vPool: the directory tree and its vDisks, wired to one backend, one metadata store and the local
 * caches under the state directory:
 *
 *   <state>/mds/   the metadata store (lmdb)      <state>/wc/<id>/   each vDisk's write cache
 *   <state>/rc/    the read cache                  <state>/backend/   the default file:// backend
 *
 * Start-up: the tree comes from the metadata store, else from the backend (`pool/tree.json`), else it is
 * new; then every vDisk opens (local restart or rebuild from the backend, ./vdisk/vdisk-open.ts).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { VolumeError } from '../util/errors.js';
import { logger } from '../util/log.js';
import { Serial } from '../util/serial.js';
import { openBlobStore } from './backend/index.js';
import type { BlobStore } from './backend/types.js';
import { openMetadataStore } from '../mds/index.js';
import type { MetadataOp, MetadataStore } from '../mds/types.js';
import { ReadCache } from './datapath/read-cache.js';
import { TreeShipper } from './tree/tree-shipper.js';
import type { Tree, TreeNode } from './tree/tree.js';
import { Semaphore } from './datapath/uploader.js';
import { createVDisk } from './vdisk/vdisk-open.js';
import { VDiskTable } from './vpool-vdisks.js';
import { claimVPool, type TakenClaim } from './vpool-claim.js';
import { FencedStore } from './claim/fenced-store.js';
import type { BackendClaim } from './claim/claim.js';
import { dropLeftovers, loadTree } from './vpool-start.js';
import { VDiskImpl } from './vdisk/vdisk.js';
import type { VDiskContext } from './vdisk/vdisk-context.js';
import { vdiskMdsPrefix } from './vdisk/vdisk-meta.js';
import { statfsDisk, WriteCacheSpace } from './datapath/write-cache-space.js';
import { withShipProgress } from './datapath/ship-progress.js';
import { setDtlMode } from './vdisk/dtl-hook.js';
import type { DtlMode } from './types.js';
import { SnapshotManager } from './snapshots/snapshots.js';
import { ScrubManager, scratchDirOf } from './scrub/manager.js';
import type { SnapshotHost } from './snapshots/snapshot-host.js';
import { checkSize } from './vdisk/validate.js';
import { CLUSTER_SIZE, DEFAULT_READ_CACHE_BYTES, DEFAULT_WRITE_CACHE_BYTES, type AttrChange, type CacheStats, type NodeStat, type StatFs, type VDisk, type VPool } from './types.js';
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
    routerId,
    fenceEpoch: taken.fenceEpoch,
    fenced: () => claim.fenced,
    writeCacheDir,
    scoClusters: checkTuning(opts.scoClusters ?? 1024, 'scoClusters', 1, 65536),
    tlogScos: checkTuning(opts.tlogScos ?? 16, 'tlogScos', 1, 100000),
    dtl: opts.dtl,
    io: opts.cacheIo,
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

class VPoolImpl implements VPool {
  private tree!: Tree;
  private readonly disks: VDiskTable;
  private shipper!: TreeShipper;
  private ticker: NodeJS.Timeout | null = null;
  private closing: Promise<void> | null = null;
  private readonly treeLock = new Serial();

  readonly snapshots: SnapshotManager;
  readonly scrub: ScrubManager;

  constructor(readonly name: string, private readonly ctx: VDiskContext, private readonly scoMaxAgeMs: number, scratchDir: string, private readonly claim: BackendClaim) {
    this.disks = new VDiskTable(name, ctx);
    this.snapshots = new SnapshotManager(this.snapshotHost());
    ctx.family = this.snapshots;
    this.scrub = new ScrubManager({
      backend: ctx.backend, scratchDir, scoClusters: ctx.scoClusters,
      vdiskAt: (p) => this.disks.of(this.fileNode(p)),
      all: () => this.disks.open.values(),
      allIds: () => this.tree.files().map((n) => n.vdiskId!),
      cloning: (v) => v.docs.doc.snapshots.some((s) => this.snapshots.pinned.has(s.uuid)),
    });
    claim.onFenced(() => this.onFenced());
  }

  /** The claim was lost (volume/claim/claim.ts logged why): nothing more goes to the backend. */
  private onFenced(): void {
    for (const v of this.disks.open.values()) v.uploader.stop();
    this.shipper?.stop();
  }

  /** What snapshots and clones (volume/snapshots/snapshots.ts) need of the tree and the vDisks. */
  private snapshotHost(): SnapshotHost {
    return {
      ctx: this.ctx,
      vdiskAt: (p) => this.disks.of(this.fileNode(p)),
      all: () => this.disks.open.values(),
      byId: (id) => this.disks.open.get(id),
      pathOf: (id) => {
        const node = this.tree.files().find((n) => n.vdiskId === id);
        return node === undefined ? undefined : this.tree.pathOf(node);
      },
      checkFree: (p) => void this.freeName(p),
      discard: (id) => this.shipper.removeVDisk(id),
      addVDisk: (p, like, v, extra) => this.change(async () => {
        const { dir, name } = this.freeName(p);
        const src = this.tree.lookup(like);
        const now = Date.now();
        const node = this.tree.add(dir, name, { kind: 'file', mode: src.mode, uid: src.uid, gid: src.gid, atimeMs: now, mtimeMs: now, ctimeMs: now, xattrs: {}, vdiskId: v.id });
        this.disks.open.set(v.id, v);
        this.touch(dir, now);
        return [this.tree.putOp(node), this.tree.putOp(dir), this.tree.nextInoOp(), ...extra];
      }),
    };
  }

  /** BUSY if the vDisk behind `node` has clones (it cannot be removed). */
  private checkNoClones(node: TreeNode, p: string): void {
    const v = this.disks.open.get(node.vdiskId!);
    if (v !== undefined && this.snapshots.hasClones(v)) throw new VolumeError('BUSY', `${p} has clones: remove them first`, { path: p, clones: this.snapshots.clonePaths(v) });
  }

  get routerId(): string {
    return this.ctx.routerId;
  }

  get backend(): BlobStore {
    return this.ctx.backend;
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

  // ---- tree reads ------------------------------------------------------------------------------------

  stat(p: string): NodeStat {
    return this.statNode(this.tree.lookup(p));
  }

  readdir(p: string): string[] {
    const node = this.tree.lookup(p);
    if (node.kind !== 'dir') throw new VolumeError('NOT_DIR', `not a directory: ${p}`, { path: p });
    return this.tree.childNames(node.ino);
  }

  vdisk(p: string): VDisk {
    return this.disks.of(this.fileNode(p));
  }

  getXattr(p: string, name: string): Buffer | undefined {
    const v = this.tree.lookup(p).xattrs[name];
    return v === undefined ? undefined : Buffer.from(v, 'base64');
  }

  listXattr(p: string): string[] {
    return Object.keys(this.tree.lookup(p).xattrs);
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

  // ---- tree changes (serialised) ---------------------------------------------------------------------

  mkdir(p: string, mode: number, uid: number, gid: number): Promise<void> {
    return this.change(async () => {
      const { dir, name } = this.freeName(p);
      const now = Date.now();
      const node = this.tree.add(dir, name, { kind: 'dir', mode: 0o40000 | (mode & 0o7777), uid, gid, atimeMs: now, mtimeMs: now, ctimeMs: now, xattrs: {} });
      this.touch(dir, now);
      return [this.tree.putOp(node), this.tree.putOp(dir), this.tree.nextInoOp()];
    });
  }

  rmdir(p: string): Promise<void> {
    return this.change(async () => {
      const node = this.tree.lookup(p);
      if (node.kind !== 'dir') throw new VolumeError('NOT_DIR', `not a directory: ${p}`, { path: p });
      if (node.parent === 0) throw new VolumeError('BUSY', 'the vPool root cannot be removed', { path: p });
      if (this.tree.childCount(node.ino) > 0) throw new VolumeError('NOT_EMPTY', `directory not empty: ${p}`, { path: p });
      const dir = this.tree.get(node.parent)!;
      this.tree.remove(node);
      this.touch(dir, Date.now());
      return [this.tree.deleteOp(node), this.tree.putOp(dir)];
    });
  }

  createFile(p: string, mode: number, uid: number, gid: number, size = 0): Promise<void> {
    return this.change(async () => {
      checkSize(size, { path: p });
      const { dir, name } = this.freeName(p);
      const id = randomUUID();
      const v = await createVDisk(id, this.ctx);
      try {
        if (size > 0) await v.resize(size);
      } catch (err) {
        v.shutdown();
        v.cache.destroy();
        await this.ctx.mds.deletePrefix(vdiskMdsPrefix(id));
        throw err;
      }
      this.disks.open.set(id, v);
      const now = Date.now();
      const node = this.tree.add(dir, name, { kind: 'file', mode: 0o100000 | (mode & 0o7777), uid, gid, atimeMs: now, mtimeMs: now, ctimeMs: now, xattrs: {}, vdiskId: id });
      this.touch(dir, now);
      log.info('vDisk created', { vpool: this.name, path: p, vdisk: id, size });
      return [this.tree.putOp(node), this.tree.putOp(dir), this.tree.nextInoOp()];
    });
  }

  unlink(p: string): Promise<void> {
    return this.change(async () => {
      const node = this.fileNode(p);
      this.checkNoClones(node, p);
      const dir = this.tree.get(node.parent)!;
      this.tree.remove(node);
      this.touch(dir, Date.now());
      await this.ctx.mds.commit([this.tree.deleteOp(node), this.tree.putOp(dir)]);
      await this.disks.drop(node, this.shipper);
      return [];
    });
  }

  rename(from: string, to: string): Promise<void> {
    return this.change(async () => {
      const node = this.tree.lookup(from);
      if (node.parent === 0) throw new VolumeError('BUSY', 'the vPool root cannot be renamed', { path: from });
      const { dir, name } = this.tree.parentOf(to);
      if (this.tree.isWithin(dir, node)) throw new VolumeError('INVALID', `cannot move ${from} into itself`, { from, to });
      const ops: MetadataOp[] = [];
      const target = this.tree.child(dir.ino, name);
      if (target !== undefined && target.ino === node.ino) return [];
      if (target !== undefined) {
        if (target.kind === 'dir' && node.kind !== 'dir') throw new VolumeError('IS_DIR', `${to} is a directory`, { from, to });
        if (target.kind !== 'dir' && node.kind === 'dir') throw new VolumeError('NOT_DIR', `${to} is not a directory`, { from, to });
        if (target.kind === 'dir' && this.tree.childCount(target.ino) > 0) throw new VolumeError('NOT_EMPTY', `${to} is not empty`, { from, to });
        if (target.kind === 'file') this.checkNoClones(target, to);
        this.tree.remove(target);
        ops.push(this.tree.deleteOp(target));
        if (target.kind === 'file') await this.disks.drop(target, this.shipper);
      }
      const oldDir = this.tree.get(node.parent)!;
      this.tree.move(node, dir, name);
      const now = Date.now();
      node.ctimeMs = now;
      this.touch(oldDir, now);
      this.touch(dir, now);
      ops.push(this.tree.putOp(node), this.tree.putOp(oldDir), this.tree.putOp(dir));
      return ops;
    });
  }

  setAttrs(p: string, change: AttrChange): Promise<void> {
    return this.change(async () => {
      const node = this.tree.lookup(p);
      if (change.mode !== undefined && change.mode & 0o222 && node.kind === 'file' && this.disks.of(node).template) {
        throw new VolumeError('READ_ONLY', `${p} is a template: read-only, its mode takes no write bits`, { path: p, mode: change.mode });
      }
      if (change.mode !== undefined) node.mode = (node.mode & ~0o7777) | (change.mode & 0o7777);
      if (change.uid !== undefined && change.uid >= 0) node.uid = change.uid;
      if (change.gid !== undefined && change.gid >= 0) node.gid = change.gid;
      if (change.atimeMs !== undefined) node.atimeMs = change.atimeMs;
      if (change.mtimeMs !== undefined) node.mtimeMs = change.mtimeMs;
      node.ctimeMs = Date.now();
      return [this.tree.putOp(node)];
    });
  }

  setXattr(p: string, name: string, value: Uint8Array): Promise<void> {
    return this.change(async () => {
      const node = this.tree.lookup(p);
      node.xattrs[name] = Buffer.from(value).toString('base64');
      node.ctimeMs = Date.now();
      return [this.tree.putOp(node)];
    });
  }

  removeXattr(p: string, name: string): Promise<void> {
    return this.change(async () => {
      const node = this.tree.lookup(p);
      if (!(name in node.xattrs)) throw new VolumeError('NOT_FOUND', `no attribute ${name} on ${p}`, { path: p, name });
      delete node.xattrs[name];
      node.ctimeMs = Date.now();
      return [this.tree.putOp(node)];
    });
  }

  setDtlMode(p: string, mode: DtlMode): Promise<void> {
    return setDtlMode(this.disks.of(this.fileNode(p)), mode);
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

  /** Runs a tree change alone, persists the operations it returns, then ships the tree. */
  private change(fn: () => Promise<MetadataOp[]>): Promise<void> {
    if (this.closing !== null) return Promise.reject(new VolumeError('CLOSED', 'the vPool is closing'));
    if (this.claim.fenced !== null) return Promise.reject(new VolumeError('FENCED', `this router lost its claim on the vPool: ${this.claim.fenced}`));
    return this.treeLock.run(async () => {
      const ops = await fn();
      if (ops.length > 0) {
        await this.ctx.mds.commit(ops);
      }
      this.shipper.changed();
    });
  }

  private freeName(p: string): { dir: TreeNode; name: string } {
    const { dir, name } = this.tree.parentOf(p);
    if (this.tree.child(dir.ino, name) !== undefined) throw new VolumeError('EXISTS', `already exists: ${p}`, { path: p });
    return { dir, name };
  }

  private fileNode(p: string): TreeNode {
    const node = this.tree.lookup(p);
    if (node.kind !== 'file') throw new VolumeError('IS_DIR', `is a directory: ${p}`, { path: p });
    return node;
  }

  private touch(dir: TreeNode, now: number): void {
    dir.mtimeMs = now;
    dir.ctimeMs = now;
  }

  private statNode(node: TreeNode): NodeStat {
    const base = { ino: node.ino, mode: node.mode, uid: node.uid, gid: node.gid, atimeMs: node.atimeMs, mtimeMs: node.mtimeMs, ctimeMs: node.ctimeMs };
    if (node.kind === 'dir') return { ...base, kind: 'dir', size: 4096, allocatedBytes: 4096, nlink: 2 };
    const v = this.disks.of(node);
    // a template is read-only (EROFS on write): its mode says so, whatever was set before
    const mode = v.template ? base.mode & ~0o222 : base.mode;
    return { ...base, mode, kind: 'file', size: v.size, allocatedBytes: v.allocatedBytes, nlink: 1 };
  }
}
