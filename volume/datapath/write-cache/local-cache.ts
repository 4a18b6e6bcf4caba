/**
 * The local write cache of one vDisk: its SCO files and its TLogs on the SSD, under
 * `<state>/wc/<vdisk id>/`:
 *
 *   sco/<n>          SCOs (slots of header + cluster, see sco-format.ts); the highest-numbered one is open
 *   tlog/<n>         closed TLogs waiting for upload
 *   tlog/<n>.open    the open TLog: the journal of events (SCO closed, resize, discard), appended as they happen
 *
 * Every append goes to the kernel (write(2)) before the caller acknowledges: a kill of the process loses
 * nothing acknowledged. sync() makes it survive a host crash (fdatasync of what changed, fsync of dirs).
 * All I/O here is synchronous on purpose: local SSD I/O in the page cache costs microseconds, less than
 * a hop to libuv's thread pool.
 */
import fs from 'node:fs';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import { VolumeError } from '../../../util/errors.js';
import { fsyncDir } from '../../../util/fsync-dir.js';
import { realCacheIo, type CacheIo } from './cache-io.js';
import type { LocalCacheEvents } from './cache-files.js';
import { CacheSync } from './cache-sync.js';
import { writevFully } from './writev-fully.js';
import { CLUSTER_SIZE } from '../../types.js';
import { knownClusterCrc } from './known-crcs.js';
import { encodeSlotHeader, SLOT_HEADER, SLOT_SIZE, scanSlots } from '../formats/sco-format.js';
import { decodeRecords, encodeRecord, RecordType, tlogName, type TLogRecord } from '../formats/tlog-format.js';

/** The write cache of one vDisk: its open SCO, the closing of SCOs and TLogs, the local restart, eviction. */
export class LocalCache extends CacheSync {
  // the open SCO
  private openSco = 0;
  private openSlots = 0;
  private openCrc = 0;
  private openAddresses: Float64Array;

  constructor(dir: string, vdiskId: string, private readonly tag: number,
    private readonly scoClusters: number, private readonly tlogScos: number, events: LocalCacheEvents,
    io: CacheIo = realCacheIo) {
    super(dir, vdiskId, events, io);
    this.openAddresses = new Float64Array(scoClusters);
  }

  /** Creates the directories (fresh vDisk or rebuilt from the backend) and opens TLog `tlog`. */
  create(tlog: number, nextSco: number): void {
    fs.mkdirSync(this.scoDir, { recursive: true });
    fs.mkdirSync(this.tlogDir, { recursive: true });
    this.nextSco = nextSco;
    this.openJournal(tlog);
    fsyncDir(this.dir);
    fsyncDir(path.dirname(this.dir));
  }

  /**
   * Local restart: reads the open TLog (cutting a torn tail) and returns its records; the caller replays
   * them, then calls recoverOpenScos().
   */
  reopenJournal(fix?: (records: TLogRecord[]) => boolean): { tlog: number; records: TLogRecord[] } {
    let open = fs.readdirSync(this.tlogDir).filter((n) => n.endsWith('.open')).sort();
    if (open.length === 2 && parseInt(open[1], 16) === parseInt(open[0], 16) + 1) {
      // a crash inside closeTlog(), after the next journal was created and before the old one was renamed:
      // the new one holds only its header; the old one goes on
      this.io.unlink(path.join(this.tlogDir, open[1]));
      open = [open[0]];
    }
    if (open.length !== 1) throw new VolumeError('INVALID', `expected one open TLog in ${this.tlogDir}, found ${open.length}`, { dir: this.tlogDir });
    const tlog = parseInt(open[0], 16);
    const file = path.join(this.tlogDir, open[0]);
    const buf = fs.readFileSync(file);
    const decoded = decodeRecords(buf);
    const records = decoded.records;
    let validBytes = decoded.validBytes;
    if (fix !== undefined && fix(records)) {
      // `fix` changed records (slots that never reached the disk, see openLocal): written again whole,
      // atomically, so that a later restart and the upload see the same records
      validBytes = this.replaceFile(file, records);
    } else if (validBytes < buf.length) this.io.truncate(file, validBytes);
    this.journalFd = this.io.open(file, 'r+');
    this.journalNo = tlog;
    this.journalPos = validBytes;
    this.journalEvents = 0;
    this.journalScoList = [];
    if (validBytes === 0) this.append(encodeRecord({ type: RecordType.Header, vdiskId: this.vdiskId, tlog }));
    for (const r of records) {
      if (r.type === RecordType.Sco) this.noteScoInJournal(r.sco);
      if (r.type !== RecordType.Header) this.journalEvents++;
    }
    return { tlog, records: records.filter((r) => r.type !== RecordType.Header) };
  }

  /**
   * Local restart, after the TLogs are replayed: scans the SCOs numbered above `lastClosedSco` (written
   * after the last record), keeps their slots up to the last sound one (a torn tail is cut; scanSlots says
   * what a damaged slot before it maps), closes them into the open TLog and returns their entries.
   */
  recoverOpenScos(lastClosedSco: number): Array<{ sco: number; addresses: Float64Array }> {
    const out: Array<{ sco: number; addresses: Float64Array }> = [];
    for (const sco of this.localScos()) {
      this.nextSco = Math.max(this.nextSco, sco + 1);
      if (sco <= lastClosedSco) continue;
      const file = this.scoPath(sco);
      const buf = fs.readFileSync(file);
      const { addresses, count: n } = scanSlots(buf, this.tag, sco);
      if (n * SLOT_SIZE < buf.length) this.io.truncate(file, n * SLOT_SIZE);
      if (n === 0) {
        this.io.unlink(file);
        continue;
      }
      let crc = 0;
      for (let i = 0; i < n; i++) crc = crc32(buf.subarray(i * SLOT_SIZE, i * SLOT_SIZE + SLOT_HEADER), crc);
      crc >>>= 0;
      this.appendRecord({ type: RecordType.Sco, sco, count: n, crc, addresses });
      this.noteScoInJournal(sco);
      this.unsynced.add(sco);
      this.events.onScoClosed({ sco, count: n, crc });
      out.push({ sco, addresses });
    }
    return out;
  }

  /**
   * Local restart, last step: every file found here may be only in the page cache (a kill does not write it
   * back), so the next sync covers them all — the closed TLogs, the journal, the SCOs above `corkedSco`
   * (those up to it are in the backend) and the directories.
   */
  adoptFoundFiles(corkedSco: number): void {
    for (const tlog of this.closedTlogs()) this.unsyncedTlogFds.push(this.io.open(this.tlogPath(tlog), 'r'));
    for (const sco of this.localScos()) if (sco > corkedSco) this.unsynced.add(sco);
    this.journalSynced = false;
    this.dirsDirty = true;
  }

  /**
   * Appends clusters to the open SCO (opening and closing SCOs as they fill). `addresses[i]` gets
   * `datas[i]` (4096 bytes each). Calls `placed(i, sco, slot)` for each. Synchronous.
   */
  appendClusters(addresses: number[], datas: Uint8Array[], placed: (i: number, sco: number, slot: number) => void): void {
    this.checkWritable();
    let i = 0;
    while (i < addresses.length) {
      if (this.openSco !== 0 && this.openSlots === this.scoClusters) this.closeSco(); // its close failed before
      if (this.openSco === 0) this.openNewSco();
      const room = this.scoClusters - this.openSlots;
      const n = Math.min(room, addresses.length - i);
      const iov: Uint8Array[] = new Array(n * 2);
      for (let k = 0; k < n; k++) {
        const header = Buffer.allocUnsafe(SLOT_HEADER);
        const data = datas[i + k];
        if (data.length !== CLUSTER_SIZE) throw new VolumeError('INVALID', `cluster of ${data.length} bytes`);
        encodeSlotHeader(header, this.tag, this.openSco, this.openSlots + k, addresses[i + k], data, knownClusterCrc(data));
        iov[k * 2] = header;
        iov[k * 2 + 1] = data;
      }
      const fd = this.fds.get(this.openSco)!;
      try {
        writevFully(this.io, fd, iov, this.openSlots * SLOT_SIZE);
      } catch (err) {
        throw this.writeFailed(err, `write to SCO ${this.openSco}`);
      }
      for (let k = 0; k < n; k++) {
        this.openCrc = crc32(iov[k * 2], this.openCrc);
        this.openAddresses[this.openSlots] = addresses[i + k];
        placed(i + k, this.openSco, this.openSlots);
        this.openSlots++;
      }
      this.unsynced.add(this.openSco);
      i += n;
      if (this.openSlots === this.scoClusters) this.closeSco();
    }
  }

  /**
   * True when the open SCO holds a slot of a cluster in first..first+count-1: a discard of that range must
   * close it first, so that the SCO's record (which maps those slots) comes before the discard's in the log.
   */
  openScoHolds(first: number, count: number): boolean {
    const end = first + count;
    for (let i = 0; i < this.openSlots; i++) {
      const a = this.openAddresses[i];
      if (a >= first && a < end) return true;
    }
    return false;
  }

  /** Bytes in the open SCO. */
  get openScoBytes(): number {
    return this.openSlots * SLOT_SIZE;
  }

  /** True when the open TLog holds events or the open SCO holds data. */
  get hasPending(): boolean {
    return this.openSlots > 0 || this.journalEvents > 0;
  }

  /** The number of the open TLog (every TLog below it is closed). */
  get openTlogNumber(): number {
    return this.journalNo;
  }

  get openScoNumber(): number {
    return this.openSco;
  }

  /** Appends a record (a resize, a discard) to the open TLog. */
  appendRecord(rec: TLogRecord): void {
    this.append(encodeRecord(rec));
    this.journalEvents++;
  }

  /** Closes the open SCO, if it holds anything: its record goes into the open TLog. */
  closeSco(): void {
    if (this.openSco === 0) return;
    const sco = this.openSco;
    const count = this.openSlots;
    if (count === 0) {
      this.openSco = 0;
      const fd = this.fds.get(sco)!;
      this.io.close(fd);
      this.fds.delete(sco);
      this.unsynced.delete(sco);
      this.io.unlink(this.scoPath(sco));
      this.nextSco = sco; // reuse the number: nothing refers to it
      return;
    }
    const closed = { sco, count, crc: this.openCrc >>> 0 };
    // the record first: if it cannot be written (a full disk) the SCO stays open, nothing is half-closed
    this.appendRecord({ type: RecordType.Sco, ...closed, addresses: this.openAddresses.slice(0, count) });
    this.openSco = 0;
    this.noteScoInJournal(sco);
    this.openSlots = 0;
    this.events.onScoClosed(closed);
    if (this.journalScoList.length >= this.tlogScos) this.closeTlog();
  }

  /** Closes the open SCO and the open TLog (if it holds events) and opens the next TLog. */
  closeTlog(): void {
    this.closeSco();
    if (this.journalEvents === 0) return;
    const tlog = this.journalNo;
    // the next journal first (header written): if the disk is full this throws with nothing changed
    const next = this.createJournal(tlog + 1);
    // no fsync here: sync() (a user's fsync, a cork) makes it durable; syncing 16 SCOs on every TLog
    // close would stall writers for nothing
    if (this.journalSynced) this.closeAfterSyncs(this.journalFd);
    else this.unsyncedTlogFds.push(this.journalFd);
    this.io.rename(path.join(this.tlogDir, `${tlogName(tlog)}.open`), path.join(this.tlogDir, tlogName(tlog)));
    const scos = this.journalScoList;
    this.useJournal(tlog + 1, next.fd, next.bytes);
    this.events.onTlogClosed(tlog, scos);
  }

  /** Rewrites one slot of a closed SCO with its sound copy from the backend (a repair: same bytes as first written). */
  repairSlot(sco: number, slot: number, bytes: Uint8Array): void {
    if (sco === this.openSco) return;
    try {
      const fd = this.io.open(this.scoPath(sco), 'r+');
      try {
        writevFully(this.io, fd, [bytes], slot * SLOT_SIZE);
      } finally {
        this.io.close(fd);
      }
    } catch {
      // evicted meanwhile: nothing to mend
    }
  }

  protected override writing(sco: number): boolean {
    return sco === this.openSco;
  }

  /** Removes a SCO that is safe in the backend from the cache. */
  evictSco(sco: number): boolean {
    if (sco === this.openSco) return false;
    const fd = this.fds.get(sco);
    if (fd !== undefined) this.io.close(fd);
    this.fds.delete(sco);
    this.unsynced.delete(sco);
    this.evicted.add(sco);
    if (!fs.existsSync(this.scoPath(sco))) return false;
    // the unlink itself (freeing a few MiB of extents) runs off the event loop
    this.io.unlinkAsync(this.scoPath(sco), () => {});
    return true;
  }

  private openNewSco(): void {
    const sco = this.nextSco;
    let fd: number;
    try {
      fd = this.io.open(this.scoPath(sco), 'w+');
    } catch (err) {
      throw this.writeFailed(err, `create SCO ${sco}`);
    }
    this.nextSco++;
    this.fds.set(sco, fd);
    this.openSco = sco;
    this.openSlots = 0;
    this.openCrc = 0;
    this.dirsDirty = true;
  }
}
