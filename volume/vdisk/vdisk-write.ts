/**
 * A vDisk's write path, part of VDiskImpl (vdisk.ts): writes (the clusters a write touches, partial ones
 * read-modify-written, appended to the open SCO of the write cache in one writev, then the cluster map
 * points at them: acknowledged once the kernel has the bytes), the writes of one moment gathered into one
 * append (write-gather.ts), discards, resizes, and the DTL entries a recovery applies. The caller holds the vDisk's lock (VDiskImpl.write, discard, resize).
 */
import { isCode, VolumeError } from '../../util/errors.js';
import { logger } from '../../util/log.js';
import { SLOT_SIZE } from '../datapath/formats/sco-format.js';
import { RecordType } from '../datapath/formats/tlog-format.js';
import { CLUSTER_SIZE } from '../types.js';
import { VDiskTransitions } from './vdisk-transitions.js';

const log = logger('vdisk');
export const ZERO_CLUSTER = Buffer.alloc(CLUSTER_SIZE);
/** The most clusters one append of gathered writes takes (512 iovecs: under IOV_MAX, 1024). */
const MAX_RUN_CLUSTERS = 256;

/** A write held during a gather (write-gather.ts) and settled by writeManyLocked. */
export interface GatheredWrite {
  offset: number;
  data: Uint8Array;
  resolve: () => void;
  reject: (err: unknown) => void;
}

export abstract class VDiskWrites extends VDiskTransitions {
  /** One cluster's bytes as the vDisk reads them (the read path, vdisk.ts): zeros for a hole. */
  protected abstract readCluster(a: number): Promise<Buffer>;

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

  // ---- write path --------------------------------------------------------------------------------

  /**
   * Writes gathered at one moment (write-gather.ts), in order, each settled on its own. A run of writes of
   * whole clusters inside the size goes to the write cache in one append (one writev per SCO; the map
   * entries set in slot order, so of two writes of one cluster the later wins, as one by one); any other
   * write (a piece of a cluster, a growing one) ends the run and goes through writeLocked as alone.
   */
  protected async writeManyLocked(items: GatheredWrite[]): Promise<void> {
    let run: GatheredWrite[] = [];
    let runClusters = 0;
    const flush = async () => {
      if (run.length === 0) return;
      const batch = run;
      run = [];
      runClusters = 0;
      const addresses: number[] = [];
      const datas: Uint8Array[] = [];
      for (const { offset, data } of batch) {
        for (let at = 0; at < data.length; at += CLUSTER_SIZE) {
          addresses.push((offset + at) / CLUSTER_SIZE);
          datas.push(data.subarray(at, at + CLUSTER_SIZE));
        }
      }
      if (this.dirtySinceMs === null) this.dirtySinceMs = Date.now();
      try {
        await this.append(addresses, datas);
      } catch (err) {
        for (const it of batch) it.reject(err);
        return;
      }
      for (const it of batch) it.resolve();
    };
    for (const it of items) {
      const { offset, data } = it;
      const clusters = data.length / CLUSTER_SIZE;
      if (offset % CLUSTER_SIZE === 0 && data.length % CLUSTER_SIZE === 0 && offset + data.length <= this.size) {
        if (runClusters + clusters > MAX_RUN_CLUSTERS) await flush();
        run.push(it);
        runClusters += clusters;
        continue;
      }
      await flush();
      try {
        await this.writeLocked(offset, data);
        it.resolve();
      } catch (err) {
        it.reject(err);
      }
    }
    await flush();
  }

  protected async writeLocked(offset: number, data: Uint8Array): Promise<void> {
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
      this.readerView.change(() => (this.disk.size = end));
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
    this.readerView.change(() => {
      this.map.clearFrom(Math.ceil(oldSize / CLUSTER_SIZE));
      this.disk.size = oldSize;
    });
    // closed (removed or shut down) while the write waited for room: its files are closed, nothing more can be
    // recorded, and trying would call a closed TLog a failed disk; a restart sees the grown size, the range zeros
    if (this.closed) return;
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
    this.state.localBytes += bytes;
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
      this.state.localBytes -= unused;
      this.ctx.space.release(unused);
      if (isCode(err, 'NO_SPACE')) this.notePassingFault(err, 'write to the write cache');
      throw err;
    }
    if (this.passingFault?.code === 'ENOSPC') this.clearPassingFault();
  }

  protected async discardLocked(offset: number, length: number): Promise<void> {
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
   * the open SCO when that SCO holds one of them: see ../datapath/formats/tlog-format.ts), the same in the DTL.
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
  protected async resizeLocked(size: number): Promise<void> {
    if (size > this.size) await this.zeroPastSize(this.size);
    this.readerView.change(() => {
      if (size < this.size) {
        this.cache.closeSco(); // the discarded clusters' SCO records come before the resize record
        this.map.clearFrom(Math.ceil(size / CLUSTER_SIZE));
      }
      this.disk.size = size;
    });
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
}
