/**
 * One thin vDisk: byte-addressed reads and writes over 4 KiB clusters.
 *
 * Write: the clusters a write touches (partial ones read-modify-written) are appended to the open SCO
 * of the local write cache in one writev, then the cluster map points at them; the write is acknowledged
 * once the kernel has the bytes, so a kill of the process loses nothing acknowledged.
 * Read: cluster map → write cache → read cache → backend (ranged) → zeros; every slot is verified.
 * Opening (fresh, local restart, rebuild from the backend) lives in vdisk-open.ts; corking in cork().
 */
import { isCode, VolumeError } from '../../util/errors.js';
import { logger } from '../../util/log.js';
import { Serial } from '../../util/serial.js';
import { ClusterMap } from '../datapath/cluster-map.js';
import type { CacheFault, ClosedSco } from '../datapath/cache-files.js';
import { LocalCache } from '../datapath/local-cache.js';
import { SLOT_SIZE } from '../datapath/sco-format.js';
import { RecordType, type TLogRecord } from '../datapath/tlog-format.js';
import { Uploader, type PendingTlog } from '../datapath/uploader.js';
import { checkOffset, checkSize, checkWriteRange } from './validate.js';
import { CLUSTER_SIZE, type VDisk, type VDiskFault, type VDiskInfo } from '../types.js';
import type { VDiskContext } from './vdisk-context.js';
import type { ReadCache } from '../datapath/read-cache.js';
import { readClusters, type SlotSource } from '../datapath/read-path.js';
import { ReadAhead } from '../datapath/read-ahead.js';
import { NO_DTL, type DtlSink } from './dtl-sink.js';
import type { DocStore } from '../lineage/snapshot-store.js';
import { commitCork, corkOps } from './vdisk-meta.js';
import { seekExtent } from './vdisk-extents.js';
import { fetchVerifiedSlots } from './slot-fetch.js';
import { applyTo } from '../lineage/clone-base.js';
import type { ChainDoc } from '../lineage/chain.js';
import { scoKeyIn, SCRUB_SCO_BASE, type ScoRange } from '../lineage/scrub-state.js';
import { ReadGate } from './read-gate.js';
import { IoActivity } from '../../util/io-activity.js';
import { applyScrubTo } from './scrub-apply.js';

const log = logger('vdisk');
const ZERO_CLUSTER = Buffer.alloc(CLUSTER_SIZE);

export class VDiskImpl implements VDisk, SlotSource {
  readonly map = new ClusterMap();
  /** Slots in each closed SCO (needed to read it back from the backend). */
  readonly scoCounts = new Map<number, number>();
  size = 0;
  corkedTlog = 0;
  corkedSco = 0;
  backendBytes = 0;
  /** Bytes of this vDisk's SCO files in the write cache. */
  localBytes = 0;
  template = false;
  cache!: LocalCache;
  uploader!: Uploader;
  lastShipMs = Date.now();
  /** When data not yet in the backend first appeared (null: everything written is there, as far as info() last saw). */
  private dirtySinceMs: number | null = null;
  /** Where every change of the write cache is also sent (the DTL, dtl-hook.ts); mode none does nothing. */
  dtl: DtlSink = NO_DTL;
  /** Snapshots, template flag, clone parentage (../lineage/snapshot-store.ts). */
  docs!: DocStore;
  /** Reads in flight, for a scrub's apply to wait out before old SCOs go (read-gate.ts). */
  readonly readGate = new ReadGate();
  /**
   * Every scrub SCO range this process has seen in a doc (numbers are never reused): a read planned while an
   * apply commits (the map already moved, the doc not yet switched) or just before it (the old map, the new
   * doc no longer naming the old scrub's SCOs, which stay until the sweep) still finds its SCO's key.
   */
  readonly seenScoRanges: ScoRange[] = [];
  /** The guest's reads, writes and discards in flight and the last one's end: the scrubber yields to them. */
  readonly io = new IoActivity();
  private readonly lock = new Serial();
  private closed = false;
  private passingFault: VDiskFault | null = null;

  constructor(readonly id: string, readonly tag: number, readonly ctx: VDiskContext) {}

  /** What this vDisk wrote itself (`du`, st_blocks); a clone's data read through from its parents is inheritedBytes. */
  get allocatedBytes(): number {
    return this.map.ownClusters * CLUSTER_SIZE;
  }

  /** A clone's mapped clusters of its ancestors (counted with them, not here). */
  get inheritedBytes(): number {
    return this.map.inheritedClusters * CLUSTER_SIZE;
  }

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
      await this.exclusive(() => this.writeLocked(offset, data));
      await this.dtl.settle();
    } finally {
      done();
    }
  }

  /**
   * Discards `length` bytes at `offset`: afterwards the whole range reads as zeros (guest TRIM, fallocate
   * PUNCH_HOLE and ZERO_RANGE, NBD TRIM and WRITE_ZEROES all land here). Whole clusters are unmapped
   * (allocatedBytes drops, SEEK_HOLE sees them); the part of an edge cluster in the range is zeroed by a
   * read-modify-write, or the edge cluster is unmapped too when nothing non-zero is left in it. Any byte
   * alignment; the range must lie within the size (INVALID otherwise). Durable against a kill of the
   * process once resolved, and ordered with the writes around it (../datapath/tlog-format.ts).
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
  }

  /**
   * Not under the vDisk's lock: syncLocal() covers everything appended before it is called (every write
   * acknowledged so far), and writes go on meanwhile instead of waiting for the disk flush.
   */
  async sync(): Promise<void> {
    this.checkOpen();
    await this.cache.syncLocal();
    await this.dtl.flush();
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

  /** The state-disk fault affecting this vDisk (VDiskInfo.fault), or null. */
  get fault(): VDiskFault | null {
    const f = this.cache.fault ?? this.passingFault;
    return f === null ? null : { code: f.code, message: f.message, since: f.since };
  }

  /** The write cache became faulted (../datapath/local-cache.ts): said once, loudly. */
  onFault(f: CacheFault): void {
    log.error('the write-cache disk failed: this vDisk takes no more writes (fsync and writes fail with EIO) until the vPool is restarted', {
      vdisk: this.id, errno: f.code, cause: f.message, dir: this.cache.dir,
    });
  }

  /** A failure that clears by itself (a full disk, a failed metadata commit); null once something succeeds again. */
  notePassingFault(err: unknown, what: string): void {
    const e = err as { code?: string; message?: string };
    const code = e?.code === 'NO_SPACE' ? 'ENOSPC' : e?.code === 'BACKEND' ? 'EIO' : String(e?.code ?? 'EIO');
    const message = `${what}: ${e?.message ?? String(err)}`;
    if (this.passingFault?.code !== code) log.error(`${what} failed`, { vdisk: this.id, errno: code, cause: e?.message ?? String(err) });
    this.passingFault = { code, message, since: this.passingFault?.code === code ? this.passingFault.since : Date.now() };
  }

  clearPassingFault(): void {
    if (this.passingFault === null) return;
    log.info('the state disk works again for this vDisk', { vdisk: this.id, was: this.passingFault.code });
    this.passingFault = null;
  }

  // ---- internals used by the vPool ---------------------------------------------------------------

  /** Closes the open SCO and TLog so the uploader ships them (the age timer, pressure, sync-to-backend). */
  ship(): void {
    if (this.closed) return;
    this.lastShipMs = Date.now();
    this.cache.closeTlog();
  }

  /** Runs `fn` with no other write, resize or sync of this vDisk in between. */
  exclusive<T>(fn: () => Promise<T> | T): Promise<T> {
    return this.lock.run(fn);
  }

  get busy(): boolean {
    return this.lock.busy;
  }

  /** Applies a TLog record while opening (replay). Safe to replay over a newer map: last writer wins. */
  applyRecord(rec: TLogRecord): void {
    applyTo(this, rec); // the one rule for a record, shared with the backend-only replay of ../lineage/clone-base.ts
  }

  onScoClosed(c: ClosedSco): void {
    this.scoCounts.set(c.sco, c.count);
  }

  onTlogClosed(tlog: number, scos: number[]): void {
    this.uploader.enqueue({ tlog, scos });
  }

  /** The uploader put TLog `p` (and its SCOs) in the backend: persist the map, free the local copies. */
  async cork(p: PendingTlog, scoBytes: number): Promise<void> {
    if (this.closed) return;
    // the map pages are taken *before* the fdatasync: every slot they point at was written before it
    // started, so it covers them. Taken after, they could name slots written while it ran (not on disk).
    const ops = corkOps(this, p);
    try {
      await commitCork(this.ctx.mds, this, ops, () => this.cache.syncLocal());
    } catch (err) {
      if (this.cache.fault === null) this.notePassingFault(err, `cork of TLog ${p.tlog} (metadata commit, retried every second)`);
      throw err;
    }
    if (this.passingFault !== null && this.passingFault.message.startsWith('cork')) this.clearPassingFault();
    this.corkedTlog = p.tlog;
    this.corkedSco = Math.max(this.corkedSco, ...p.scos.slice(-1));
    this.backendBytes += scoBytes;
    this.cache.deleteClosedTlog(p.tlog);
    for (const sco of p.scos) {
      this.ctx.space.addEvictable(this, sco);
    }
    // the uploader still holds `p`: idle when it is the last TLog waiting and nothing new is open
    await this.dtl.trim(this.corkedSco, this.uploader.backlog.tlogs <= 1 && !this.cache.hasPending);
  }

  /**
   * Recovery after a host loss (dtl-client/recover.ts): applies one DTL entry as the write, resize or
   * discard that made it. `keep` (a discard after a local restart): the mapped clusters of the range that
   * hold something newer than the discard, left as they are.
   */
  async applyDtlEntry(e: { kind: 'cluster'; address: number; data: Uint8Array } | { kind: 'resize'; size: number }
    | { kind: 'discard'; first: number; count: number }, keep?: (address: number) => boolean): Promise<void> {
    if (e.kind === 'resize') return this.resizeLocked(e.size);
    if (e.kind === 'discard') {
      const end = Math.min(e.first + e.count, Math.ceil(this.size / CLUSTER_SIZE));
      if (keep === undefined) return this.discardClusters(e.first, end - e.first);
      // split the range at the clusters to keep: the runs between them are discarded, in address order
      let from = e.first;
      for (const a of this.map.mappedIn(e.first, end - e.first)) {
        if (!keep(a)) continue;
        this.discardClusters(from, a - from);
        from = a + 1;
      }
      return this.discardClusters(from, end - from);
    }
    await this.append([e.address], [e.data]);
  }

  /**
   * Applies a scrub (the ScrubManager calls it under this vDisk's lock, volume/scrub/manager.ts): the live
   * map moves to the new SCOs where it still points at the old slots, and the moved pages, the new SCOs'
   * slot counts and `doc` are committed at once (scrub-apply.ts). Returns the clusters moved. Crash: all or
   * nothing; a failed commit moves the map back.
   */
  applyScrub(doc: ChainDoc, newScos: Array<[number, number]>, relocations: Float64Array): Promise<number> {
    this.checkOpen();
    return applyScrubTo(this, doc, newScos, relocations);
  }

  /** The backend key of SCO `sco`: its own, or a scrub's (the doc's scrub says which, lineage/scrub-state.ts). */
  scoKeyOf(sco: number): string {
    const ranges = this.docs.doc.scrub?.scoRanges ?? [];
    if (sco >= SCRUB_SCO_BASE && !ranges.some((r) => sco >= r.from && sco <= r.to)) return scoKeyIn(this.id, this.seenScoRanges, sco);
    return scoKeyIn(this.id, ranges, sco);
  }

  /** Removes SCO `sco` from the write cache; returns the bytes freed (0 if it was not there). */
  evictSco(sco: number): number {
    if (!this.cache.evictSco(sco)) return 0;
    const bytes = (this.scoCounts.get(sco) ?? 0) * SLOT_SIZE;
    this.localBytes -= bytes;
    return bytes;
  }

  /** Stops everything and closes the local files (the vPool is closing or the vDisk is removed). */
  shutdown(): void {
    if (this.closed) return;
    this.closed = true;
    this.dtl.close(false);
    this.uploader.stop();
    this.docs.stop();
    this.ctx.space.forget(this);
    this.cache.close();
  }

  // ---- write path --------------------------------------------------------------------------------

  private async writeLocked(offset: number, data: Uint8Array): Promise<void> {
    // the upload lag counts from the first write since everything was last in the backend (info() clears it)
    if (this.dirtySinceMs === null) this.dirtySinceMs = Date.now();
    const end = offset + data.length;
    const first = Math.floor(offset / CLUSTER_SIZE);
    const last = Math.floor((end - 1) / CLUSTER_SIZE);
    const addresses: number[] = new Array(last - first + 1);
    const datas: Uint8Array[] = new Array(last - first + 1);
    const oldSize = this.size;
    const grows = end > oldSize;
    // growing: the bytes of the old boundary cluster past the old size may be stale (see resizeLocked) and
    // must read as zeros where this write does not cover them
    const boundary = grows && oldSize % CLUSTER_SIZE !== 0 ? Math.floor(oldSize / CLUSTER_SIZE) : -1;
    if (boundary >= 0 && boundary < first) await this.zeroPastSize(oldSize); // invisible until the resize below
    for (let a = first; a <= last; a++) {
      const cStart = a * CLUSTER_SIZE;
      const from = Math.max(offset, cStart);
      const to = Math.min(end, cStart + CLUSTER_SIZE);
      addresses[a - first] = a;
      if (from === cStart && to === cStart + CLUSTER_SIZE) {
        datas[a - first] = data.subarray(from - offset, to - offset);
      } else {
        const merged = Buffer.from(await this.readCluster(a));
        if (a === boundary) merged.fill(0, oldSize - cStart);
        merged.set(data.subarray(from - offset, to - offset), from - cStart);
        datas[a - first] = merged;
      }
    }
    // the resize comes before the clusters, in the TLog and the DTL alike (recovery refuses a cluster past
    // the size at that point of the log); if the clusters then fail, the grow is undone
    if (grows) {
      this.cache.appendRecord({ type: RecordType.Resize, size: end }); // fails: nothing changed
      this.size = end;
      this.dtl.resize(end, this.cache.openScoNumber || this.cache.nextSco, this.cache.openTlogNumber);
    }
    try {
      await this.append(addresses, datas);
    } catch (err) {
      if (grows) this.undoGrow(oldSize, err);
      throw err;
    }
  }

  /** A growing write failed: back to `oldSize`, and nothing it placed past it may show if the vDisk grows later. */
  private undoGrow(oldSize: number, cause: unknown): void {
    this.map.clearFrom(Math.ceil(oldSize / CLUSTER_SIZE));
    this.size = oldSize;
    try {
      this.cache.appendRecord({ type: RecordType.Resize, size: oldSize });
      this.dtl.resize(oldSize, this.cache.openScoNumber || this.cache.nextSco, this.cache.openTlogNumber);
    } catch (err) {
      // the TLog says the grown size: after a restart the vDisk has it, the failed write's range reading as zeros
      log.error('a growing write failed and its resize could not be undone in the TLog', {
        vdisk: this.id, size: oldSize, cause: (cause as Error).message, error: (err as Error).message,
      });
    }
  }

  private async append(addresses: number[], datas: Uint8Array[]): Promise<void> {
    const bytes = addresses.length * SLOT_SIZE;
    const wait = this.ctx.space.reserve(bytes);
    if (wait !== undefined) await wait;
    if (this.closed) {
      // removed or shut down while this write waited for room: give the room back, write nothing
      this.ctx.space.release(bytes);
      throw new VolumeError('CLOSED', 'the vDisk was closed while the write waited for write-cache space', { vdisk: this.id });
    }
    this.localBytes += bytes;
    let placedCount = 0;
    try {
      const scos: number[] = new Array(addresses.length);
      this.cache.appendClusters(addresses, datas, (i, sco, slot) => {
        this.map.set(addresses[i], sco, slot);
        scos[i] = sco;
        placedCount++;
      });
      this.dtl.clusters(addresses, scos, datas);
    } catch (err) {
      // the room reserved for clusters that never reached the cache goes back (else writers could wait for ever)
      const unused = (addresses.length - placedCount) * SLOT_SIZE;
      this.localBytes -= unused;
      this.ctx.space.release(unused);
      if (isCode(err, 'NO_SPACE')) this.notePassingFault(err, 'write to the write cache');
      throw err;
    }
    if (this.passingFault?.code === 'ENOSPC') this.clearPassingFault();
  }

  private async discardLocked(offset: number, length: number): Promise<void> {
    const end = offset + length;
    if (end > this.size) {
      throw new VolumeError('INVALID', `a discard of ${length} bytes at ${offset} ends past the size of the vDisk (${this.size} bytes)`, { vdisk: this.id, offset, length, size: this.size });
    }
    // whole clusters first..last; an edge cluster joins them when the discard leaves nothing non-zero in it
    let first = Math.ceil(offset / CLUSTER_SIZE);
    let last = Math.floor(end / CLUSTER_SIZE) - 1;
    const head = offset % CLUSTER_SIZE !== 0 ? Math.floor(offset / CLUSTER_SIZE) : -1;
    const tail = end % CLUSTER_SIZE !== 0 ? Math.floor(end / CLUSTER_SIZE) : -1;
    const edges = head !== -1 && head === tail ? [head] : [head, tail].filter((a) => a !== -1);
    const addresses: number[] = [];
    const datas: Uint8Array[] = [];
    for (const a of edges) {
      if (this.map.scoOf(a) === 0) continue; // a hole: zeros already
      const cStart = a * CLUSTER_SIZE;
      const merged = Buffer.from(await this.readCluster(a));
      merged.fill(0, Math.max(offset, cStart) - cStart, Math.min(end, cStart + CLUSTER_SIZE) - cStart);
      if (!merged.equals(ZERO_CLUSTER)) {
        addresses.push(a);
        datas.push(merged);
      } else if (edges.length === 1 && first > last) {
        first = last = a; // the whole discard lies inside this cluster
      } else if (a === first - 1) {
        first = a;
      } else if (a === last + 1) {
        last = a;
      }
    }
    if (addresses.length > 0) await this.append(addresses, datas);
    if (first <= last) this.discardClusters(first, last - first + 1);
  }

  /**
   * Unmaps clusters first..first+count-1, journaled: a DISCARD record in the open TLog (after the record of
   * the open SCO when that SCO holds one of them: see ../datapath/tlog-format.ts), the same in the DTL.
   * Nothing mapped in the range: nothing to record (an fstrim of the free space, again and again).
   */
  private discardClusters(first: number, count: number): void {
    if (count <= 0 || !this.map.anyMappedIn(first, count)) return;
    if (this.cache.openScoHolds(first, count)) this.cache.closeSco();
    this.cache.appendRecord({ type: RecordType.Discard, first, count }); // fails: nothing changed
    this.map.clearRange(first, count);
    this.dtl.discard(first, count, this.cache.openScoNumber || this.cache.nextSco, this.cache.openTlogNumber);
  }

  /**
   * A shrink leaves the bytes of the new boundary cluster past the size as they were: zeroing them there
   * would be a write before the resize record, and a power cut between the two would leave the old size
   * with changed bytes (neither before nor after). Every grow zeros them first instead (here and in a growing
   * write): that write lies past the size until the resize record, so a cut in between shows nothing.
   */
  private async resizeLocked(size: number): Promise<void> {
    if (size > this.size) await this.zeroPastSize(this.size);
    if (size < this.size) {
      this.cache.closeSco(); // the discarded clusters' SCO records come before the resize record
      this.map.clearFrom(Math.ceil(size / CLUSTER_SIZE));
    }
    this.size = size;
    this.cache.appendRecord({ type: RecordType.Resize, size });
    this.dtl.resize(size, this.cache.openScoNumber || this.cache.nextSco, this.cache.openTlogNumber);
  }

  /** Zeros the bytes of the boundary cluster of `size` past it, if it is mapped and they are not zeros. */
  private async zeroPastSize(size: number): Promise<void> {
    const tail = size % CLUSTER_SIZE;
    const a = Math.floor(size / CLUSTER_SIZE);
    if (tail === 0 || this.map.scoOf(a) === 0) return;
    const merged = Buffer.from(await this.readCluster(a));
    if (merged.subarray(tail).every((b) => b === 0)) return;
    merged.fill(0, tail);
    await this.append([a], [merged]);
  }

  // ---- read path ---------------------------------------------------------------------------------
  // How a read runs: volume/datapath/read-path.ts and docs/read-path.md. This vDisk is the read path's ReadTarget
  // (its map, the read cache, its namespaces) and the SlotSource of its own namespace.

  /** Read-ahead of this vDisk's sequential reads from the backend (../datapath/read-ahead.ts), made on first use. */
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

  private async readCluster(a: number): Promise<Buffer> {
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
  private ancestor(depth: number): VDiskImpl {
    const id = this.docs.doc.ancestors[depth - 1];
    const v = id === undefined ? undefined : this.ctx.family?.byId(id);
    if (v === undefined) throw new VolumeError('BACKEND', `ancestor ${depth} (${id ?? 'unknown'}) of this clone is not open`, { vdisk: this.id, depth, ancestor: id });
    return v;
  }

  /** `n` verified slots for clusters a..a+n-1, stored in SCO `sco` from `slot` (of this vDisk's namespace). */
  fetchSlots(a: number, sco: number, slot: number, n: number): Promise<Buffer> {
    return fetchVerifiedSlots(this, a, sco, slot, n);
  }

  private checkWritable(): void {
    this.checkOpen();
    this.cache.checkWritable();
    if (this.template) throw new VolumeError('READ_ONLY', 'the vDisk is a template: read-only', { vdisk: this.id });
  }

  private checkOpen(): void {
    if (this.closed) throw new VolumeError('CLOSED', 'the vDisk is closed', { vdisk: this.id });
    // another router took the vPool over: what this one holds may be stale, and what it writes counts for nothing
    const fenced = this.ctx.fenced?.();
    if (fenced != null) throw new VolumeError('FENCED', `this router lost its claim on the vPool: ${fenced}`, { vdisk: this.id });
  }
}
