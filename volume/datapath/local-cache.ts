/**
 * The local write cache of one vDisk: its SCO files and its TLogs on the SSD, under
 * `<state>/wc/<vdisk id>/`:
 *
 *   sco/<n>          SCOs (slots of header + cluster, see sco-format.ts); the highest-numbered one is open
 *   tlog/<n>         closed TLogs waiting for upload
 *   tlog/<n>.open    the open TLog: the journal of events (SCO closed, resize), appended as they happen
 *
 * Every append goes to the kernel (write(2)) before the caller acknowledges: a kill of the process loses
 * nothing acknowledged. sync() makes it survive a host crash (fdatasync of what changed, fsync of dirs).
 * All I/O here is synchronous on purpose: local SSD I/O in the page cache costs microseconds, less than
 * a hop to libuv's thread pool.
 */
import fs from 'node:fs';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import { VolumeError } from '../../util/errors.js';
import { fsyncDir } from '../../util/fsync-dir.js';
import { realCacheIo, type CacheIo } from './cache-io.js';
import { CLUSTER_SIZE } from '../types.js';
import { encodeSlotHeader, SLOT_HEADER, SLOT_SIZE, scoName, scanSlots } from './sco-format.js';
import { decodeRecords, encodeRecord, RecordType, tlogName, type TLogRecord } from './tlog-format.js';

export interface ClosedSco {
  sco: number;
  count: number;
  crc: number;
}

/** A failure of the write-cache disk that makes this cache stop taking writes (see LocalCache.fault). */
export interface CacheFault {
  /** The errno name: EIO, ENOSPC, … */
  code: string;
  message: string;
  /** When it happened (ms since the epoch). */
  since: number;
  /** What every later write and sync is failed with. */
  error: VolumeError;
}

export interface LocalCacheEvents {
  /** A SCO was closed (its record is in the open TLog). */
  onScoClosed(sco: ClosedSco): void;
  /** A TLog was closed and is ready for upload; it names `scos` (ascending, possibly none). */
  onTlogClosed(tlog: number, scos: number[]): void;
  /** The cache just became faulted (once). */
  onFault?(fault: CacheFault): void;
}

export class LocalCache {
  readonly dir: string;
  private readonly scoDir: string;
  private readonly tlogDir: string;
  private readonly fds = new Map<number, number>();
  private readonly unsynced = new Set<number>();
  private unsyncedTlogFds: number[] = [];
  /** SCOs evicted (in the backend only); numbers are never reused, so this only grows (a few bytes a SCO). */
  private readonly evicted = new Set<number>();
  /** Descriptors of closed journals waiting for the syncs in flight to settle before they are closed. */
  private readonly closing = new Set<number>();
  private inflightSync: Promise<void> = Promise.resolve();
  private dirsDirty = false;

  // the open SCO
  private openSco = 0;
  private openSlots = 0;
  private openCrc = 0;
  private openAddresses: Float64Array;

  // the open TLog
  private journalFd = -1;
  private journalNo = 0;
  private journalPos = 0;
  private journalEvents = 0;
  private journalScoList: number[] = [];
  private journalSynced = true;

  nextSco = 1;
  /**
   * Set for good when an fdatasync fails or a write fails with anything but ENOSPC: the kernel may have
   * dropped the dirty pages (a retried fdatasync can then "succeed" over lost data), so this cache takes
   * no more writes and every later sync fails with this cause. A restart starts from what is on disk.
   */
  fault: CacheFault | null = null;

  constructor(dir: string, private readonly vdiskId: string, private readonly tag: number,
    private readonly scoClusters: number, private readonly tlogScos: number, private readonly events: LocalCacheEvents,
    private readonly io: CacheIo = realCacheIo) {
    this.dir = dir;
    this.scoDir = path.join(dir, 'sco');
    this.tlogDir = path.join(dir, 'tlog');
    this.openAddresses = new Float64Array(scoClusters);
  }

  static exists(dir: string): boolean {
    return fs.existsSync(path.join(dir, 'tlog'));
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

  /** Closed TLogs present locally, ascending. */
  closedTlogs(): number[] {
    return fs.readdirSync(this.tlogDir).filter((n) => /^[0-9a-f]{8}$/.test(n)).map((n) => parseInt(n, 16)).sort((a, b) => a - b);
  }

  readClosedTlog(tlog: number): Buffer {
    return fs.readFileSync(path.join(this.tlogDir, tlogName(tlog)));
  }

  /** The open TLog's bytes (recovery reads it to bound a damaged closed TLog). */
  readOpenTlog(): Buffer {
    const open = fs.readdirSync(this.tlogDir).find((n) => n.endsWith('.open'));
    return open === undefined ? Buffer.alloc(0) : fs.readFileSync(path.join(this.tlogDir, open));
  }

  /** Replaces `file` with `records` (a TLog's, header included) atomically and durably; returns its length. */
  private replaceFile(file: string, records: TLogRecord[]): number {
    const bytes = Buffer.concat(records.map((r) => encodeRecord(r)));
    const tmp = `${file}.repair`;
    fs.writeFileSync(tmp, bytes);
    const fd = fs.openSync(tmp, 'r');
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fs.renameSync(tmp, file);
    fsyncDir(this.tlogDir);
    return bytes.length;
  }

  /** Writes closed TLog `tlog` again with `records` (after a repair), atomically. */
  rewriteClosedTlog(tlog: number, records: TLogRecord[]): void {
    const frames = [encodeRecord({ type: RecordType.Header, vdiskId: this.vdiskId, tlog }), ...records.map((r) => encodeRecord(r))];
    const tmp = `${this.tlogPath(tlog)}.repair`;
    fs.writeFileSync(tmp, Buffer.concat(frames));
    const fd = fs.openSync(tmp, 'r');
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fs.renameSync(tmp, this.tlogPath(tlog));
    fsyncDir(this.tlogDir);
  }

  tlogPath(tlog: number): string {
    return path.join(this.tlogDir, tlogName(tlog));
  }

  scoPath(sco: number): string {
    return path.join(this.scoDir, scoName(sco));
  }

  /** SCO numbers present locally, ascending. */
  localScos(): number[] {
    return fs.readdirSync(this.scoDir).filter((n) => /^[0-9a-f]{8}$/.test(n)).map((n) => parseInt(n, 16)).sort((a, b) => a - b);
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
        encodeSlotHeader(header, this.tag, this.openSco, this.openSlots + k, addresses[i + k], data);
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

  /** Appends a record (a resize) to the open TLog. */
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

  /** Reads `n` slots of SCO `sco` from `slot` if the SCO is local; null when it is not. */
  readSlots(sco: number, slot: number, n: number): Buffer | null {
    let fd = this.fds.get(sco);
    if (fd === undefined) {
      // evicted: its unlink may not have run yet, and a descriptor opened now would keep its space for good
      if (this.evicted.has(sco)) return null;
      try {
        fd = fs.openSync(this.scoPath(sco), 'r');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
        throw err;
      }
      this.fds.set(sco, fd);
    }
    const buf = Buffer.allocUnsafe(n * SLOT_SIZE);
    const got = fs.readSync(fd, buf, 0, buf.length, slot * SLOT_SIZE);
    if (got < buf.length) buf.fill(0, got);
    return buf;
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

  deleteClosedTlog(tlog: number): void {
    try {
      this.io.unlink(this.tlogPath(tlog));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }

  /**
   * Makes everything appended so far survive a host crash. The fdatasyncs run on libuv's threads, so
   * writers go on meanwhile; a call resolves only when its own syncs and any still in flight are done.
   */
  async syncLocal(): Promise<void> {
    if (this.fault !== null) throw this.fault.error;
    const fds: number[] = [];
    for (const sco of this.unsynced) {
      let fd = this.fds.get(sco);
      if (fd === undefined) {
        // a SCO found at a local restart (written before it, maybe never synced): open it to sync it
        try {
          fd = this.io.open(this.scoPath(sco), 'r');
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
          throw this.setFault(err, 'open for fdatasync');
        }
        this.fds.set(sco, fd);
      }
      fds.push(fd);
    }
    this.unsynced.clear();
    // the open TLog always, even when nothing is dirty: an fsync must learn that the disk failed (a
    // filesystem shut down answers EIO to it) rather than report success off the in-memory state
    fds.push(this.journalFd);
    this.journalSynced = true;
    const tlogFds = this.unsyncedTlogFds;
    this.unsyncedTlogFds = [];
    const dirs = this.dirsDirty ? [this.scoDir, this.tlogDir] : [];
    this.dirsDirty = false;
    const mine = (async () => {
      try {
        await Promise.all([...fds, ...tlogFds].map((fd) => this.fdatasync(fd)));
        await Promise.all(dirs.map((d) => this.io.fsyncDir(d)));
      } catch (err) {
        throw this.setFault(err, 'fdatasync');
      } finally {
        for (const fd of tlogFds) this.io.close(fd);
      }
    })();
    const all = Promise.all([this.inflightSync, mine]).then(() => undefined);
    this.inflightSync = all.catch(() => undefined);
    await all;
    // an earlier sync this one waited for may have failed: what it held is not on disk either
    const fault = this.fault as CacheFault | null;
    if (fault !== null) throw fault.error;
  }

  /**
   * Records a failure of the write-cache disk as this cache's fault (the first one wins) and returns the
   * error to throw. `ENOSPC` on a write is not a fault (nothing was lost; the write fails): NO_SPACE.
   */
  private setFault(err: unknown, op: string): VolumeError {
    const e = err as NodeJS.ErrnoException;
    if (err instanceof VolumeError && this.fault === null) return err;
    if (this.fault !== null) return this.fault.error;
    const code = typeof e?.code === 'string' ? e.code : 'EIO';
    const message = `the write-cache disk failed (${op}: ${e?.message ?? String(err)}); this vDisk takes no more writes until the vPool is restarted`;
    const error = new VolumeError(code === 'ENOSPC' ? 'NO_SPACE' : 'BACKEND', message, { vdisk: this.vdiskId, dir: this.dir, op, errno: code }, { cause: err });
    this.fault = { code, message, since: Date.now(), error };
    this.events.onFault?.(this.fault);
    return error;
  }

  /** Throws the fault, if any: a faulted cache takes no writes. */
  checkWritable(): void {
    if (this.fault !== null) throw this.fault.error;
  }

  /** A write to the cache failed: ENOSPC fails just this write (NO_SPACE); anything else faults the cache. */
  private writeFailed(err: unknown, op: string): VolumeError {
    const e = err as NodeJS.ErrnoException;
    if (err instanceof VolumeError) return err;
    if (e?.code === 'ENOSPC' || e?.code === 'EDQUOT') {
      return new VolumeError('NO_SPACE', `the write-cache disk is full (${op}): ${e.message}`, { vdisk: this.vdiskId, dir: this.dir, op, errno: e.code }, { cause: err });
    }
    return this.setFault(err, op);
  }

  close(): void {
    for (const fd of this.unsyncedTlogFds) this.io.close(fd);
    this.unsyncedTlogFds = [];
    for (const fd of this.closing) this.io.close(fd);
    this.closing.clear();
    for (const fd of this.fds.values()) this.io.close(fd);
    this.fds.clear();
    if (this.journalFd >= 0) this.io.close(this.journalFd);
    this.journalFd = -1;
  }

  /** Removes every local file of this vDisk. */
  destroy(): void {
    this.close();
    fs.rmSync(this.dir, { recursive: true, force: true });
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

  private openJournal(tlog: number): void {
    const { fd, bytes } = this.createJournal(tlog);
    this.useJournal(tlog, fd, bytes);
  }

  /** Creates journal `tlog` with its header; on failure nothing is left behind (NO_SPACE, or a fault). */
  private createJournal(tlog: number): { fd: number; bytes: number } {
    this.checkWritable();
    const file = path.join(this.tlogDir, `${tlogName(tlog)}.open`);
    const header = encodeRecord({ type: RecordType.Header, vdiskId: this.vdiskId, tlog });
    let fd = -1;
    try {
      fd = this.io.open(file, 'w+');
      writevFully(this.io, fd, [header], 0);
    } catch (err) {
      try {
        if (fd >= 0) this.io.close(fd);
        this.io.unlink(file);
      } catch {
        // best effort: a leftover empty journal above the real one is removed at the next start
      }
      throw this.writeFailed(err, `create TLog ${tlog}`);
    }
    return { fd, bytes: header.length };
  }

  private useJournal(tlog: number, fd: number, bytes: number): void {
    this.journalFd = fd;
    this.journalNo = tlog;
    this.journalPos = bytes;
    this.journalEvents = 0;
    this.journalScoList = [];
    this.journalSynced = false;
    this.dirsDirty = true;
  }

  /**
   * Closes `fd` once every sync started so far has settled. A synced journal's descriptor may still be
   * queued for an fdatasync in libuv's pool: closed now, its number could be reused by the next journal
   * and that fdatasync would sync the wrong file while the caller's fsync reports success.
   */
  private closeAfterSyncs(fd: number): void {
    this.closing.add(fd);
    void this.inflightSync.then(() => {
      try {
        if (this.closing.delete(fd)) this.io.close(fd);
      } catch {
        // a close that fails leaves nothing to do (and must not be an unhandled rejection)
      }
    });
  }

  private fdatasync(fd: number): Promise<void> {
    // no EBADF tolerance: a descriptor closed under a queued fdatasync means nothing was synced
    return this.io.fdatasync(fd);
  }

  private noteScoInJournal(sco: number): void {
    this.journalScoList.push(sco);
  }

  private append(frame: Buffer): void {
    this.checkWritable();
    try {
      writevFully(this.io, this.journalFd, [frame], this.journalPos);
    } catch (err) {
      throw this.writeFailed(err, `append to TLog ${this.journalNo}`);
    }
    this.journalPos += frame.length;
    this.journalSynced = false;
  }

  /**
   * The read path (volume/datapath/read-path.ts): the descriptor of SCO `sco` if the SCO is local (opened on first
   * use, like readSlots), else null. Valid until the SCO is evicted: use it at once, never across an await.
   */
  scoFd(sco: number): number | null {
    let fd = this.fds.get(sco);
    if (fd === undefined) {
      // evicted: its unlink may not have run yet, and a descriptor opened now would keep its space for good
      if (this.evicted.has(sco)) return null;
      const file = this.scoPath(sco);
      if (!fs.existsSync(file)) return null; // evicted: no exception to build on this common path
      try {
        fd = fs.openSync(file, 'r');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
        throw err;
      }
      this.fds.set(sco, fd);
    }
    return fd;
  }
}

function writevFully(io: CacheIo, fd: number, iov: Uint8Array[], position: number): void {
  let total = 0;
  for (const b of iov) total += b.length;
  let done = io.writev(fd, iov, position);
  while (done < total) {
    // short write (rare: a full disk or a signal): finish the rest piece by piece
    let skip = done;
    const rest: Uint8Array[] = [];
    for (const b of iov) {
      if (skip >= b.length) { skip -= b.length; continue; }
      rest.push(skip > 0 ? b.subarray(skip) : b);
      skip = 0;
    }
    const n = io.writev(fd, rest, position + done);
    if (n === 0) throw new VolumeError('NO_SPACE', 'write cache: short write', { fd });
    done += n;
  }
}


