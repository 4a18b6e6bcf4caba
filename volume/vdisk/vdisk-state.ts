/**
 * A vDisk's state and its bookkeeping, the base of VDiskImpl (vdisk.ts): the cluster map, size, slot counts,
 * cork point and byte counts, template flag and DTL sink, the write cache, uploader and doc store it owns,
 * its lock and its faults; corking (cork()), eviction and shutdown.
 *
 * The state is read by anyone through getters and changed only by the methods of the vDisk's classes:
 * this one, vdisk-transitions.ts (what opening, snapshots, clones and the DTL ask for), vdisk-write.ts
 * (the write path) and vdisk.ts (I/O). Protected members are theirs alone; the compiler enforces it.
 */
import path from 'node:path';
import { VolumeError } from '../../util/errors.js';
import { logger } from '../../util/log.js';
import { Serial } from '../../util/serial.js';
import { ClusterMap } from '../datapath/formats/cluster-map.js';
import type { CacheFault, ClosedSco } from '../datapath/write-cache/cache-files.js';
import { LocalCache } from '../datapath/write-cache/local-cache.js';
import { SLOT_SIZE } from '../datapath/formats/sco-format.js';
import type { TLogRecord } from '../datapath/formats/tlog-format.js';
import { Uploader, type PendingTlog } from '../datapath/upload/uploader.js';
import { CLUSTER_SIZE, type VDiskFault } from '../types.js';
import type { VDiskContext } from './vdisk-context.js';
import { NO_DTL, type DtlSink } from './dtl-sink.js';
import { DocStore } from '../lineage/snapshot-store.js';
import { commitCork, corkOps } from './vdisk-meta.js';
import { applyTo, type DiskState } from '../lineage/clone-base.js';
import { scoKeyIn, SCRUB_SCO_BASE, type ScoRange } from '../lineage/scrub-state.js';
import { IoActivity } from '../../util/io-activity.js';
import { ReadGate } from './read-gate.js';
import { ReaderView, VIEW } from '../datapath/write-cache/reader-view.js';
import { Checkpointer } from './checkpointer.js';

const log = logger('vdisk');
// the uploader's lines keep the logger they had when vdisk-open.ts built it
const uploadLog = logger('vdisk-open');

export abstract class VDiskState {
  readonly map = new ClusterMap();
  /** Slots in each closed SCO (needed to read it back from the backend). */
  readonly scoCounts = new Map<number, number>();
  /** The map, size and slot counts as one DiskState: what a TLog record (applyTo) and a clone base change. */
  protected readonly disk: DiskState = { map: this.map, size: 0, scoCounts: this.scoCounts };
  /**
   * The rest of the vDisk's state: read by anyone through the getters below, changed only by the methods
   * of VDiskImpl's layers (the opening, snapshot, clone, DTL and scrub code call those that say what happens).
   */
  protected readonly state = {
    corkedTlog: 0,
    corkedSco: 0,
    backendBytes: 0,
    /** Bytes of this vDisk's SCO files in the write cache. */
    localBytes: 0,
    template: false,
    lastShipMs: Date.now(),
    /** Where every change of the write cache is also sent (the DTL, dtl-hook.ts); mode none does nothing. */
    dtl: NO_DTL as DtlSink,
  };
  readonly cache: LocalCache;
  /**
   * What the kernel engine's reader threads need to serve reads from the write cache themselves (map pages,
   * SCO descriptors, size, a seqlock: ../datapath/write-cache/reader-view.ts). Every change that a slot check cannot
   * catch — a descriptor closed, the map rewritten, the size changed — runs inside readerView.change().
   */
  readonly readerView: ReaderView;
  readonly uploader: Uploader;
  /** When data not yet in the backend first appeared (null: everything written is there, as far as info() last saw). */
  protected dirtySinceMs: number | null = null;
  /** Snapshots, template flag, clone parentage (../lineage/snapshot-store.ts). */
  readonly docs: DocStore;
  /** When the vDisk writes its map checkpoint to the backend (checkpointer.ts). */
  readonly checkpoints: Checkpointer;
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
  protected readonly lock = new Serial();
  protected closed = false;
  protected passingFault: VDiskFault | null = null;
  /** Why a DTL server refused this router's changes of the vDisk (a newer owner registered or recovered it there), or null. */
  protected dtlFenced: string | null = null;
  /**
   * The registry owner tag this router serves the vDisk under, fixed at open (dtl-client/fence.ts): a delegation's
   * or a takeback's tag (ctx.fenceTag), else the vPool's; 0 without a registry.
   */
  readonly ownerTag: number;

  constructor(readonly id: string, readonly tag: number, readonly ctx: VDiskContext) {
    this.ownerTag = ctx.fenceTag?.(id) ?? ctx.ownerTag ?? 0;
    this.cache = new LocalCache(path.join(ctx.writeCacheDir, id), id, tag, ctx.scoClusters, ctx.tlogScos, this, ctx.io);
    this.readerView = new ReaderView(tag, { pages: () => this.map.allPages(), fds: () => this.cache.fds.entries(), size: () => this.disk.size });
    this.map.onPage = (pageNo, words) => this.readerView.pageChanged(pageNo, words);
    this.cache.fds.watch = (sco, fd) => this.readerView.fdChanged(sco, fd);
    this.cache.guard = (fn) => this.readerView.change(fn); // a descriptor the fd budget drops
    // the reads the kernel engine's readers answer are guest I/O too: the scrubber backs off for them
    this.io.watch(() => Atomics.load(this.readerView.ctl, VIEW.SERVED));    this.uploader = new Uploader(id, ctx.backend, {
      scoPath: (sco) => this.cache.scoPath(sco),
      tlogPath: (tlog) => this.cache.tlogPath(tlog),
      syncLocal: () => this.cache.syncLocal(),
      onUploaded: (p, bytes) => this.cork(p, bytes),
    }, ctx.uploads, ctx.uploadBuffers, uploadLog);
    this.docs = new DocStore(id, ctx.mds, ctx.backend);
    this.checkpoints = new Checkpointer(this);
  }

  /** Who this router is to a DTL server's fence (DtlVDisk.dtlOwner). */
  dtlOwner(): { router: string; tag: number; claim: number } {
    return { router: this.ctx.routerId, tag: this.ownerTag, claim: this.ctx.claimEpoch?.() ?? 0 };
  }

  /** A DTL server refused this router for the vDisk (DtlVDisk.fenceByDtl): its I/O answers FENCED from now on. */
  fenceByDtl(why: string): void {
    if (this.dtlFenced !== null) return;
    this.dtlFenced = why;
    log.error(`FENCED: this router lost vDisk ${this.id}: a DTL server refused it — ${why}. Nothing more of it is acknowledged: its I/O answers EIO; the writes it had not acknowledged are not in what the new owner serves`, { vdisk: this.id, router: this.ctx.routerId, ownerTag: this.ownerTag, claim: this.ctx.claimEpoch?.() ?? 0 });
  }

  get size(): number {
    return this.disk.size;
  }

  /** The last TLog in the backend and reflected in the persisted map (vdisk-meta.ts). */
  get corkedTlog(): number {
    return this.state.corkedTlog;
  }

  /** The last of the vDisk's own SCOs in the backend. */
  get corkedSco(): number {
    return this.state.corkedSco;
  }

  get backendBytes(): number {
    return this.state.backendBytes;
  }

  /** Bytes of this vDisk's SCO files in the write cache. */
  get localBytes(): number {
    return this.state.localBytes;
  }

  get template(): boolean {
    return this.state.template;
  }

  /** When ship() last closed the open TLog (the vPool's age timer). */
  get lastShipMs(): number {
    return this.state.lastShipMs;
  }

  /** Where every change of the write cache is also sent (the DTL, dtl-hook.ts); mode none does nothing. */
  get dtl(): DtlSink {
    return this.state.dtl;
  }

  /** What this vDisk wrote itself (`du`, st_blocks); a clone's data read through from its parents is inheritedBytes. */
  get allocatedBytes(): number {
    return this.map.ownClusters * CLUSTER_SIZE;
  }

  /** A clone's mapped clusters of its ancestors (counted with them, not here). */
  get inheritedBytes(): number {
    return this.map.inheritedClusters * CLUSTER_SIZE;
  }

  /** The state-disk fault affecting this vDisk (VDiskInfo.fault), or null. */
  get fault(): VDiskFault | null {
    const f = this.cache.fault ?? this.passingFault;
    return f === null ? null : { code: f.code, message: f.message, since: f.since };
  }

  /** The write cache became faulted (../datapath/write-cache/local-cache.ts): said once, loudly. */
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
    this.state.lastShipMs = Date.now();
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
    this.readerView.change(() => applyTo(this.disk, rec)); // the one rule for a record, shared with the backend-only replay of ../lineage/clone-base.ts
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
    this.state.corkedTlog = p.tlog;
    this.state.corkedSco = Math.max(this.corkedSco, ...p.scos.slice(-1));
    this.state.backendBytes += scoBytes;
    this.cache.deleteClosedTlog(p.tlog);
    for (const sco of p.scos) {
      this.ctx.space.addEvictable(this, sco);
    }
    this.checkpoints.noteTlogs();
    // the uploader still holds `p`: idle when it is the last TLog waiting and nothing new is open
    await this.dtl.trim(this.corkedSco, this.uploader.backlog.tlogs <= 1 && !this.cache.hasPending);
  }

  /** The backend key of SCO `sco`: its own, or a scrub's (the doc's scrub says which, lineage/scrub-state.ts). */
  scoKeyOf(sco: number): string {
    const ranges = this.docs.doc.scrub?.scoRanges ?? [];
    if (sco >= SCRUB_SCO_BASE && !ranges.some((r) => sco >= r.from && sco <= r.to)) return scoKeyIn(this.id, this.seenScoRanges, sco);
    return scoKeyIn(this.id, ranges, sco);
  }

  /** Removes SCO `sco` from the write cache; returns the bytes freed (0 if it was not there). */
  evictSco(sco: number): number {
    // its descriptor closes: a reader thread's pread on it must not be trusted (the number may be reused)
    if (!this.readerView.change(() => this.cache.evictSco(sco))) return 0;
    const bytes = (this.scoCounts.get(sco) ?? 0) * SLOT_SIZE;
    this.state.localBytes -= bytes;
    return bytes;
  }

  /** Stops everything and closes the local files (the vPool is closing or the vDisk is removed). */
  shutdown(): void {
    if (this.closed) return;
    this.closed = true;
    this.dtl.close(false);
    this.uploader.stop();
    this.docs.stop();
    this.checkpoints.stop();
    this.ctx.space.forget(this);
    this.readerView.change(() => {
      this.readerView.close();
      this.cache.close();
    });
  }

  protected checkWritable(): void {
    this.checkOpen();
    this.cache.checkWritable();
    if (this.template) throw new VolumeError('READ_ONLY', 'the vDisk is a template: read-only', { vdisk: this.id });
  }

  protected checkOpen(): void {
    if (this.closed) throw new VolumeError('CLOSED', 'the vDisk is closed', { vdisk: this.id });
    // another router took the vPool over: what this one holds may be stale, and what it writes counts for nothing
    const fenced = this.ctx.fenced?.();
    if (fenced != null) throw new VolumeError('FENCED', `this router lost its claim on the vPool: ${fenced}`, { vdisk: this.id });
    if (this.dtlFenced !== null) throw new VolumeError('FENCED', `this router lost vDisk ${this.id}: ${this.dtlFenced}`, { vdisk: this.id });
  }
}
