/**
 * One thin vDisk: byte-addressed reads and writes over 4 KiB clusters.
 *
 * Write: the clusters a write touches (partial ones read-modify-written) are appended to the open SCO
 * of the local write cache in one writev, then the cluster map points at them; the write is acknowledged
 * once the kernel has the bytes, so a kill of the process loses nothing acknowledged (vdisk-write.ts).
 * Read: cluster map → write cache → read cache → backend (ranged) → zeros; every slot is verified.
 * The class is built in layers, one file each: its state, cork and shutdown (vdisk-state.ts), the state
 * changes others ask for (vdisk-transitions.ts), the write path (vdisk-write.ts), and here the VDisk
 * interface and the read path. Opening (fresh, local restart, rebuild from the backend) lives in vdisk-open.ts.
 */
import { VolumeError } from '../../util/errors.js';
import { SLOT_SIZE } from '../datapath/formats/sco-format.js';
import { checkOffset, checkSize, checkWriteRange } from './validate.js';
import { CLUSTER_SIZE, type VDisk, type VDiskInfo } from '../types.js';
import type { ReadCache } from '../datapath/read/read-cache.js';
import { readClusters, type SlotSource } from '../datapath/read/read-path.js';
import { ReadAhead } from '../datapath/read/read-ahead.js';
import { seekExtent } from './vdisk-extents.js';
import { fetchVerifiedSlots } from './slot-fetch.js';
import type { ChainDoc } from '../lineage/chain.js';
import { SCRUB_SCO_BASE } from '../lineage/scrub-state.js';
import { applyScrubTo } from './scrub-apply.js';
import { type GatheredWrite, VDiskWrites, ZERO_CLUSTER } from './vdisk-write.js';
import { joinGather, type Gatherer } from './write-gather.js';

export class VDiskImpl extends VDiskWrites implements VDisk, SlotSource, Gatherer {
  /** Writes held during a gather (write-gather.ts), submitted at its end. */
  private gathered: GatheredWrite[] = [];

  // ---- the VDisk interface -------------------------------------------------------------------------

  read(offset: number, length: number): Promise<Buffer> {
    try {
      const ctx = { vdisk: this.id };
      checkOffset(offset, 'offset', ctx);
      checkOffset(length, 'length', ctx);
      this.checkOpen();
      if (offset >= this.size || length === 0) return Promise.resolve(Buffer.alloc(0));
      const out = Buffer.allocUnsafe(Math.min(this.size, offset + length) - offset);
      return this.readInto(out, offset).then(() => out); // every byte is written: data, or zeros for holes
    } catch (err) {
      return Promise.reject(err);
    }
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    checkWriteRange(offset, data.length, { vdisk: this.id });
    this.checkWritable();
    if (data.length === 0) return;
    const done = this.io.begin();
    try {
      // in a gather (write-gather.ts) the write waits for the others of its moment: one turn of the lock for all
      if (joinGather(this)) await new Promise<void>((resolve, reject) => this.gathered.push({ offset, data, resolve, reject }));
      else await this.exclusive(() => this.writeLocked(offset, data));
      await this.dtl.settle();
      await this.ctx.beforeAck?.('write');
    } finally {
      done();
    }
  }

  /** The end of a gather: the writes it held, in order, under one turn of the lock. */
  submitGathered(): void {
    const items = this.gathered;
    this.gathered = [];
    this.exclusive(() => this.writeManyLocked(items)).catch((err: unknown) => {
      for (const it of items) it.reject(err); // writeManyLocked settles each itself: only a failure outside it lands here
    });
  }

  /**
   * Discards `length` bytes at `offset`: afterwards the whole range reads as zeros (guest TRIM, fallocate
   * PUNCH_HOLE and ZERO_RANGE, NBD TRIM and WRITE_ZEROES all land here). Whole clusters are unmapped
   * (allocatedBytes drops, SEEK_HOLE sees them); the part of an edge cluster in the range is zeroed by a
   * read-modify-write, or the edge cluster is unmapped too when nothing non-zero is left in it. Any byte
   * alignment; the range must lie within the size (INVALID otherwise). Durable against a kill of the
   * process once resolved, and ordered with the writes around it (../datapath/formats/tlog-format.ts).
   */
  async discard(offset: number, length: number): Promise<void> {
    const ctx = { vdisk: this.id };
    checkWriteRange(offset, checkOffset(length, 'length', ctx), ctx);
    this.checkWritable();
    if (length === 0) return;
    const done = this.io.begin();
    try {
      await this.exclusive(() => this.discardLocked(offset, length));
      await this.dtl.settle();
      await this.ctx.beforeAck?.('discard');
    } finally {
      done();
    }
  }

  async resize(size: number): Promise<void> {
    checkSize(size, { vdisk: this.id });
    this.checkWritable();
    await this.exclusive(() => this.resizeLocked(size));
    // a resize whose call returned survives a power cut (DESIGN §4): its TLog record is fdatasynced, and
    // (async, sync) the DTL has its entry on its disk, as after an fsync
    await this.cache.syncLocal();
    await this.dtl.flush();
    await this.ctx.beforeAck?.('resize');
  }

  /**
   * Not under the vDisk's lock: syncLocal() covers everything appended before it is called (every write
   * acknowledged so far), and writes go on meanwhile instead of waiting for the disk flush.
   */
  async sync(): Promise<void> {
    this.checkOpen();
    await this.cache.syncLocal();
    await this.dtl.flush();
    await this.ctx.beforeAck?.('fsync');
  }

  async syncToBackend(): Promise<void> {
    this.checkOpen();
    await this.exclusive(async () => this.ship());
    await this.uploader.waitIdle();
    await this.docs.flush();
  }

  /** How long the vDisk has had data not yet in the backend (0 when there is none). */
  private uploadLag(dirty: number): number {
    if (dirty === 0) this.dirtySinceMs = null;
    return this.dirtySinceMs === null ? 0 : Date.now() - this.dirtySinceMs;
  }

  info(): VDiskInfo {
    const backlog = this.uploader.backlog;
    let dirty = this.cache.openScoBytes;
    for (const [sco, count] of this.scoCounts) if (sco > this.corkedSco && sco < SCRUB_SCO_BASE) dirty += count * SLOT_SIZE; // scrub SCOs are in the backend
    return {
      id: this.id, size: this.size, allocatedBytes: this.allocatedBytes, inheritedBytes: this.inheritedBytes, backendBytes: this.backendBytes,
      dirtyBytes: dirty, uploadBacklog: backlog, template: this.template, router: this.ctx.routerId,
      parent: this.ctx.family?.parentOf(this) ?? null, clones: this.ctx.family?.clonePaths(this) ?? [], dtl: this.dtl.info(),
      fault: this.fault,
      uploadLagMs: this.uploadLag(dirty),
      dtlQueuedBytes: this.dtl.queuedBytes ?? 0,
    };
  }

  seek(offset: number, what: 'data' | 'hole'): number {
    return seekExtent(this.map, this.size, offset, what);
  }

  /**
   * Applies a scrub (the ScrubManager calls it under this vDisk's lock, volume/scrub/manager.ts): the live
   * map moves to the new SCOs where it still points at the old slots, and the moved pages, the new SCOs'
   * slot counts and `doc` are committed at once (scrub-apply.ts). Returns the clusters moved. Crash: all or
   * nothing; a failed commit moves the map back.
   */
  applyScrub(doc: ChainDoc, newScos: Array<[number, number]>, relocations: Float64Array): Promise<number> {
    this.checkOpen();
    return applyScrubTo(this, doc, newScos, relocations).then((moved) => {
      for (const [, count] of newScos) this.state.backendBytes += count * SLOT_SIZE; // the new SCOs are in the backend
      this.checkpoints.chainChanged(); // the chain the map checkpoints cover was replaced (checkpointer.ts)
      return moved;
    });
  }

  // ---- read path ---------------------------------------------------------------------------------
  // How a read runs: volume/datapath/read/read-path.ts and docs/read-path.md. This vDisk is the read path's ReadTarget
  // (its map, the read cache, its namespaces) and the SlotSource of its own namespace.

  /** Read-ahead of this vDisk's sequential reads from the backend (../datapath/read/read-ahead.ts), made on first use. */
  private readAheadState?: ReadAhead;

  /** The read-ahead, once a read has run (tests wait for it to be idle). */
  get readAhead(): ReadAhead | undefined {
    return this.readAheadState;
  }

  /**
   * Fills `out` with the bytes at `offset` straight from the caches (no second copy for whole clusters);
   * holes read as zeros. Returns the bytes filled: out.length cut to the size (0 at or past it); the rest
   * of `out` is not touched.
   */
  readInto(out: Buffer, offset: number): Promise<number> {
    // not async: a read served from the caches settles with one resolved promise (errors still reject)
    try {
      checkOffset(offset, 'offset', { vdisk: this.id });
      this.checkOpen();
      if (offset >= this.size || out.length === 0) return Promise.resolve(0);
      const n = Math.min(out.length, this.size - offset);
      const ahead = (this.readAheadState ??= new ReadAhead(this));
      // once the request's own fetches are on their way: the range ahead, if the reads are sequential
      const pending = readClusters(this, n === out.length ? out : out.subarray(0, n), offset, (remote) => ahead.note(offset, offset + n, remote));
      if (pending === undefined) {
        this.io.touch();
        return Promise.resolve(n);
      }
      // a read that waits may fetch SCOs a scrub is about to delete: the scrub waits for it (read-gate.ts)
      const leave = this.readGate.enter();
      const done = this.io.begin();
      return pending.then(() => (leave(), done(), n), (err: unknown) => {
        leave();
        done();
        throw err;
      });
    } catch (err) {
      return Promise.reject(err);
    }
  }

  protected async readCluster(a: number): Promise<Buffer> {
    if (this.map.scoOf(a) === 0) return ZERO_CLUSTER;
    const out = Buffer.allocUnsafe(CLUSTER_SIZE);
    await readClusters(this, out, a * CLUSTER_SIZE);
    return out;
  }

  get readCache(): ReadCache {
    return this.ctx.readCache;
  }

  /** False once closed (read-ahead stops). */
  get readable(): boolean {
    return !this.closed;
  }

  source(depth: number): SlotSource {
    return depth === 0 ? this : this.ancestor(depth);
  }

  /**
   * SCOs found evicted (numbers never reused; an evicted SCO never comes back): spares a failed open per run
   * on reads from the backend. Cleared when it holds EVICTED_MEMO entries, to bound its memory.
   */
  private readonly evictedScos = new Set<number>();
  private static readonly EVICTED_MEMO = 65536;

  localScoFd(sco: number): number | null {
    if (this.evictedScos.has(sco)) return null;
    const fd = this.cache.scoFd(sco);
    if (fd === null && (sco <= this.corkedSco || sco >= SCRUB_SCO_BASE)) {
      if (this.evictedScos.size >= VDiskImpl.EVICTED_MEMO) this.evictedScos.clear();
      this.evictedScos.add(sco);
    }
    return fd;
  }

  scoSlots(sco: number): number | undefined {
    return this.scoCounts.get(sco);
  }

  /** The vDisk whose namespace clone depth `depth` reads (1 = the parent). */
  private ancestor(depth: number): SlotSource {
    const id = this.docs.doc.ancestors[depth - 1];
    const v = id === undefined ? undefined : this.ctx.family?.byId(id);
    if (v === undefined) throw new VolumeError('BACKEND', `ancestor ${depth} (${id ?? 'unknown'}) of this clone is not open`, { vdisk: this.id, depth, ancestor: id });
    return v;
  }

  /** `n` verified slots for clusters a..a+n-1, stored in SCO `sco` from `slot` (of this vDisk's namespace). */
  fetchSlots(a: number, sco: number, slot: number, n: number): Promise<Buffer> {
    return fetchVerifiedSlots(this, a, sco, slot, n);
  }
}
